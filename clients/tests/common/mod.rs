//! What the client end-to-end tests share: the real `harkd`, the `hark` binary, fixture
//! clips, and checks of transcribed words.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Token budget per hypothesis with the random fixture model (it never stops by itself).
const FIXTURE_MAX_NEW_TOKENS: &str = "8";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn clip(name: &str) -> PathBuf {
    repo().join("tests/fixtures/audio").join(name)
}

/// The `hark` binary under test.
pub fn hark() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hark"));
    for var in [
        "HARK_SERVER",
        "HARK_TOKEN",
        "HARK_DEVICE",
        "HARK_INJECTOR",
        "HARK_MODEL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HARK_LOG", "warn");
    cmd
}

/// `harkd` from the same target directory as this test (target/<profile>/harkd).
pub fn harkd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    for dir in exe.ancestors().skip(1) {
        let candidate = dir.join("harkd");
        if candidate.is_file() {
            return candidate;
        }
        if dir.file_name().is_some_and(|n| n == "target") {
            break;
        }
    }
    panic!(
        "harkd is not built next to this test binary ({}): run `cargo build --release -p \
         hark-daemon` (or `cargo test --release` for the whole workspace) first",
        exe.display()
    );
}

/// The trained demonstration model, when the checkout has it: tests then check real words.
pub fn demo_model() -> Option<PathBuf> {
    let dir = repo().join("model/demo-model");
    dir.join("model.safetensors").is_file().then_some(dir)
}

/// A running harkd, killed on drop.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts harkd on a free port with the demonstration model (or the fixture model) and
    /// `extra` flags, and waits until it is ready.
    pub fn start(extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(harkd_binary());
        cmd.args(["--listen", "127.0.0.1:0"]);
        match demo_model() {
            Some(dir) => {
                cmd.arg("--model").arg(dir);
            }
            None => {
                cmd.arg("--model")
                    .arg(repo().join("tests/fixtures/models/e2b-shaped"))
                    .args(["--max-new-tokens", FIXTURE_MAX_NEW_TOKENS]);
            }
        }
        cmd.args(extra)
            .env("HARKD_LOG", "info")
            .env_remove("HARKD_CONFIG")
            .env_remove("HARKD_TOKEN")
            .env_remove("HARKD_MODEL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start harkd");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(addr) = rest
                        .split_whitespace()
                        .next()
                        .and_then(|a| a.trim_end_matches(',').parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("harkd did not start; log:\n{}", log.lock().unwrap());
        };
        let daemon = Daemon { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        while http_get(daemon.addr, "/healthz").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "harkd not ready; log:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    /// `ws://ADDR`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path`: status and body (0 when nothing answers).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// A local port nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The words a clip says (from the fixture manifest).
pub fn clip_words(file: &str) -> Vec<String> {
    words(&clip_text(file))
}

/// The reference transcript of a fixture clip, as its manifest has it.
pub fn clip_text(file: &str) -> String {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(clip("manifest.json")).unwrap()).unwrap();
    let entry = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == file)
        .unwrap_or_else(|| panic!("{file} is not in the manifest"));
    entry["text"].as_str().unwrap().to_owned()
}

/// Lower-case words without punctuation.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// With the demonstration model, most of `expected` must appear in `text` (it is a small
/// model: a word or two may be wrong). With the random fixture model only structure can be
/// checked, so this passes.
pub fn assert_says(text: &str, expected: &[String]) {
    if demo_model().is_none() {
        return;
    }
    let got = words(text);
    let hits = expected.iter().filter(|w| got.contains(w)).count();
    assert!(
        hits * 3 >= expected.len() * 2,
        "expected most of {expected:?} in {text:?}"
    );
}

/// With the demonstration model, none of `words` may appear in `text`.
pub fn assert_not_says(text: &str, unexpected: &[&str]) {
    if demo_model().is_none() {
        return;
    }
    let got = words(text);
    for w in unexpected {
        assert!(!got.contains(&w.to_string()), "{w:?} in {text:?}");
    }
}

/// Writes a 16 kHz mono WAV of the clips with `gap_s` of silence between and after them;
/// returns the path and its length in samples.
pub fn speech_with_gaps(dir: &Path, clips: &[&str], gap_s: f64) -> (PathBuf, u64) {
    let mut samples = Vec::new();
    let gap = vec![0f32; (gap_s * 16_000.0) as usize];
    for c in clips {
        samples.extend(hark_audio_io_load(&clip(c)));
        samples.extend(&gap);
    }
    let name = match clips.join("-") {
        // File names have a length limit.
        joined if joined.len() > 100 => format!("{}-clips.wav", clips.len()),
        joined => format!("{joined}.wav"),
    };
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in &samples {
        w.write_sample((s * 32767.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();
    (path, samples.len() as u64)
}

/// Reads a 16 kHz mono 16-bit fixture clip.
fn hark_audio_io_load(path: &Path) -> Vec<f32> {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels),
        (16_000, 1),
        "{}",
        path.display()
    );
    r.samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}

/// Runs `cmd`, failing the test with its output if it does not succeed; returns stdout and
/// stderr.
pub fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("run hark");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Runs `cmd` expecting failure; returns stderr.
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run hark");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{cmd:?} should have failed:\nstdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Waits for `cond`, polling.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parses JSON-lines output, one value a line.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
