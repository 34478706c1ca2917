//! The README's two commands: their set-up script works, and CI runs exactly the test command.

mod common;

use std::process::Command;

use common::repo;

/// The command lines of the README's "Two commands" block.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Two commands")
        .nth(1)
        .expect("a Two commands section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn ci_runs_the_readme_test_command_and_both_start_with_the_set_up_script() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(
        commands[0].starts_with("tools/test-deps.sh --build && cargo run --release --bin hark"),
        "{commands:?}"
    );
    assert_eq!(
        commands[1],
        "tools/test-deps.sh && cargo test --release --workspace"
    );
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l == commands[1] || l.starts_with(&format!("{} 2>&1", commands[1]))),
        ".ci/run does not run `{}`",
        commands[1]
    );
}

#[test]
fn the_set_up_script_finds_what_the_build_and_the_tests_need() {
    // The packages are installed here (the test command ran the script), so it only checks.
    for args in [&["--build"][..], &[]] {
        let out = Command::new("bash")
            .arg(repo().join("tools/test-deps.sh"))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("all system packages present"), "{stdout}");
        assert!(stdout.contains("libasound2-dev"), "{stdout}");
    }
    let bad = Command::new("bash")
        .arg(repo().join("tools/test-deps.sh"))
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
