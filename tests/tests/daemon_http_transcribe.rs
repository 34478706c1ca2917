//! The OpenAI audio HTTP API of harkd (`POST /v1/audio/transcriptions`,
//! `POST /v1/audio/translations`, `GET /v1/models`), driven by the official `openai` Python
//! SDK, by `curl -F` and by raw HTTP requests: every response format, streaming, long files cut
//! into timed segments, and every kind of bad request (OpenAI-shaped error, server unharmed).

use std::net::SocketAddr;

use hark_tests::audio::{Clip, fixture_path, fixture_text, words, write_wav_s16};
use hark_tests::harkd::{Builder, Harkd};
use hark_tests::http::{Response, exchange, metric};
use hark_tests::native::{self, Client, Pace};
use hark_tests::python::run_script;
use serde_json::Value;

const TOKEN: &str = "s3cret-http";
const AUTH: &str = "Authorization: Bearer s3cret-http";
const TRANSCRIPTIONS: &str = "/v1/audio/transcriptions";

/// harkd with the trained demonstration model when it is in the tree (real words; then the
/// tests also check them), else the random fixture model (well-formed answers only).
fn daemon() -> Builder {
    let builder = Harkd::builder().args(["--token", TOKEN]);
    if hark_tests::demo_model_present() {
        builder.embedded_model().max_new_tokens(64)
    } else {
        builder
    }
}

fn real_words() -> bool {
    hark_tests::demo_model_present()
}

/// Every word of clip `name` is in `text`.
fn assert_words(name: &str, text: &str) {
    if !real_words() {
        return;
    }
    let got = words(text);
    for w in words(&fixture_text(name)) {
        assert!(got.contains(&w), "{name}: `{w}` missing from {text:?}");
    }
}

/// One multipart/form-data field.
struct Field<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    value: &'a [u8],
}

fn field<'a>(name: &'a str, value: &'a str) -> Field<'a> {
    Field {
        name,
        filename: None,
        value: value.as_bytes(),
    }
}

fn file(value: &[u8]) -> Field<'_> {
    Field {
        name: "file",
        filename: Some("clip.wav"),
        value,
    }
}

const BOUNDARY: &str = "hark-test-boundary-7MA4YWxkTrZu0gW";

fn multipart_body(fields: &[Field]) -> Vec<u8> {
    let mut body = Vec::new();
    for f in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match f.filename {
            Some(name) => format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n",
                f.name
            ),
            None => format!("Content-Disposition: form-data; name=\"{}\"\r\n", f.name),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(f.value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `POST path` with `body` as it is, under the given Content-Type and extra header lines.
fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    content_type: &str,
    body: &[u8],
) -> Response {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut raw = request.into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw).expect("HTTP request to harkd")
}

fn post_form(addr: SocketAddr, path: &str, headers: &[&str], fields: &[Field]) -> Response {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    post(addr, path, headers, &content_type, &multipart_body(fields))
}

fn json(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

/// The response is `status` with an OpenAI error body carrying `code` (and `param`).
fn assert_error(r: &Response, status: u16, code: &str, param: Option<&str>) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{r:?}"
    );
    let body = json(r);
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    match param {
        Some(p) => assert_eq!(error["param"], p, "{body}"),
        None => assert!(error["param"].is_null(), "{body}"),
    }
}

/// Cues of an SRT or WebVTT document: (start, end, text).
fn cues(doc: &str, separator: char) -> Vec<(f64, f64, String)> {
    let time = |t: &str| -> f64 {
        let (hms, ms) = t
            .trim()
            .split_once(separator)
            .unwrap_or_else(|| panic!("bad time {t:?}"));
        let parts: Vec<f64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
        assert_eq!(parts.len(), 3, "{t:?}");
        assert_eq!(ms.len(), 3, "{t:?}");
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2] + ms.parse::<f64>().unwrap() / 1000.0
    };
    let mut out = Vec::new();
    for block in doc.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let lines: Vec<&str> = block.lines().collect();
        let Some(arrow) = lines.iter().position(|l| l.contains(" --> ")) else {
            continue;
        };
        let (a, b) = lines[arrow].split_once(" --> ").unwrap();
        out.push((time(a), time(b), lines[arrow + 1..].join(" ")));
    }
    out
}

