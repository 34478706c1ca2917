//! The official `openai` Python SDK (pinned in tools/test-requirements.txt) as a Realtime
//! transcription client of harkd, GA and beta: every event harkd sends must pass the SDK's
//! strict pydantic models (daemon_openai_sdk.py), come in OpenAI's order, and carry the
//! clip's words.

use hark_tests::audio::{Clip, fixture_text, resample_linear, words};
use hark_tests::harkd::{Builder, Harkd};
use hark_tests::openai::ulaw_encode;
use hark_tests::python::run_script;
use serde_json::Value;

const TOKEN: &str = "s3cret-realtime";
const SCRIPT: &str = include_str!("daemon_openai_sdk.py");
const COMPLETED: &str = "conversation.item.input_audio_transcription.completed";
const DELTA: &str = "conversation.item.input_audio_transcription.delta";

/// harkd with the trained demonstration model (real words).
fn daemon() -> Builder {
    assert!(
        hark_tests::demo_model_present(),
        "model/demo-model is missing: these tests check the transcribed words"
    );
    Harkd::builder()
        .embedded_model()
        .max_new_tokens(64)
        .args(["--token", TOKEN])
}

/// Runs one scenario of the SDK script with `audio` (raw bytes as appended) and returns
/// the events harkd sent, in order.
fn run_sdk(harkd: &Harkd, scenario: &str, audio: &[u8]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audio.raw");
    std::fs::write(&path, audio).unwrap();
    let base = format!("http://{}/v1", harkd.addr);
    let out = run_script(SCRIPT, &[&base, TOKEN, scenario, path.to_str().unwrap()])
        .expect("a Python with the pinned openai SDK");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK script ({scenario}) failed:\n{}\n{stdout}\nharkd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        harkd.log()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// PCM16 little-endian bytes of a fixture clip at 24 kHz with silence around it.
fn pcm24(name: &str, lead_s: f64, tail_s: f64) -> Vec<u8> {
    let clip = Clip::fixture(name);
    assert_eq!((clip.rate, clip.channels), (16_000, 1));
    let mut samples = vec![0.0f32; (24_000.0 * lead_s) as usize];
    samples.extend(resample_linear(&clip.samples, 16_000, 24_000));
    samples.extend(std::iter::repeat_n(0.0, (24_000.0 * tail_s) as usize));
    hark_protocol::encode_pcm(hark_protocol::Encoding::S16le, &samples)
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// Every word of clip `name` is in `text`.
fn assert_words(name: &str, text: &str) {
    let got = words(text);
    for word in words(&fixture_text(name)) {
        assert!(got.contains(&word), "`{word}` missing from {text:?}");
    }
}

/// The one item of `events`: its events come in OpenAI's order (speech events, committed,
/// the item events, deltas, completed), its deltas spell its transcript, and that transcript
/// is returned.
fn check_item(events: &[Value], item_events: &[&str], speech: bool) -> (String, Value) {
    let completed = events
        .iter()
        .find(|e| e["type"] == COMPLETED)
        .expect("a completed transcription")
        .clone();
    let item = completed["item_id"].as_str().unwrap();
    assert!(item.starts_with("item_") && item.len() > 20, "{item}");
    let of_item: Vec<&Value> = events
        .iter()
        .filter(|e| e["item_id"] == item || e["item"]["id"] == item)
        .collect();
    let mut expected: Vec<&str> = Vec::new();
    if speech {
        expected.extend([
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
        ]);
    }
    expected.push("input_audio_buffer.committed");
    expected.extend(item_events);
    let deltas = of_item.iter().filter(|e| e["type"] == DELTA).count();
    assert!(deltas >= 1, "{:?}", kinds(events));
    expected.extend(std::iter::repeat_n(DELTA, deltas));
    expected.push(COMPLETED);
    let got: Vec<&str> = of_item
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(got, expected, "event order of {item}");
    let text: String = of_item
        .iter()
        .filter(|e| e["type"] == DELTA)
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let transcript = completed["transcript"].as_str().unwrap().to_owned();
    assert_eq!(text, transcript, "deltas spell the transcript");
    for e in &of_item {
        if e["type"]
            .as_str()
            .unwrap()
            .starts_with("conversation.item.")
            && e["item"].is_object()
        {
            assert_eq!(e["item"]["role"], "user");
            assert_eq!(e["item"]["content"][0]["type"], "input_audio");
            assert_eq!(e["previous_item_id"], Value::Null);
        }
    }
    (transcript, completed)
}

/// `logprobs` of the item's delta and `completed` (asked by `include`): one entry per token,
/// each a log probability (≤ 0) with its token's UTF-8 bytes, the tokens spelling the
/// transcript (a leading space aside).
fn check_logprobs(events: &[Value], completed: &Value) {
    let transcript = completed["transcript"].as_str().unwrap();
    let item = &completed["item_id"];
    let delta = events
        .iter()
        .find(|e| e["type"] == DELTA && &e["item_id"] == item)
        .unwrap();
    for event in [delta, completed] {
        let logprobs = event["logprobs"]
            .as_array()
            .unwrap_or_else(|| panic!("no logprobs in {event}"));
        assert!(!logprobs.is_empty(), "{event}");
        let mut spelled = String::new();
        for lp in logprobs {
            let token = lp["token"].as_str().unwrap();
            let logprob = lp["logprob"].as_f64().unwrap();
            assert!(logprob <= 0.0 && logprob.is_finite(), "{lp}");
            let bytes: Vec<u8> = lp["bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
                .collect();
            assert_eq!(bytes, token.as_bytes(), "{lp}");
            spelled.push_str(token);
        }
        assert_eq!(spelled.trim_start(), transcript, "{logprobs:?}");
    }
    assert_eq!(delta["logprobs"], completed["logprobs"]);
}

/// Event ids are unique and random-looking, not per-session counters.
fn check_ids(events: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    for e in events {
        let id = e["event_id"].as_str().unwrap();
        assert!(id.starts_with("event_") && id.len() >= 20, "{id}");
        assert!(seen.insert(id), "duplicate {id}");
    }
}

#[test]
fn the_sdk_transcribes_over_ga_realtime_with_server_vad() {
    let harkd = daemon().start();
    let events = run_sdk(&harkd, "ga", &pcm24("numbers", 0.5, 1.5));
    check_ids(&events);
    let created = &events[0];
    assert_eq!(created["type"], "session.created");
    let session = &created["session"];
    assert!(session["id"].as_str().unwrap().starts_with("sess_"));
    assert!(session["expires_at"].as_u64().unwrap() > 1_700_000_000);
    let updated = events
        .iter()
        .find(|e| e["type"] == "session.updated")
        .unwrap();
    assert_eq!(
        updated["session"]["audio"]["input"]["transcription"]["model"],
        "gpt-4o-transcribe"
    );
    assert_eq!(
        updated["session"]["include"][0],
        "item.input_audio_transcription.logprobs"
    );
    assert_eq!(updated["session"]["id"], session["id"]);

    let (transcript, completed) = check_item(
        &events,
        &["conversation.item.added", "conversation.item.done"],
        true,
    );
    assert_words("numbers", &transcript);
    check_logprobs(&events, &completed);

    // The binary frame and the empty commit got OpenAI-shaped errors; the session went on.
    let errors: Vec<&Value> = events.iter().filter(|e| e["type"] == "error").collect();
    assert_eq!(errors.len(), 2, "{:?}", kinds(&events));
    assert_eq!(errors[0]["error"]["type"], "invalid_request_error");
    assert_eq!(errors[0]["error"]["code"], "invalid_event");
    assert_eq!(
        errors[1]["error"]["code"],
        "input_audio_buffer_commit_empty"
    );
    assert_eq!(errors[1]["error"]["event_id"], "evt_empty_commit");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "session.updated");
    assert_eq!(last["session"]["include"], Value::Null);
    assert_eq!(
        last["session"]["audio"]["input"]["transcription"]["model"],
        "gpt-4o-transcribe"
    );
}

#[test]
fn the_sdk_transcribes_over_beta_realtime_with_manual_commit() {
    let harkd = daemon().start();
    let events = run_sdk(&harkd, "beta", &pcm24("numbers", 0.2, 0.3));
    check_ids(&events);
    assert_eq!(events[0]["type"], "transcription_session.created");
    assert_eq!(events[0]["session"]["input_audio_format"], "pcm16");
    let updated = events
        .iter()
        .find(|e| e["type"] == "transcription_session.updated")
        .unwrap();
    assert_eq!(updated["session"]["turn_detection"], Value::Null);
    assert_eq!(
        updated["session"]["input_audio_transcription"]["model"],
        "gpt-4o-transcribe"
    );
    let (transcript, completed) = check_item(&events, &["conversation.item.created"], false);
    assert_words("numbers", &transcript);
    check_logprobs(&events, &completed);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "binary frame: {:?}", kinds(&events));
    assert_eq!(last["error"]["code"], "invalid_event");
}

#[test]
fn the_sdk_sends_g711_mu_law_at_8_khz() {
    let harkd = daemon().start();
    let clip = Clip::fixture("numbers");
    let mut samples = vec![0.0f32; 1_600];
    samples.extend(resample_linear(&clip.samples, 16_000, 8_000));
    samples.extend(std::iter::repeat_n(0.0, 2_400));
    let events = run_sdk(&harkd, "pcmu", &ulaw_encode(&samples));
    check_ids(&events);
    let updated = events
        .iter()
        .find(|e| e["type"] == "session.updated")
        .unwrap();
    assert_eq!(
        updated["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    let (transcript, completed) = check_item(
        &events,
        &["conversation.item.added", "conversation.item.done"],
        false,
    );
    assert_words("numbers", &transcript);
    // Without `include`, no logprobs.
    assert!(completed.get("logprobs").is_none(), "{completed}");
    let delta = events.iter().find(|e| e["type"] == DELTA).unwrap();
    assert!(delta.get("logprobs").is_none(), "{delta}");
}
