//! The small things a new user trips over in the first hour, each checked on the real `hark`.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::*;

fn stderr_of(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("run hark");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_error_and_its_cause_are_printed_once() {
    // A directory given as an audio file: an i/o error whose message already carries its
    // source's text.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = stderr_of(hark().arg("transcribe").arg(dir.path()));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn no_colour_escapes_when_stderr_is_not_a_terminal() {
    let (_, _, stderr) = stderr_of(
        hark()
            .env("HARK_LOG", "debug")
            .args(["transcribe", "/no/such/file.wav"]),
    );
    assert!(stderr.contains("/no/such/file.wav"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    let (_, _, stderr) = stderr_of(hark().args(["-vv", "model", "info"]));
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

#[test]
fn a_bad_file_among_good_ones_is_reported_and_the_rest_transcribed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wav");
    let (code, stdout, stderr) = stderr_of(
        hark()
            .arg("transcribe")
            .arg(clip("numbers.wav"))
            .arg(&missing)
            .arg(clip("hello.wav")),
    );
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("numbers.wav: ") && lines[1].contains("hello.wav: "));
    if demo_model().is_some() {
        assert!(lines[1].ends_with("hello world"), "{stdout}");
    }
    assert!(stderr.contains("missing.wav"), "{stderr}");
    assert!(
        stderr.contains("1 of 3 files could not be transcribed"),
        "{stderr}"
    );
}

#[test]
fn languages_are_tags_or_names_everywhere_and_unknown_ones_are_refused() {
    for language in ["en", "English", "en-GB", "english"] {
        let (stdout, _) = run_ok(
            hark()
                .args(["transcribe", "--language", language])
                .arg(clip("numbers.wav")),
        );
        if demo_model().is_some() {
            assert_eq!(stdout.trim(), clip_text("numbers.wav"), "{language}");
        }
    }
    let server = format!("ws://127.0.0.1:{}", closed_port());
    let dir = tempfile::tempdir().unwrap();
    let numbers = clip("numbers.wav");
    let numbers = numbers.to_str().unwrap();
    for args in [
        vec!["transcribe", "--language", "Klingon", numbers],
        vec!["transcribe", "--target-language", "tlh", numbers],
        vec![
            "transcribe",
            "--server",
            &server,
            "--language",
            "Klingon",
            numbers,
        ],
        vec![
            "captions",
            "--server",
            &server,
            "--language",
            "Klingon",
            "--input",
            numbers,
        ],
        vec![
            "meeting",
            "--server",
            &server,
            "--language",
            "Klingon",
            "--input",
            numbers,
        ],
        vec![
            "dictate",
            "--server",
            &server,
            "--language",
            "Klingon",
            "--stdout",
        ],
        vec!["eval", "--manifest", "m.jsonl", "--language", "Klingon"],
    ] {
        let err = run_err(hark().args(&args).current_dir(dir.path()));
        assert!(
            err.contains("unknown language") && err.contains("hark languages"),
            "{args:?}: {err}"
        );
    }
    let (list, _) = run_ok(hark().arg("languages"));
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().eq(["fr", "French"])),
        "{list}"
    );
    assert!(list.lines().count() > 40, "{list}");
}

#[test]
fn a_target_language_means_translate_and_contradicting_it_is_an_error() {
    let err = run_err(
        hark()
            .args([
                "transcribe",
                "--task",
                "transcribe",
                "--target-language",
                "fr",
            ])
            .arg(clip("numbers.wav")),
    );
    assert!(
        err.contains("--target-language") && err.contains("--task"),
        "{err}"
    );
    let err = run_err(
        hark()
            .args(["transcribe", "--task", "translate"])
            .arg(clip("numbers.wav")),
    );
    assert!(err.contains("--target-language"), "{err}");
    run_ok(
        hark()
            .args(["transcribe", "--target-language", "French"])
            .arg(clip("numbers.wav")),
    );
}

#[test]
fn model_info_prints_values_not_rust_options() {
    let (stdout, _) = run_ok(hark().args(["model", "info"]));
    assert!(
        !stdout.contains("Some(") && !stdout.contains("None"),
        "{stdout}"
    );
    assert!(stdout.contains("final softcap"), "{stdout}");
}

#[test]
fn device_listings_stay_short_and_alsa_keeps_quiet() {
    let (_, stdout, stderr) = stderr_of(hark().args(["devices", "--all"]));
    assert!(stdout.lines().count() < 60, "{stdout}");
    assert!(!stderr.contains("ALSA lib"), "{stderr}");
    let server = format!("ws://127.0.0.1:{}", closed_port());
    let (_, _, stderr) = stderr_of(hark().args(["captions", "--server", &server]));
    assert!(!stderr.contains("ALSA lib"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    // `hark transcribe … | head -c 1`: the reader is gone before the second file's line.
    let mut child = hark()
        .arg("transcribe")
        .arg(clip("numbers.wav"))
        .arg(clip("hello.wav"))
        .arg(clip("lights.wav"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
    assert!(status.success(), "{status}: {stderr}");
}