/// Cues in order, each inside the audio and not longer than the model's 30 s span.
fn assert_well_timed(spans: &[(f64, f64)], duration: f64) {
    let mut last_end = 0.0;
    for &(start, end) in spans {
        assert!(start >= last_end - 1e-3, "{spans:?}");
        assert!(start < end, "{spans:?}");
        assert!(end <= duration + 0.05, "{spans:?} beyond {duration}");
        assert!(end - start <= 30.0 + 1e-3, "{spans:?}");
        last_end = end;
    }
}

/// The SDK calls of a client that uses every response format, streaming, translation and
/// the model list; prints what it got as JSON (with each object's SDK class).
const SDK_SCRIPT: &str = r#"
import json, sys
from openai import OpenAI
base, key, path = sys.argv[1:4]
client = OpenAI(base_url=base, api_key=key, max_retries=0)
def f():
    return open(path, "rb")
t = client.audio.transcriptions
out = {}
j = t.create(file=f(), model="whisper-1")
out["json"] = {"class": type(j).__name__, **j.model_dump()}
out["text"] = t.create(file=f(), model="whisper-1", response_format="text")
out["srt"] = t.create(file=f(), model="whisper-1", response_format="srt")
out["vtt"] = t.create(file=f(), model="whisper-1", response_format="vtt")
v = t.create(file=f(), model="whisper-1", response_format="verbose_json",
             timestamp_granularities=["segment"], language="en", temperature=0.0,
             prompt="a phone number")
out["verbose_json"] = {"class": type(v).__name__, **v.model_dump()}
out["stream"] = [{"class": type(e).__name__, **e.model_dump()}
                 for e in t.create(file=f(), model="gpt-4o-transcribe", stream=True)]
tr = client.audio.translations
out["translation"] = tr.create(file=f(), model="whisper-1").model_dump()
tv = tr.create(file=f(), model="whisper-1", response_format="verbose_json")
out["translation_verbose"] = {"class": type(tv).__name__, **tv.model_dump()}
out["models"] = [m.model_dump() for m in client.models.list()]
out["model"] = client.models.retrieve(out["models"][0]["id"]).model_dump()
print(json.dumps(out))
"#;

/// The SDK's typed errors for refused requests: class name, status and body of each.
const SDK_ERRORS_SCRIPT: &str = r#"
import json, sys
import openai
from openai import OpenAI
base, key, path = sys.argv[1:4]
out = {}
def attempt(name, call):
    try:
        call()
        out[name] = {"class": "no error"}
    except openai.APIStatusError as e:
        out[name] = {"class": type(e).__name__, "status": e.status_code, "body": e.body}
good = OpenAI(base_url=base, api_key=key, max_retries=0)
bad = OpenAI(base_url=base, api_key="wrong-" + key, max_retries=0)
attempt("wrong_key", lambda: bad.audio.transcriptions.create(file=open(path, "rb"), model="whisper-1"))
attempt("word_times", lambda: good.audio.transcriptions.create(
    file=open(path, "rb"), model="whisper-1", response_format="verbose_json",
    timestamp_granularities=["word"]))
attempt("garbage", lambda: good.audio.transcriptions.create(
    file=("clip.wav", b"not audio at all" * 64), model="whisper-1"))
attempt("unknown_model", lambda: good.models.retrieve("whisper-1"))
print(json.dumps(out))
"#;

