//! A Python with the third-party client packages the end-to-end tests drive harkd with
//! (the official `openai` SDK, Home Assistant's `wyoming`).
//!
//! The tests get it themselves so that `cargo test` needs nothing set up by hand:
//! `HARK_TEST_PYTHON` names an interpreter that already has `tools/test-requirements.txt`;
//! otherwise a virtual environment is made once in `target/test-venv` (from `python3 -m venv`,
//! packages from PyPI) and reused. A test that needs it fails, with the reason, when it cannot
//! be had — it never skips.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::repo_root;

/// The interpreter, set up on first call (once per process; a lock file serialises processes).
pub fn python() -> Result<PathBuf> {
    static PYTHON: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| locate().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("no Python for the client tests: {e}"))
}

/// Runs `script` (Python source) with `args`, returning its output whatever the exit status.
pub fn run_script(script: &str, args: &[&str]) -> Result<Output> {
    let python = python()?;
    Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", python.display()))
}

fn locate() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HARK_TEST_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let root = repo_root();
    let requirements = root.join("tools/test-requirements.txt");
    let venv = root.join("target/test-venv");
    std::fs::create_dir_all(root.join("target")).context("creating target/")?;
    let lock = File::create(root.join("target/test-venv.lock")).context("creating the lock")?;
    lock.lock().context("locking target/test-venv.lock")?;
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.txt");
    let wanted =
        std::fs::read_to_string(&requirements).context("reading tools/test-requirements.txt")?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return Ok(python);
    }
    eprintln!(
        "setting up {} (python3 -m venv, pip install -r {})",
        venv.display(),
        requirements.display()
    );
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .context("running python3 -m venv (install python3 and python3-venv)")?;
        check(
            &made,
            "python3 -m venv (on Debian/Ubuntu: apt install python3-venv)",
        )?;
    }
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .context("running pip")?;
    check(
        &pip,
        "pip install -r tools/test-requirements.txt (needs PyPI once)",
    )?;
    std::fs::write(&stamp, wanted).context("writing the venv stamp")?;
    Ok(python)
}

fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    bail!("{what} failed ({}): {}", out.status, tail(&stderr));
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(2000);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

/// Where the interpreter would be made (for messages).
pub fn venv_dir() -> PathBuf {
    repo_root().join("target/test-venv")
}
