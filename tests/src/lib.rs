//! End-to-end harness for `harkd`: starts the real binary on an ephemeral port and talks to
//! it over real WebSockets and HTTP.
//!
//! * [`harkd`] starts and stops the daemon and reads its log;
//! * [`native`] and [`openai`] are minimal clients of the two WebSocket protocols;
//! * [`audio`] reads the fixture clips and their texts, and writes WAV files;
//! * [`offline`] runs `hark transcribe`, the reference the daemon's finals are compared with;
//! * [`http`] is a one-request HTTP/1.1 client for `/healthz` and `/metrics`.
//!
//! The binaries are found next to the test executable (`target/<profile>/harkd`,
//! `target/<profile>/hark`); `cargo test --workspace` builds them.

pub mod audio;
pub mod harkd;
pub mod http;
pub mod native;
pub mod offline;
pub mod openai;
pub mod python;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

/// `tests/fixtures/...`.
pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// The small random checkpoint with the real E2B layout.
pub fn fixture_model() -> PathBuf {
    fixtures().join("models/e2b-shaped")
}

/// Whether the trained demonstration model (embedded default) is in the tree. When it is,
/// the binaries were built with it and tests also check real text.
pub fn demo_model_present() -> bool {
    repo_root()
        .join("model/demo-model/model.safetensors")
        .exists()
}

/// A binary of this workspace, found by walking up from the running executable to the
/// `target/<profile>/` folder that holds it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test");
    for dir in exe.ancestors().skip(1).take(4) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "binary `{name}` not found next to {} or its parents; build it first, e.g. \
         `cargo build --release -p hark-daemon -p hark-clients` (cargo test --workspace builds it)",
        exe.display()
    );
}