fn run_python(script: &str, harkd: &Harkd, clip: &std::path::Path) -> Value {
    let base = format!("http://{}/v1", harkd.addr);
    let out = run_script(script, &[&base, TOKEN, clip.to_str().unwrap()])
        .expect("a Python with the pinned openai SDK");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK script failed:\n{}\n{stdout}\nharkd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        harkd.log()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn the_openai_sdk_transcribes_a_clip_in_every_format() {
    let harkd = daemon().start();
    let clip = Clip::fixture("numbers");
    let duration = clip.seconds();
    let got = run_python(SDK_SCRIPT, &harkd, &fixture_path("numbers"));

    let text = got["json"]["text"].as_str().expect("json text").to_owned();
    assert_eq!(got["json"]["class"], "Transcription");
    assert!(!text.is_empty(), "{got}");
    assert_words("numbers", &text);
    assert_eq!(got["json"]["usage"]["type"], "duration");
    assert_eq!(got["text"], format!("{text}\n"));

    let srt = cues(got["srt"].as_str().unwrap(), ',');
    let vtt_doc = got["vtt"].as_str().unwrap();
    assert!(vtt_doc.starts_with("WEBVTT\n\n"), "{vtt_doc:?}");
    let vtt = cues(vtt_doc, '.');
    assert!(!srt.is_empty(), "{got}");
    assert_eq!(srt, vtt);
    assert!(got["srt"].as_str().unwrap().starts_with("1\n"), "{got}");
    let spans: Vec<_> = srt.iter().map(|c| (c.0, c.1)).collect();
    assert_well_timed(&spans, duration);
    let cue_text: Vec<_> = srt.iter().map(|c| c.2.as_str()).collect();
    assert_eq!(cue_text.join(" "), text);

    let v = &got["verbose_json"];
    assert_eq!(v["class"], "TranscriptionVerbose");
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "english");
    assert_eq!(v["text"], text.as_str());
    assert!(
        (v["duration"].as_f64().unwrap() - duration).abs() < 0.01,
        "{v}"
    );
    let segments = v["segments"].as_array().expect("segments");
    let spans: Vec<_> = segments
        .iter()
        .map(|s| (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap()))
        .collect();
    assert_eq!(spans, srt.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>());
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s["id"], i);
        assert!(!s["tokens"].as_array().unwrap().is_empty(), "{s}");
    }

    let events = got["stream"].as_array().expect("stream events");
    let (done, deltas) = events.split_last().expect("at least one event");
    assert_eq!(done["class"], "TranscriptionTextDoneEvent", "{events:?}");
    assert_eq!(done["type"], "transcript.text.done");
    assert_eq!(done["text"], text.as_str());
    assert!(!deltas.is_empty(), "{events:?}");
    let mut streamed = String::new();
    for d in deltas {
        assert_eq!(d["class"], "TranscriptionTextDeltaEvent", "{events:?}");
        assert_eq!(d["type"], "transcript.text.delta");
        let piece = d["delta"].as_str().unwrap();
        assert!(!piece.is_empty(), "{events:?}");
        streamed.push_str(piece);
    }
    assert_eq!(streamed, text, "the deltas add up to the text");

    for key in ["translation", "translation_verbose"] {
        let t = &got[key];
        let translated = t["text"].as_str().unwrap();
        assert!(!translated.is_empty(), "{t}");
        if real_words() {
            let clip_words = words(&fixture_text("numbers"));
            for w in words(translated) {
                assert!(
                    clip_words.contains(&w),
                    "`{w}` of {translated:?} is not in the clip"
                );
            }
        }
    }
    let tv = &got["translation_verbose"];
    assert_eq!(tv["class"], "TranslationVerbose");
    assert_eq!(tv["task"], "translate");
    assert_eq!(tv["language"], "english");
    assert!(!tv["segments"].as_array().unwrap().is_empty(), "{tv}");

    let health = json(&harkd.get("/healthz", &[]));
    let models = got["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{got}");
    assert_eq!(models[0]["id"], health["model"]);
    assert_eq!(models[0]["object"], "model");
    assert_eq!(got["model"], models[0]);

    let page = harkd.get("/metrics", &[AUTH]).body;
    let count = |endpoint: &str, status: &str| {
        let labels = format!("endpoint=\"{endpoint}\",status=\"{status}\"");
        metric(&page, "harkd_http_requests_total", &labels).unwrap_or(0.0)
    };
    assert_eq!(count("transcriptions", "200"), 6.0, "{page}");
    assert_eq!(count("translations", "200"), 2.0, "{page}");
    assert_eq!(count("models", "200"), 2.0, "{page}");
}

