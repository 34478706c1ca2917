//! `hark meeting` through the real harkd: transcripts in every format, a connection cut
//! mid-stream (resumed, and replayed into a fresh session when resume is off) without losing
//! or repeating audio, and a clean stop on Ctrl-C.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

/// A TCP proxy to harkd that cuts its first connection after `cut_after` bytes from the
/// client, abruptly, in whatever frame is passing; later connections go through untouched.
struct CuttingProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl CuttingProxy {
    fn start(upstream: SocketAddr, cut_after: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (cut2, conns) = (cut.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let first = conns.fetch_add(1, Ordering::SeqCst) == 0;
                let limit = if first { Some(cut_after) } else { None };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let flag = cut2.clone();
                std::thread::spawn(move || pump(client, server, limit, &flag));
                std::thread::spawn(move || pump(s2, c2, None, &AtomicBool::new(false)));
            }
        });
        CuttingProxy {
            addr,
            cut,
            connections,
        }
    }
}

/// Copies `from` → `to`; with a limit, drops both connections once it is passed.
fn pump(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>, cut: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut passed = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(limit) = limit
            && passed + n > limit
        {
            let keep = limit - passed;
            let _ = to.write_all(&buf[..keep]);
            cut.store(true, Ordering::SeqCst);
            break;
        }
        passed += n;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Runs a meeting of `speech` through `server` to JSON and returns the transcript.
fn meeting_json(
    server: &str,
    speech: &std::path::Path,
    dir: &std::path::Path,
) -> serde_json::Value {
    let out = dir.join("meeting.json");
    let (_, err) = run_ok(
        hark()
            .args(["meeting", "--fast", "--server", server, "--output"])
            .arg(&out)
            .arg("--input")
            .arg(speech),
    );
    assert!(err.contains("hark meeting: transcribed"), "{err}");
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

/// Every sample acknowledged exactly once, segment ids and times in order and inside the audio.
fn assert_complete(t: &serde_json::Value, total: u64) {
    let session = &t["session"];
    assert_eq!(session["sent_samples"], total, "{t:#}");
    assert_eq!(
        session["acked_samples"], total,
        "audio lost or duplicated: {t:#}"
    );
    assert_eq!(session["lost_samples"], 0);
    let duration = total as f64 / 16_000.0;
    assert!((t["audio_s"].as_f64().unwrap() - duration).abs() < 1e-6);
    let segments = t["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{t:#}");
    let mut last_end = 0.0;
    let mut last_id = -1i64;
    for s in segments {
        let (id, start, end) = (
            s["id"].as_i64().unwrap(),
            s["start"].as_f64().unwrap(),
            s["end"].as_f64().unwrap(),
        );
        assert!(id > last_id, "segment ids out of order: {t:#}");
        assert!(start >= last_end - 0.05, "segments overlap: {t:#}");
        assert!(start <= end && end <= duration + 0.05, "{t:#}");
        last_end = end;
        last_id = id;
    }
}

fn expected_words(clips: &[&str]) -> Vec<String> {
    clips.iter().flat_map(|c| clip_words(c)).collect()
}

const CLIPS: [&str; 3] = ["coffee.wav", "lights.wav", "numbers.wav"];

#[test]
fn a_cut_connection_is_resumed_without_losing_audio() {
    let daemon = Daemon::start(&["--resume-window-s", "30"]);
    let dir = tempfile::tempdir().unwrap();
    let (speech, total) = speech_with_gaps(dir.path(), &CLIPS, 1.0);
    // Cut after about 2.5 s of audio (s16le at 16 kHz, plus frame headers and `start`).
    let proxy = CuttingProxy::start(daemon.addr, 80_000);
    let t = meeting_json(&format!("ws://{}", proxy.addr), &speech, dir.path());
    assert!(proxy.cut.load(Ordering::SeqCst), "the proxy never cut");
    assert!(proxy.connections.load(Ordering::SeqCst) >= 2);
    assert!(t["session"]["resumed"].as_u64().unwrap() >= 1, "{t:#}");
    assert_eq!(t["session"]["restarted"], 0, "{t:#}");
    assert_complete(&t, total);
    assert_says(t["text"].as_str().unwrap(), &expected_words(&CLIPS));
}

#[test]
fn without_resume_a_fresh_session_replays_the_unfinished_audio() {
    let daemon = Daemon::start(&["--resume-window-s", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let (speech, total) = speech_with_gaps(dir.path(), &CLIPS, 1.0);
    let proxy = CuttingProxy::start(daemon.addr, 80_000);
    let t = meeting_json(&format!("ws://{}", proxy.addr), &speech, dir.path());
    assert!(proxy.cut.load(Ordering::SeqCst), "the proxy never cut");
    assert_eq!(t["session"]["resumed"], 0, "{t:#}");
    assert!(t["session"]["restarted"].as_u64().unwrap() >= 1, "{t:#}");
    assert_complete(&t, total);
    assert_says(t["text"].as_str().unwrap(), &expected_words(&CLIPS));
}

#[test]
fn transcript_formats_and_summary() {
    let daemon = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (speech, _) = speech_with_gaps(dir.path(), &["hello.wav", "lights.wav"], 1.0);

    // Markdown on stdout by default; the summary on stderr.
    let (md, err) = run_ok(
        hark()
            .args(["meeting", "--fast", "--server", &daemon.url(), "--input"])
            .arg(&speech),
    );
    assert!(md.starts_with("# Transcript\n"), "{md}");
    assert!(md.contains("**[00:00:0"), "{md}");
    let summary = err.lines().last().unwrap();
    assert!(
        // Short spans read as seconds, not as "00:00:00".
        summary
            .strip_prefix("hark meeting: transcribed ")
            .and_then(|rest| rest.split_once(" s of audio in "))
            .is_some_and(|(audio, _)| audio.parse::<f64>().is_ok_and(|s| s > 3.0))
            && !summary.contains("00:00:00")
            && summary.ends_with("transcript: stdout"),
        "{err}"
    );

    for (format, check) in [("srt", "1\n00:00:"), ("vtt", "WEBVTT\n\n00:00:")] {
        let path = dir.path().join(format!("m.{format}"));
        run_ok(
            hark()
                .args(["meeting", "--fast", "--server", &daemon.url(), "-o"])
                .arg(&path)
                .arg("--input")
                .arg(&speech),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(check), "{text}");
    }
}

#[test]
fn ctrl_c_ends_a_meeting_cleanly() {
    let daemon = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (speech, total) = speech_with_gaps(dir.path(), &CLIPS, 1.0);
    let out = dir.path().join("m.json");
    // Real-time input stands in for a microphone; interrupt it after the first clip.
    let child = hark()
        .args(["meeting", "--server", &daemon.url(), "-o"])
        .arg(&out)
        .arg("--input")
        .arg(&speech)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{err}");
    assert!(
        err.contains("stopping") && err.contains("hark meeting: transcribed"),
        "{err}"
    );
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let acked = t["session"]["acked_samples"].as_u64().unwrap();
    assert!(acked > 16_000 * 3 && acked < total, "{acked} of {total}");
    assert_eq!(t["session"]["sent_samples"], acked);
    assert_says(t["text"].as_str().unwrap(), &clip_words("coffee.wav"));
}
