//! A repo id resolves through a Hugging Face cache directory laid out like `huggingface_hub`
//! leaves it (blobs linked from a snapshot), and the checkpoint there loads.

use std::path::Path;

use hark_model::Checkpoint;
use hark_model::hub::{repo_dir, resolve_in};

#[test]
fn checkpoint_loads_from_a_hub_cache_snapshot() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/e2b-shaped");
    let cache = tempfile::tempdir().unwrap();
    let repo = repo_dir(cache.path(), "hark-tests/e2b-shaped");
    let commit = "5f0c2e1d9a";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        // huggingface_hub stores content-addressed blobs and links snapshot files to them.
        let blob = repo
            .join("blobs")
            .join(format!("blob-{}", entry.file_name().to_string_lossy()));
        std::fs::copy(entry.path(), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(entry.file_name())).unwrap();
    }
    let dir = resolve_in("hark-tests/e2b-shaped", Some(cache.path()), "main").unwrap();
    assert_eq!(dir, snapshot);
    let ckpt = Checkpoint::open(&dir).unwrap();
    assert_eq!(ckpt.config.text.num_layers(), 10);
}
