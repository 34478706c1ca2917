//! The `harkd` binary's configuration handling and start-up, run as a process.

mod common;

use common::harkd;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/e2b-shaped")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run harkd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flags_beat_environment_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("harkd.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9999\"\nmax_sessions = 3\nworkers = 2\ntoken = \"from-file\"\n[limits]\nidle_timeout_s = 7\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(harkd()
        .arg("--config")
        .arg(&file)
        .args(["--print-config", "--idle-timeout-s", "9"])
        .env("HARKD_MAX_SESSIONS", "5"));
    assert!(ok, "{stderr}");
    let printed: toml::Table = stdout.parse().unwrap();
    assert_eq!(printed["listen"].as_str(), Some("127.0.0.1:9999"), "file");
    assert_eq!(printed["workers"].as_integer(), Some(2), "file");
    assert_eq!(
        printed["max_sessions"].as_integer(),
        Some(5),
        "environment over file"
    );
    assert_eq!(
        printed["limits"]["idle_timeout_s"].as_integer(),
        Some(9),
        "flag over file"
    );
    assert_eq!(
        printed["token"].as_str(),
        Some("********"),
        "the token is never printed"
    );
    assert!(!stdout.contains("from-file"));
}

#[test]
fn configuration_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "max_sesions = 3\n").unwrap();
    let (ok, _, stderr) = run(harkd().arg("--config").arg(&file).arg("--print-config"));
    assert!(!ok);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("max_sesions"),
        "{stderr}"
    );

    std::fs::write(&file, "[limits]\nsample_rates = [16000]\n").unwrap();
    let (ok, _, stderr) = run(harkd().arg("--config").arg(&file).arg("--print-config"));
    assert!(!ok);
    assert!(stderr.contains("limits.sample_rates"), "{stderr}");

    let (ok, _, stderr) = run(harkd().args(["--max-sessions", "0", "--print-config"]));
    assert!(!ok);
    assert!(stderr.contains("max_sessions"), "{stderr}");

    let (ok, _, stderr) = run(harkd().args(["--listen", "not an address"]));
    assert!(!ok);
    assert!(stderr.contains("--listen"), "{stderr}");

    // Each problem is told once, not once per error layer.
    std::fs::write(&file, "max_sessions = \"three\"\n").unwrap();
    let (ok, _, stderr) = run(harkd().arg("--config").arg(&file).arg("--print-config"));
    assert!(!ok);
    assert_eq!(stderr.matches("invalid type").count(), 1, "{stderr}");

    let missing = dir.path().join("nowhere.toml");
    let (ok, _, stderr) = run(harkd().arg("--config").arg(&missing));
    assert!(!ok);
    assert!(stderr.contains("nowhere.toml"), "{stderr}");
}

#[test]
fn an_unloadable_model_stops_the_daemon_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run(harkd()
        .args(["--listen", "127.0.0.1:0", "--model"])
        .arg(dir.path().join("no-such-model")));
    assert!(!ok);
    assert_eq!(stderr.matches("no-such-model").count(), 1, "{stderr}");
}

#[test]
fn a_taken_port_is_reported() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (ok, _, stderr) = run(harkd()
        .args(["--listen", &addr.to_string(), "--model"])
        .arg(fixture_model()));
    assert!(!ok);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

#[test]
fn starts_reports_ready_and_stops_on_sigterm() {
    let mut child = harkd()
        .args(["--listen", "127.0.0.1:0", "--model"])
        .arg(fixture_model())
        .env("HARKD_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("harkd logs its address").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some((200, body)) = http_get(addr, "/healthz") {
            break body;
        }
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("\"status\":\"ready\""), "{body}");
    assert!(body.contains("e2b-shaped"), "{body}");
    let (status, page) = http_get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("harkd_model_loaded 1"), "{page}");
    let (status, _) = http_get(addr, "/no-such-page").unwrap();
    assert_eq!(status, 404);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "harkd ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
