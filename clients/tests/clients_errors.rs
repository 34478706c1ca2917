//! Every client says clearly what is wrong when the daemon is down, the token is wrong, or
//! there is no microphone.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Each live client, reading a file, pointed at `server` with extra flags.
/// `dir` holds the dictation's control socket.
fn clients(server: &str, extra: &[&str], dir: &Path) -> Vec<(&'static str, Command)> {
    let fox = clip("fox.wav");
    let mut out = Vec::new();
    for name in ["captions", "dictate", "meeting", "transcribe"] {
        let mut cmd = hark();
        cmd.arg(name).args(["--server", server]).args(extra);
        match name {
            "transcribe" => {
                cmd.arg(&fox);
            }
            "dictate" => {
                cmd.args(["--stdout", "--mode", "continuous", "--fast", "--input"])
                    .arg(&fox)
                    .arg("--socket")
                    .arg(dir.join("dictate.sock"));
            }
            _ => {
                cmd.args(["--fast", "--input"]).arg(&fox);
            }
        }
        out.push((name, cmd));
    }
    out
}

#[test]
fn a_daemon_that_is_down_is_named_as_such() {
    let server = format!("ws://127.0.0.1:{}", closed_port());
    let dir = tempfile::tempdir().unwrap();
    for (name, mut cmd) in clients(&server, &[], dir.path()) {
        let err = run_err(&mut cmd);
        assert!(
            err.contains("cannot reach harkd at") && err.contains("Is the daemon running?"),
            "{name}: {err}"
        );
        assert!(err.contains("connection refused"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn a_wrong_token_is_named_as_such_and_the_right_one_works() {
    let daemon = Daemon::start(&["--token", "s3cret"]);
    let dir = tempfile::tempdir().unwrap();
    for token in [None, Some("wrong")] {
        let extra: Vec<&str> = token.map(|t| vec!["--token", t]).unwrap_or_default();
        for (name, mut cmd) in clients(&daemon.url(), &extra, dir.path()) {
            let err = run_err(&mut cmd);
            assert!(
                err.contains("refused the connection") && err.contains("--token or HARK_TOKEN"),
                "{name} with token {token:?}: {err}"
            );
        }
    }
    // The token also comes from the environment.
    let (out, _) = run_ok(
        hark()
            .args(["transcribe", "--server", &daemon.url()])
            .env("HARK_TOKEN", "s3cret")
            .arg(clip("hello.wav")),
    );
    assert!(!out.trim().is_empty());
}

#[test]
fn a_missing_microphone_is_named_as_such() {
    let server = format!("ws://127.0.0.1:{}", closed_port());
    let dir = tempfile::tempdir().unwrap();
    for name in ["captions", "dictate", "meeting"] {
        let mut cmd = hark();
        cmd.arg(name)
            .args(["--server", &server, "--device", "no-such-microphone"]);
        if name == "dictate" {
            cmd.args(["--stdout", "--socket"])
                .arg(dir.path().join("d.sock"));
        }
        let err = run_err(&mut cmd);
        assert!(
            err.contains("no microphone available")
                && err.contains("no-such-microphone")
                && err.contains("hark devices")
                && err.contains("--input FILE"),
            "{name}: {err}"
        );
    }
}

#[test]
fn devices_lists_inputs_or_says_there_are_none() {
    let (out, _) = run_ok(hark().arg("devices"));
    assert!(
        out.contains("no audio input devices found") || out.lines().any(|l| !l.starts_with(' ')),
        "{out}"
    );
}

#[test]
fn unusable_inputs_and_addresses_fail_before_connecting() {
    let err = run_err(
        hark()
            .args(["meeting", "--input", "/nonexistent/talk.wav"])
            .args(["--server", "ws://127.0.0.1:1"]),
    );
    assert!(
        err.contains("/nonexistent/talk.wav") && err.contains("not found"),
        "{err}"
    );
    let err = run_err(
        hark()
            .args(["captions", "--server", "wss://example.org", "--input"])
            .arg(clip("fox.wav")),
    );
    assert!(err.contains("plain ws://"), "{err}");
}
