//! `hark_model::download` against a small Hugging Face hub mock on a local port: a complete
//! download into the cache layout `hub::resolve` reads, resume after a truncated transfer, a
//! hash mismatch, a gated repo, and an unreachable hub, each with one clean error.

#![cfg(feature = "download")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use hark_model::download::{DownloadError, Progress, Request, download};
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// What the mock serves and what it saw.
#[derive(Default)]
struct Hub {
    weights: Vec<u8>,
    /// The sha256 the file list claims for the weights (the real one unless a test lies).
    claimed_sha: String,
    /// Bytes of the weights sent on the first full request before the connection is cut.
    cut_first_transfer_at: Option<usize>,
    /// Answer 401 to everything (a gated repo without a token).
    gated: bool,
    /// `Range` headers received for the weights.
    ranges: Vec<String>,
    requests: usize,
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn serve(hub: Arc<Mutex<Hub>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            answer(stream, &hub);
        }
    });
    format!("http://{addr}")
}

fn answer(mut stream: TcpStream, hub: &Mutex<Hub>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line
            .strip_prefix("Range: ")
            .or_else(|| line.strip_prefix("range: "))
        {
            range = Some(v.trim().to_string());
        }
    }
    let mut hub = hub.lock().unwrap();
    hub.requests += 1;
    let reply = |stream: &mut TcpStream, status: &str, body: &[u8], declared: usize| {
        let head =
            format!("HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let _ = stream.write_all(body);
    };
    if hub.gated {
        return reply(&mut stream, "401 Unauthorized", b"", 0);
    }
    let config = br#"{"model_type":"mock"}"#;
    if path.starts_with("/api/models/org/tiny/revision/main") {
        let list = serde_json::json!({
            "sha": COMMIT,
            "siblings": [
                {"rfilename": "config.json", "size": config.len()},
                {"rfilename": "README.md", "size": 5},
                {"rfilename": "model.safetensors", "size": hub.weights.len(),
                 "lfs": {"sha256": hub.claimed_sha, "size": hub.weights.len()}},
            ]
        });
        let body = list.to_string();
        return reply(&mut stream, "200 OK", body.as_bytes(), body.len());
    }
    if path == format!("/org/tiny/resolve/{COMMIT}/config.json") {
        return reply(&mut stream, "200 OK", config, config.len());
    }
    if path == format!("/org/tiny/resolve/{COMMIT}/model.safetensors") {
        let weights = hub.weights.clone();
        if let Some(r) = range {
            hub.ranges.push(r.clone());
            let from: usize = r
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap();
            let rest = &weights[from..];
            return reply(&mut stream, "206 Partial Content", rest, rest.len());
        }
        if let Some(cut) = hub.cut_first_transfer_at.take() {
            // Declare the whole file, send part of it, hang up.
            return reply(&mut stream, "200 OK", &weights[..cut], weights.len());
        }
        return reply(&mut stream, "200 OK", &weights, weights.len());
    }
    reply(&mut stream, "404 Not Found", b"", 0)
}

fn request(endpoint: &str, cache: &Path) -> Request {
    Request {
        repo: "org/tiny".into(),
        revision: "main".into(),
        endpoint: endpoint.into(),
        token: None,
        cache: cache.to_path_buf(),
    }
}

fn weights() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn downloads_into_the_cache_and_resumes_a_truncated_transfer() {
    let weights = weights();
    let hub = Arc::new(Mutex::new(Hub {
        claimed_sha: sha_hex(&weights),
        weights: weights.clone(),
        cut_first_transfer_at: Some(100_000),
        ..Hub::default()
    }));
    let endpoint = serve(hub.clone());
    let cache = tempfile::tempdir().unwrap();
    let req = request(&endpoint, cache.path());

    let err = download(&req, &mut |_| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("run again to resume"), "{err}");

    let mut last = None;
    let snapshot = download(&req, &mut |p| last = Some(p)).unwrap();
    assert_eq!(
        hub.lock().unwrap().ranges,
        vec!["bytes=100000-".to_string()],
        "the second run asks for the rest only"
    );
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        weights
    );
    assert!(snapshot.join("config.json").is_file());
    assert!(
        !snapshot.join("README.md").exists(),
        "only checkpoint files are fetched"
    );
    let total = weights.len() as u64 + 21;
    assert_eq!(last, Some(Progress::Done(total)));
    // hub::resolve finds it by repo id.
    assert_eq!(
        hark_model::hub::resolve_in("org/tiny", Some(cache.path()), "main").unwrap(),
        snapshot
    );
    // A second run with everything present downloads nothing.
    let before = hub.lock().unwrap().requests;
    download(&req, &mut |_| {}).unwrap();
    assert_eq!(
        hub.lock().unwrap().requests,
        before + 1,
        "only the file list"
    );
}

#[test]
fn a_hash_mismatch_is_an_error_and_leaves_no_file() {
    let weights = weights();
    let hub = Arc::new(Mutex::new(Hub {
        claimed_sha: sha_hex(b"something else"),
        weights,
        ..Hub::default()
    }));
    let endpoint = serve(hub);
    let cache = tempfile::tempdir().unwrap();
    let err = download(&request(&endpoint, cache.path()), &mut |_| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Hash { .. }), "{err}");
    let snapshot = cache
        .path()
        .join(format!("models--org--tiny/snapshots/{COMMIT}"));
    assert!(!snapshot.join("model.safetensors").exists());
    assert!(!snapshot.join("model.safetensors.incomplete").exists());
}

#[test]
fn a_gated_repo_says_what_to_do() {
    let hub = Arc::new(Mutex::new(Hub {
        gated: true,
        ..Hub::default()
    }));
    let endpoint = serve(hub);
    let cache = tempfile::tempdir().unwrap();
    let err = download(&request(&endpoint, cache.path()), &mut |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("licence") && text.contains("HF_TOKEN"),
        "{text}"
    );
}

#[test]
fn an_unreachable_hub_is_one_clean_error() {
    // Bind then drop: nothing listens on the port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let err = download(&request(&endpoint, cache.path()), &mut |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DownloadError::Unreachable { .. }), "{text}");
    assert_eq!(text.matches(&endpoint).count(), 1, "{text}");
    assert!(std::error::Error::source(&err).is_none());
}