#[test]
fn curl_and_a_raw_multipart_request_agree() {
    let harkd = daemon().start();
    // 44.1 kHz stereo: decoded, mixed down and resampled by the server.
    let path = fixture_path("hello-44k1-stereo");
    let bytes = std::fs::read(&path).unwrap();
    let raw = post_form(
        harkd.addr,
        TRANSCRIPTIONS,
        &[AUTH],
        &[field("model", "whisper-1"), file(&bytes)],
    );
    assert_eq!(raw.status, 200, "{raw:?}");
    let text = json(&raw)["text"].as_str().unwrap().to_owned();
    assert!(!text.is_empty());
    assert_words("hello-44k1-stereo", &text);

    // The token may also come as `?token=`, as on the WebSocket endpoints.
    let by_query = post_form(
        harkd.addr,
        &format!("{TRANSCRIPTIONS}?token={TOKEN}"),
        &[],
        &[field("response_format", "text"), file(&bytes)],
    );
    assert_eq!(by_query.status, 200, "{by_query:?}");
    assert_eq!(by_query.body, format!("{text}\n"));

    // Server-Sent Events over plain HTTP.
    let sse = post_form(
        harkd.addr,
        TRANSCRIPTIONS,
        &[AUTH],
        &[field("stream", "true"), file(&bytes)],
    );
    assert_eq!(sse.status, 200, "{sse:?}");
    assert!(
        sse.headers
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{sse:?}"
    );
    let events: Vec<Value> = sse
        .body
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("{e:?}"));
            serde_json::from_str(data).unwrap()
        })
        .collect();
    assert_eq!(events.last().unwrap()["type"], "transcript.text.done");
    assert_eq!(events.last().unwrap()["text"], text.as_str());

    if which_curl() {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "-H", AUTH])
            .arg("-F")
            .arg(format!("file=@{}", path.display()))
            .args(["-F", "model=whisper-1", "-F", "response_format=json"])
            .arg(format!("http://{}{TRANSCRIPTIONS}", harkd.addr))
            .output()
            .expect("run curl");
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{body}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["text"],
            text.as_str(),
            "curl -F and the raw request agree"
        );
    } else {
        eprintln!("curl is not installed: checked the raw multipart request only");
    }
}

