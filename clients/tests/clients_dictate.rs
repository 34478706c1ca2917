//! `hark dictate` through the real harkd: continuous mode on stdout, push-to-talk with a
//! recording injector (a `cmd:` program that appends what it is given to a file), and
//! silence that must type nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A `cmd:` injector that appends each piece of text to `log`.
fn recording_injector(dir: &Path, log: &Path) -> String {
    let script = dir.join("record-typing");
    std::fs::write(&script, "#!/bin/sh\ncat >> \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("cmd:{} {}", script.display(), log.display())
}

fn control(socket: &Path, cmd: &str) -> String {
    let (out, _) = run_ok(hark().args(["dictate", cmd, "--socket"]).arg(socket));
    out.trim().to_owned()
}

#[test]
fn continuous_dictation_prints_committed_text() {
    let daemon = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (speech, _) = speech_with_gaps(dir.path(), &["coffee.wav", "numbers.wav"], 1.0);
    let (out, err) = run_ok(
        hark()
            .args(["dictate", "--mode", "continuous", "--stdout", "--fast"])
            .args(["--server", &daemon.url(), "--socket"])
            .arg(dir.path().join("d.sock"))
            .arg("--input")
            .arg(&speech),
    );
    assert!(err.contains("typing with stdout"), "{err}");
    let typed = out.trim_end_matches('\n');
    assert!(!typed.trim().is_empty(), "nothing typed; stderr:\n{err}");
    assert!(
        !typed.contains('\n'),
        "a newline would press Enter: {typed:?}"
    );
    let mut expected = clip_words("coffee.wav");
    expected.extend(clip_words("numbers.wav"));
    assert_says(typed, &expected);
}

#[test]
fn silence_types_nothing() {
    let daemon = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("typed.txt");
    let (out, _) = run_ok(
        hark()
            .args(["dictate", "--mode", "continuous", "--fast", "--injector"])
            .arg(recording_injector(dir.path(), &log))
            .args(["--server", &daemon.url(), "--socket"])
            .arg(dir.path().join("d.sock"))
            .arg("--input")
            .arg(clip("silence.wav")),
    );
    assert!(out.is_empty(), "{out:?}");
    assert!(
        !log.exists(),
        "typed on silence: {:?}",
        std::fs::read_to_string(&log)
    );
}

#[test]
fn push_to_talk_types_only_what_was_said_while_held() {
    let daemon = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("typed.txt");
    let socket = dir.path().join("ptt.sock");
    // coffee, 3 s of silence, lights: the key is held for the first clip only.
    let (speech, _) = speech_with_gaps(dir.path(), &["coffee.wav", "lights.wav"], 3.0);
    let coffee_s = hound::WavReader::open(clip("coffee.wav"))
        .unwrap()
        .duration() as f64
        / 16_000.0;
    let child = hark()
        .args(["dictate", "--mode", "push-to-talk", "--injector"])
        .arg(recording_injector(dir.path(), &log))
        .args(["--server", &daemon.url(), "--socket"])
        .arg(&socket)
        .arg("--input")
        .arg(&speech)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    wait_for("the control socket", Duration::from_secs(20), || {
        socket.exists()
    });
    assert_eq!(control(&socket, "status"), "ok idle");
    assert_eq!(control(&socket, "start"), "ok listening");
    // Release the key in the pause after the first clip (real-time input).
    let release = Duration::from_secs_f64(coffee_s + 1.5);
    std::thread::sleep(release.saturating_sub(began.elapsed()));
    assert_eq!(control(&socket, "stop"), "ok idle");
    // The flush types the utterance right away, long before the input ends.
    wait_for("the utterance to be typed", Duration::from_secs(30), || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty());
    let typed = std::fs::read_to_string(&log).unwrap();
    assert!(!typed.trim().is_empty());
    assert_says(&typed, &clip_words("coffee.wav"));
    assert_not_says(&typed, &["kitchen", "lights"]);
    // The dictation removed its socket on exit.
    assert!(!socket.exists());
    let err = run_err(hark().args(["dictate", "start", "--socket"]).arg(&socket));
    assert!(err.contains("no `hark dictate` is running"), "{err}");
}
