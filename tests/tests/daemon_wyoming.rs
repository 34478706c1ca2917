//! The Wyoming protocol listener (Home Assistant): the `wyoming` Python package as the real
//! client, and a raw TCP client for what no well-behaved client sends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hark_tests::audio::{Clip, fixture_text, resample_linear, words, write_wav_s16};
use hark_tests::harkd::Harkd;
use hark_tests::python::run_script;
use serde_json::{Value, json};

/// Start harkd on the embedded demo model with the Wyoming listener on an ephemeral port.
fn start(extra: &[&str]) -> (Harkd, SocketAddr) {
    assert!(
        hark_tests::demo_model_present(),
        "model/demo-model/ is needed to assert real words"
    );
    let harkd = Harkd::builder()
        .embedded_model()
        .max_new_tokens(64)
        .args(["--wyoming-listen", "127.0.0.1:0"])
        .args(extra.iter().copied())
        .start();
    let addr = wyoming_addr(&harkd);
    (harkd, addr)
}

/// The address harkd logged for its Wyoming listener.
fn wyoming_addr(harkd: &Harkd) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = harkd.log();
        if let Some(addr) = log
            .split("wyoming protocol on tcp://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
        {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "no Wyoming listener in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Describes the server, then transcribes each WAV file (`path:pace`, pace `realtime` or
/// `fast`) on one connection, as Home Assistant's integration does; prints JSON.
const CLIENT: &str = r#"
import asyncio, json, sys, wave
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from wyoming.asr import Transcribe, Transcript, TranscriptStart, TranscriptChunk, TranscriptStop
from wyoming.audio import AudioChunk, AudioStop, wav_to_chunks
from wyoming.error import Error

async def transcribe(client, path, realtime):
    with wave.open(path, "rb") as wav:
        chunks = list(wav_to_chunks(wav, 1024, start_event=True, stop_event=True))
    events = []
    stop_sent = asyncio.Event()

    async def read():
        while True:
            event = await client.read_event()
            if event is None:
                events.append({"type": "closed"})
                return
            record = {"type": event.type, "before_stop": not stop_sent.is_set()}
            if TranscriptChunk.is_type(event.type):
                record["text"] = TranscriptChunk.from_event(event).text
            elif Transcript.is_type(event.type):
                t = Transcript.from_event(event)
                record["text"], record["language"] = t.text, t.language
            elif TranscriptStart.is_type(event.type):
                record["language"] = TranscriptStart.from_event(event).language
            elif Error.is_type(event.type):
                record["text"] = Error.from_event(event).text
            events.append(record)
            if TranscriptStop.is_type(event.type) or Error.is_type(event.type):
                return

    reader = asyncio.create_task(read())
    await client.write_event(Transcribe(language="en").event())
    for chunk in chunks:
        if isinstance(chunk, AudioStop):
            stop_sent.set()
        await client.write_event(chunk.event())
        if realtime and isinstance(chunk, AudioChunk):
            await asyncio.sleep(chunk.seconds)
    await asyncio.wait_for(reader, 120)
    return events

async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    out = {}
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 30)
            if Info.is_type(event.type):
                break
        info = Info.from_event(event)
        out["info"] = info.event().data
        out["runs"] = []
        for arg in sys.argv[3:]:
            path, pace = arg.rsplit(":", 1)
            out["runs"].append(await transcribe(client, path, pace == "realtime"))
    print(json.dumps(out))

asyncio.run(main())
"#;

#[test]
fn the_wyoming_client_gets_streamed_chunks_then_the_transcript() {
    let (harkd, addr) = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // numbers.wav at 22050 Hz in stereo with a second of silence after it, paced in real time.
    let numbers = Clip::fixture("numbers").with_silence(1.0);
    assert_eq!((numbers.rate, numbers.channels), (16000, 1));
    let stereo: Vec<f32> = resample_linear(&numbers.samples, 16000, 22050)
        .into_iter()
        .flat_map(|s| [s, s])
        .collect();
    let numbers_path = dir.path().join("numbers-22k-stereo.wav");
    write_wav_s16(&numbers_path, 22050, 2, &stereo);
    let hello_path = hark_tests::audio::fixture_path("hello-44k1-stereo");

    let out = run_script(
        CLIENT,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            &format!("{}:realtime", numbers_path.display()),
            &format!("{}:fast", hello_path.display()),
        ],
    )
    .expect("a Python with the wyoming package");
    assert!(
        out.status.success(),
        "client failed: {}\nharkd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        harkd.log()
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{result}");

    let asr = &result["info"]["asr"][0];
    assert_eq!(asr["name"], "hark", "{asr}");
    assert_eq!(asr["installed"], true);
    assert_eq!(asr["supports_transcript_streaming"], true);
    assert!(
        asr["attribution"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert!(asr["version"].is_string());
    let model = &asr["models"][0];
    assert!(model["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(
        model["languages"]
            .as_array()
            .unwrap()
            .contains(&json!("en")),
        "{model}"
    );

    let runs = result["runs"].as_array().unwrap();
    for (run, clip, streamed_early) in [(&runs[0], "numbers", true), (&runs[1], "hello", false)] {
        let events = run.as_array().unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        // transcript-start, chunks as the decoder commits text, transcript, transcript-stop.
        assert_eq!(kinds.first(), Some(&"transcript-start"), "{kinds:?}");
        assert_eq!(events[0]["language"], "en");
        assert_eq!(
            &kinds[kinds.len() - 2..],
            ["transcript", "transcript-stop"],
            "{kinds:?}"
        );
        assert!(
            kinds[1..kinds.len() - 2]
                .iter()
                .all(|k| *k == "transcript-chunk"),
            "{kinds:?}"
        );
        let chunks: String = events
            .iter()
            .filter(|e| e["type"] == "transcript-chunk")
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        let transcript = &events[kinds.len() - 2];
        let text = transcript["text"].as_str().unwrap();
        assert_eq!(transcript["language"], "en");
        for w in words(&fixture_text(clip)) {
            assert!(
                words(text).contains(&w),
                "{clip}: `{w}` missing from {text:?}"
            );
            assert!(
                words(&chunks).contains(&w),
                "{clip}: `{w}` missing from the streamed chunks {chunks:?}"
            );
        }
        if streamed_early {
            // Live audio: the decoder's committed text arrives while the audio is still coming.
            let early: Vec<&Value> = events
                .iter()
                .filter(|e| e["type"] == "transcript-chunk" && e["before_stop"] == true)
                .collect();
            assert!(!early.is_empty(), "no chunk before audio-stop: {events:?}");
        }
    }
    assert_healthy(&harkd, addr);
}

/// A raw Wyoming client: writes bytes, reads events.
struct Raw {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        // The server may already have closed the connection; what it answered is what counts.
        let _ = self.writer.write_all(bytes);
    }

    fn send(&mut self, kind: &str, data: Value, payload: &[u8]) {
        let mut header = json!({ "type": kind });
        let data = serde_json::to_vec(&data).unwrap();
        header["data_length"] = data.len().into();
        if !payload.is_empty() {
            header["payload_length"] = payload.len().into();
        }
        let mut bytes = serde_json::to_vec(&header).unwrap();
        bytes.push(b'\n');
        bytes.extend(data);
        bytes.extend_from_slice(payload);
        self.send_raw(&bytes);
    }

    /// The next event (`type` plus merged data), `None` once the server closed.
    fn event(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let mut header: Value = serde_json::from_str(&line).expect("a JSON header line");
        let mut data = header.get("data").cloned().unwrap_or(json!({}));
        if let Some(n) = header["data_length"].as_u64() {
            let mut bytes = vec![0; n as usize];
            self.reader.read_exact(&mut bytes).unwrap();
            let extra: Value = serde_json::from_slice(&bytes).unwrap();
            for (k, v) in extra.as_object().unwrap() {
                data[k] = v.clone();
            }
        }
        if let Some(n) = header["payload_length"].as_u64() {
            let mut bytes = vec![0; n as usize];
            self.reader.read_exact(&mut bytes).unwrap();
        }
        header["data"] = data;
        Some(header)
    }

    /// The server answers with `error` of `code`, then closes the connection.
    fn expect_error_and_close(&mut self, code: &str) {
        let event = self.event().expect("an error event before the close");
        assert_eq!(event["type"], "error", "{event}");
        assert_eq!(event["data"]["code"], code, "{event}");
        assert!(
            event["data"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert!(self.event().is_none(), "the connection stays open");
    }
}

const PCM16: &str = r#"{"rate": 16000, "width": 2, "channels": 1}"#;

fn pcm16() -> Value {
    serde_json::from_str(PCM16).unwrap()
}

/// Every slot is free again, `describe` answers, and its slot is given back too.
fn assert_healthy(harkd: &Harkd, addr: SocketAddr) {
    wait_slots_free(harkd);
    let mut c = Raw::connect(addr);
    c.send("describe", json!({}), &[]);
    assert_eq!(c.event().unwrap()["type"], "info");
    drop(c);
    wait_slots_free(harkd);
}

/// Wait until `/healthz` shows no session slot held (closed connections give theirs back
/// once the server has seen them close).
fn wait_slots_free(harkd: &Harkd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = harkd.get("/healthz", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        let health: Value = serde_json::from_str(&r.body).unwrap();
        if health["sessions"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "slots still held: {health}\n{}",
            harkd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn malformed_input_gets_an_error_or_a_close_and_the_server_stays_healthy() {
    let (harkd, addr) = start(&["--idle-timeout-s", "2"]);

    // A header line with no end.
    let mut c = Raw::connect(addr);
    c.send_raw(&vec![b'x'; 200 * 1024]);
    c.expect_error_and_close("message_too_large");

    // Not JSON.
    let mut c = Raw::connect(addr);
    c.send_raw(b"{\"type\": describe}\n");
    c.expect_error_and_close("bad_json");

    // A header without a type.
    let mut c = Raw::connect(addr);
    c.send_raw(b"{\"data\": {}}\n");
    c.expect_error_and_close("bad_message");

    // A payload far above the frame limit is refused before it is read.
    let mut c = Raw::connect(addr);
    c.send_raw(b"{\"type\": \"audio-chunk\", \"payload_length\": 100000000}\n");
    c.expect_error_and_close("frame_too_large");

    // A payload shorter than it says: the client then goes quiet mid-event.
    let mut c = Raw::connect(addr);
    c.send("audio-start", pcm16(), &[]);
    assert_eq!(c.event().unwrap()["type"], "transcript-start");
    c.send_raw(b"{\"type\": \"audio-chunk\", \"payload_length\": 4000}\n");
    c.send_raw(&[0; 100]);
    c.expect_error_and_close("idle_timeout");

    // A payload longer than it says: the rest is read as the next header.
    let mut c = Raw::connect(addr);
    c.send_raw(b"{\"type\": \"frobnicate\", \"payload_length\": 4}\n");
    c.send_raw(&[7; 64]);
    c.send_raw(b"\n");
    c.expect_error_and_close("bad_json");

    // Audio before its format is known.
    let mut c = Raw::connect(addr);
    c.send("audio-chunk", pcm16(), &[0; 640]);
    c.expect_error_and_close("audio_before_start");

    // A format Hark cannot convert, and a chunk that is not whole sample frames.
    let mut c = Raw::connect(addr);
    c.send(
        "audio-start",
        json!({"rate": 16000, "width": 5, "channels": 1}),
        &[],
    );
    c.expect_error_and_close("unsupported_encoding");
    let mut c = Raw::connect(addr);
    c.send("audio-start", pcm16(), &[]);
    assert_eq!(c.event().unwrap()["type"], "transcript-start");
    c.send("audio-chunk", pcm16(), &[0; 641]);
    c.expect_error_and_close("odd_byte_count");

    // A language the model does not know.
    let mut c = Raw::connect(addr);
    c.send("transcribe", json!({"language": "tlh"}), &[]);
    c.expect_error_and_close("invalid_field");

    // Event types this server does not handle are ignored, per the protocol.
    let mut c = Raw::connect(addr);
    c.send("frobnicate", json!({"x": 1}), &[1, 2, 3]);
    c.send("ping", json!({"text": "hi"}), &[]);
    let pong = c.event().unwrap();
    assert_eq!(
        (&pong["type"], &pong["data"]["text"]),
        (&json!("pong"), &json!("hi"))
    );

    // audio-stop with no audio: an empty transcript, and the connection stays usable.
    c.send("audio-stop", json!({}), &[]);
    let t = c.event().unwrap();
    assert_eq!(
        (&t["type"], &t["data"]["text"]),
        (&json!("transcript"), &json!(""))
    );

    // A client that disconnects mid-audio.
    let clip = Clip::fixture("numbers");
    let mut c = Raw::connect(addr);
    c.send("audio-start", pcm16(), &[]);
    for chunk in clip.s16le().chunks(3200).take(10) {
        c.send("audio-chunk", pcm16(), chunk);
    }
    drop(c);

    // Meanwhile and afterwards a well-formed transcription on another connection works.
    let mut c = Raw::connect(addr);
    c.send("transcribe", json!({"language": "en"}), &[]);
    c.send("audio-start", pcm16(), &[]);
    for chunk in clip.s16le().chunks(3200) {
        c.send("audio-chunk", pcm16(), chunk);
    }
    c.send("audio-stop", json!({}), &[]);
    let text = loop {
        let e = c.event().expect("a transcript");
        if e["type"] == "transcript" {
            break e["data"]["text"].as_str().unwrap().to_owned();
        }
    };
    for w in words(&fixture_text("numbers")) {
        assert!(words(&text).contains(&w), "`{w}` missing from {text:?}");
    }
    assert_eq!(c.event().unwrap()["type"], "transcript-stop");
    drop(c);
    assert_healthy(&harkd, addr);

    // Prometheus counts the endpoint's connections and the errors by code.
    let page = harkd.get("/metrics", &[]).body;
    let metric =
        |name: &str, labels: &str| hark_tests::http::metric(&page, name, labels).unwrap_or(0.0);
    assert!(
        metric("harkd_sessions_total", "endpoint=\"wyoming\"") >= 10.0,
        "{page}"
    );
    for code in [
        "bad_json",
        "idle_timeout",
        "message_too_large",
        "frame_too_large",
    ] {
        assert!(
            metric("harkd_errors_total", &format!("code=\"{code}\"")) >= 1.0,
            "{code}: {page}"
        );
    }
}

#[test]
fn sigterm_delivers_the_open_transcript_then_closes() {
    let (mut harkd, addr) = start(&[]);
    let clip = Clip::fixture("numbers");
    let mut c = Raw::connect(addr);
    c.send("transcribe", json!({"language": "en"}), &[]);
    c.send("audio-start", pcm16(), &[]);
    for chunk in clip.s16le().chunks(3200) {
        c.send("audio-chunk", pcm16(), chunk);
    }
    // Events are handled in order: once `pong` is back, all the audio is in the stream.
    c.send("ping", json!({"text": "sync"}), &[]);
    loop {
        let e = c.event().expect("pong");
        if e["type"] == "pong" {
            break;
        }
    }
    harkd.sigterm();
    let mut kinds = Vec::new();
    let mut text = String::new();
    while let Some(e) = c.event() {
        let kind = e["type"].as_str().unwrap().to_owned();
        if kind == "transcript" {
            text = e["data"]["text"].as_str().unwrap().to_owned();
        }
        if kind == "error" {
            assert_eq!(e["data"]["code"], "shutting_down", "{e}");
        }
        kinds.push(kind);
    }
    assert_eq!(
        kinds[kinds.len().saturating_sub(3)..],
        ["transcript", "transcript-stop", "error"],
        "{kinds:?}"
    );
    for w in words(&fixture_text("numbers")) {
        assert!(words(&text).contains(&w), "`{w}` missing from {text:?}");
    }
    assert!(harkd.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn wyoming_connections_share_the_session_slots() {
    let (harkd, addr) = start(&["--max-sessions", "1"]);
    let mut first = Raw::connect(addr);
    first.send("describe", json!({}), &[]);
    assert_eq!(first.event().unwrap()["type"], "info");
    let mut second = Raw::connect(addr);
    second.expect_error_and_close("server_busy");
    drop(first);
    assert_healthy(&harkd, addr);
}
