//! Shared by the harkd process tests.

use std::process::Command;

/// The `harkd` binary with every `HARKD_*` variable of the test's environment removed, so
/// only what a test sets reaches it.
pub fn harkd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harkd"));
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("HARKD_") {
            cmd.env_remove(var);
        }
    }
    cmd
}