fn which_curl() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_long_recording_is_cut_into_timed_segments() {
    let harkd = daemon().start();
    // Over 30 s: the clips in turn with pauses between; each pause ends a segment.
    let names = ["numbers", "coffee"];
    let mut samples = Vec::new();
    let mut spans = Vec::new();
    while samples.len() < 34 * 16_000 {
        for name in names {
            let clip = Clip::fixture(name);
            assert_eq!((clip.rate, clip.channels), (16_000, 1));
            let start = samples.len() as f64 / 16_000.0;
            samples.extend_from_slice(&clip.samples);
            spans.push((name, start, samples.len() as f64 / 16_000.0));
            samples.extend(std::iter::repeat_n(0.0, 24_000));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("long.wav");
    write_wav_s16(&wav, 16_000, 1, &samples);
    let bytes = std::fs::read(&wav).unwrap();
    let r = post_form(
        harkd.addr,
        TRANSCRIPTIONS,
        &[AUTH],
        &[
            field("response_format", "verbose_json"),
            field("timestamp_granularities[]", "segment"),
            file(&bytes),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = json(&r);
    let duration = samples.len() as f64 / 16_000.0;
    assert!(
        (v["duration"].as_f64().unwrap() - duration).abs() < 0.01,
        "{v}"
    );
    let segments: Vec<(f64, f64, String)> = v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["start"].as_f64().unwrap(),
                s["end"].as_f64().unwrap(),
                s["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let times: Vec<_> = segments.iter().map(|s| (s.0, s.1)).collect();
    assert_well_timed(&times, duration);
    assert!(
        segments.len() >= spans.len(),
        "{} clips but {} segments: {segments:?}",
        spans.len(),
        segments.len()
    );
    // The segments inside each clip's stretch of the file hold that clip's words.
    for (name, start, end) in spans {
        let inside: Vec<&str> = segments
            .iter()
            .filter(|s| s.0 < end && s.1 > start)
            .map(|s| s.2.as_str())
            .collect();
        assert!(
            !inside.is_empty(),
            "no segment for {name} at {start:.2}..{end:.2}: {segments:?}"
        );
        assert_words(name, &inside.join(" "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_and_the_server_stays_healthy() {
    let harkd = daemon()
        .args(["--max-upload-mb", "1", "--max-session-s", "5"])
        .start();
    let addr = harkd.addr;
    // A live session that runs through all of it.
    let mut live = Client::connect_with(
        &harkd.ws_url("/v1/listen"),
        &[("Authorization", "Bearer s3cret-http")],
    )
    .await;
    live.start(&native::start(16_000, 1)).await;

    let clip = std::fs::read(fixture_path("numbers")).unwrap();
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let big = vec![7u8; 1024 * 1024 + 1];
    let form = move |fields: &[Field]| post_form(addr, TRANSCRIPTIONS, &[AUTH], fields);

    let checks = tokio::task::spawn_blocking(move || {
        // Authentication first: nothing is read from a client without the token.
        let r = post_form(addr, TRANSCRIPTIONS, &[], &[file(&clip)]);
        assert_error(&r, 401, "invalid_api_key", None);
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{r:?}"
        );
        let r = post_form(
            addr,
            TRANSCRIPTIONS,
            &["Authorization: Bearer wrong"],
            &[file(&clip)],
        );
        assert_error(&r, 401, "invalid_api_key", None);
        let r = hark_tests::http::get(addr, "/v1/models", &[]).unwrap();
        assert_error(&r, 401, "invalid_api_key", None);

        assert_error(
            &form(&[field("model", "whisper-1")]),
            400,
            "missing_required_parameter",
            Some("file"),
        );
        assert_error(&form(&[file(b"")]), 400, "invalid_value", Some("file"));
        assert_error(&form(&[file(&garbage)]), 400, "invalid_value", Some("file"));
        // A WAV header that promises more audio than follows.
        assert_error(
            &form(&[file(&clip[..clip.len() / 2])]),
            400,
            "invalid_value",
            Some("file"),
        );
        // Longer than limits.max_session_s (5 s here), as a session could not be either.
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("long.wav");
        write_wav_s16(&long, 16_000, 1, &vec![0.0; 6 * 16_000]);
        let long = std::fs::read(&long).unwrap();
        assert_error(&form(&[file(&long)]), 400, "audio_too_long", Some("file"));
        assert_error(
            &form(&[field("response_format", "xml"), file(&clip)]),
            400,
            "invalid_value",
            Some("response_format"),
        );
        assert_error(
            &form(&[field("timestamp_granularities[]", "word"), file(&clip)]),
            400,
            "unsupported_value",
            Some("timestamp_granularities[]"),
        );
        assert_error(
            &form(&[field("language", "klingon"), file(&clip)]),
            400,
            "unsupported_language",
            Some("language"),
        );
        assert_error(
            &form(&[field("temperature", "hot"), file(&clip)]),
            400,
            "invalid_value",
            Some("temperature"),
        );
        // Not multipart at all, and multipart cut off before its closing boundary.
        let r = post(
            addr,
            TRANSCRIPTIONS,
            &[AUTH],
            "application/json",
            b"{\"file\": 1}",
        );
        assert_error(&r, 400, "invalid_content_type", None);
        let whole = multipart_body(&[field("model", "whisper-1"), file(&clip)]);
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let r = post(
            addr,
            TRANSCRIPTIONS,
            &[AUTH],
            &content_type,
            &whole[..whole.len() - 40],
        );
        assert_error(&r, 400, "invalid_multipart", None);
        // Over max_upload_mb: sent whole, or announced and held back behind `Expect`.
        assert_error(&form(&[file(&big)]), 413, "request_too_large", Some("file"));
        let head = format!(
            "POST {TRANSCRIPTIONS} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{AUTH}\r\n\
             Content-Type: {content_type}\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n"
        );
        let r = exchange(addr, head.as_bytes()).unwrap();
        assert_error(&r, 413, "request_too_large", Some("file"));
        let r = hark_tests::http::get(addr, "/v1/models/whisper-1", &[AUTH]).unwrap();
        assert_error(&r, 404, "model_not_found", Some("model"));
    });
    // The live session streams its clip meanwhile.
    let numbers = Clip::fixture("numbers");
    live.send_clip(&numbers, 100, Pace::Realtime(2.0)).await;
    checks.await.expect("the bad requests got their errors");

    let sdk = tokio::task::spawn_blocking({
        let path = fixture_path("numbers");
        let base = format!("http://{addr}/v1");
        move || run_script(SDK_ERRORS_SCRIPT, &[&base, TOKEN, path.to_str().unwrap()])
    })
    .await
    .unwrap()
    .expect("a Python with the pinned openai SDK");
    let stdout = String::from_utf8_lossy(&sdk.stdout);
    assert!(
        sdk.status.success(),
        "{}",
        String::from_utf8_lossy(&sdk.stderr)
    );
    let got: Value = serde_json::from_str(stdout.trim()).unwrap();
    let expect = [
        ("wrong_key", "AuthenticationError", 401, "invalid_api_key"),
        ("word_times", "BadRequestError", 400, "unsupported_value"),
        ("garbage", "BadRequestError", 400, "invalid_value"),
        ("unknown_model", "NotFoundError", 404, "model_not_found"),
    ];
    for (name, class, status, code) in expect {
        let e = &got[name];
        assert_eq!(e["class"], class, "{name}: {e}");
        assert_eq!(e["status"], status, "{name}: {e}");
        assert_eq!(e["body"]["code"], code, "{name}: {e}");
    }

    // Unharmed: the live session's words, /healthz, and a good upload.
    let t = live.close_and_collect().await;
    assert!(t.errors().is_empty(), "{:?}", t.kinds());
    assert_words("numbers", &t.text());
    assert_eq!(harkd.get("/healthz", &[]).status, 200);
    let clip = std::fs::read(fixture_path("numbers")).unwrap();
    let ok = tokio::task::spawn_blocking(move || {
        post_form(addr, TRANSCRIPTIONS, &[AUTH], &[file(&clip)])
    })
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_words("numbers", json(&ok)["text"].as_str().unwrap());

    let page = harkd.get("/metrics", &[AUTH]).body;
    let count = |labels: &str| metric(&page, "harkd_http_requests_total", labels).unwrap_or(0.0);
    assert_eq!(
        count("endpoint=\"transcriptions\",status=\"400\""),
        13.0,
        "{page}"
    );
    assert_eq!(
        count("endpoint=\"transcriptions\",status=\"401\""),
        3.0,
        "{page}"
    );
    assert_eq!(
        count("endpoint=\"transcriptions\",status=\"413\""),
        2.0,
        "{page}"
    );
    assert_eq!(count("endpoint=\"models\",status=\"404\""), 2.0, "{page}");
}
