//! The OpenAI Realtime transcription endpoint, driven by a client written from OpenAI's
//! published event reference (plain JSON in, JSON values out).

use std::collections::HashSet;

use hark_tests::audio::{Clip, resample_linear};
use hark_tests::harkd::Harkd;
use hark_tests::openai::{Client, of_type};
use serde_json::{Value, json};

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Deltas of an item concatenate to a prefix of its transcript (they never retract).
fn check_item(events: &[Value], item: &str) -> String {
    let deltas: String = of_type(events, "conversation.item.input_audio_transcription.delta")
        .iter()
        .filter(|d| d["item_id"] == item)
        .map(|d| {
            assert_eq!(d["content_index"], 0);
            d["delta"].as_str().unwrap().to_owned()
        })
        .collect();
    let completed = of_type(
        events,
        "conversation.item.input_audio_transcription.completed",
    )
    .into_iter()
    .find(|c| c["item_id"] == item)
    .unwrap_or_else(|| panic!("no completed for {item}: {:?}", kinds(events)));
    let transcript = completed["transcript"].as_str().unwrap().to_owned();
    assert!(
        transcript.starts_with(&deltas),
        "deltas {deltas:?} vs {transcript:?}"
    );
    assert_eq!(completed["usage"]["type"], "duration");
    assert!(completed["usage"]["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(completed["content_index"], 0);
    transcript
}

fn check_event_ids(events: &[Value]) {
    let mut seen = HashSet::new();
    for e in events {
        let id = e["event_id"]
            .as_str()
            .expect("every server event has an event_id");
        assert!(seen.insert(id.to_owned()), "duplicate event_id {id}");
    }
}

/// A fixture clip at 24 kHz (OpenAI's rate).
fn at_24k(name: &str) -> Vec<f32> {
    let clip = Clip::fixture(name);
    assert_eq!((clip.rate, clip.channels), (16_000, 1));
    resample_linear(&clip.samples, 16_000, 24_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vad_session() {
    let harkd = Harkd::builder().start();
    let mut c = Client::connect_with(&harkd.ws_url("/v1/realtime?intent=transcription"), &[]).await;
    let created = c.event().await;
    assert_eq!(created["type"], "session.created");
    let session = &created["session"];
    assert_eq!(session["type"], "transcription");
    assert_eq!(session["object"], "realtime.transcription_session");
    assert!(session["id"].as_str().unwrap().starts_with("sess_"));
    assert_eq!(
        session["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert_eq!(
        session["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    assert_eq!(
        session["audio"]["input"]["transcription"]["model"],
        "e2b-shaped"
    );

    // Two utterances with silence around them, at 24 kHz, paced in real time.
    let mut audio = vec![0.0f32; 12_000];
    audio.extend(at_24k("lights"));
    audio.extend(std::iter::repeat_n(0.0, 24_000));
    audio.extend(at_24k("hello"));
    audio.extend(std::iter::repeat_n(0.0, 24_000));
    c.append_paced(&audio, 24_000, 100, true).await;
    let mut events = vec![created.clone()];
    let mut completed = 0;
    while completed < 2 {
        let e = c.event().await;
        if e["type"] == "conversation.item.input_audio_transcription.completed" {
            completed += 1;
        }
        events.push(e);
    }
    check_event_ids(&events);
    let k = kinds(&events);
    let started = of_type(&events, "input_audio_buffer.speech_started");
    let stopped = of_type(&events, "input_audio_buffer.speech_stopped");
    let committed = of_type(&events, "input_audio_buffer.committed");
    assert_eq!(
        (started.len(), stopped.len(), committed.len()),
        (2, 2, 2),
        "{k:?}"
    );
    let first = started[0]["item_id"].as_str().unwrap();
    let second = started[1]["item_id"].as_str().unwrap();
    assert_ne!(first, second);
    let start_ms = started[0]["audio_start_ms"].as_u64().unwrap();
    assert!(
        (100..700).contains(&start_ms),
        "speech began near 500 ms: {start_ms}"
    );
    assert!(stopped[0]["audio_end_ms"].as_u64().unwrap() > start_ms);
    assert_eq!(stopped[0]["item_id"], first);
    assert_eq!(committed[0]["item_id"], first);
    assert_eq!(committed[0]["previous_item_id"], Value::Null);
    assert_eq!(committed[1]["item_id"], second);
    assert_eq!(committed[1]["previous_item_id"], first);
    // Per item: speech_started, deltas…, speech_stopped, committed, [delta], completed.
    for item in [first, second] {
        let of_item: Vec<&str> = events
            .iter()
            .filter(|e| e["item_id"] == item)
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        let pos = |t: &str| of_item.iter().position(|x| *x == t).unwrap();
        assert_eq!(
            of_item[0], "input_audio_buffer.speech_started",
            "{of_item:?}"
        );
        assert!(pos("input_audio_buffer.speech_stopped") < pos("input_audio_buffer.committed"));
        assert_eq!(
            *of_item.last().unwrap(),
            "conversation.item.input_audio_transcription.completed"
        );
        check_item(&events, item);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_commit_clear_and_errors() {
    let harkd = Harkd::builder().start();
    let mut c = Client::connect_with(&harkd.ws_url("/v1/realtime?intent=transcription"), &[]).await;
    assert_eq!(c.event().await["type"], "session.created");
    c.send(json!({"type": "session.update", "event_id": "evt_cfg", "session": {"type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-transcribe", "language": "en"}, "turn_detection": null}}}}))
        .await;
    let updated = c.event().await;
    assert_eq!(updated["type"], "session.updated");
    assert_eq!(
        updated["session"]["audio"]["input"]["turn_detection"],
        Value::Null
    );
    assert_eq!(
        updated["session"]["audio"]["input"]["transcription"]["language"],
        "en"
    );

    // As on OpenAI, no text arrives before the commit.
    c.append_paced(&at_24k("fox"), 24_000, 100, true).await;
    let before_commit = c.recv_timeout(std::time::Duration::from_millis(500)).await;
    assert!(before_commit.is_none(), "{before_commit:?}");
    c.send(json!({"type": "input_audio_buffer.commit", "event_id": "evt_commit"}))
        .await;
    let mut events: Vec<Value> = Vec::new();
    events.extend(
        c.events_until("conversation.item.input_audio_transcription.completed")
            .await,
    );
    let k = kinds(&events);
    assert!(
        k.iter()
            .any(|t| t == "conversation.item.input_audio_transcription.delta"),
        "{k:?}"
    );
    assert!(
        !k.iter()
            .any(|t| t.starts_with("input_audio_buffer.speech_")),
        "no VAD events without turn detection: {k:?}"
    );
    let item = of_type(&events, "input_audio_buffer.committed")[0]["item_id"]
        .as_str()
        .unwrap()
        .to_owned();
    check_item(&events, &item);

    // Nothing appended since: committing is an error, and the session stays open.
    c.send(json!({"type": "input_audio_buffer.commit", "event_id": "evt_empty"}))
        .await;
    let e = c.event().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["code"], "input_audio_buffer_commit_empty");
    assert_eq!(e["error"]["event_id"], "evt_empty");

    // clear drops uncommitted audio.
    c.append(&at_24k("hello")).await;
    c.send(json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(c.event().await["type"], "input_audio_buffer.cleared");
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    assert_eq!(
        c.event().await["error"]["code"],
        "input_audio_buffer_commit_empty"
    );

    // Client mistakes are reported as OpenAI does, and the session goes on.
    for (event, code, param) in [
        (
            json!({"type": "input_audio_buffer.append", "event_id": "e1", "audio": "AA@A"}),
            "invalid_value",
            Some("audio"),
        ),
        (
            json!({"type": "input_audio_buffer.append", "audio": "AAAA"}),
            "invalid_value",
            Some("audio"),
        ),
        (
            json!({"type": "response.create", "event_id": "e2"}),
            "invalid_value",
            Some("type"),
        ),
        (
            json!({"type": "input_audio_buffer.append"}),
            "invalid_event",
            None,
        ),
        (
            json!({"type": "session.update", "session": {"type": "realtime"}}),
            "invalid_value",
            Some("session.type"),
        ),
        (
            json!({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 7000}}}}}),
            "invalid_value",
            Some("session.audio.input.format.rate"),
        ),
        (
            json!({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/opus"}}}}}),
            "invalid_value",
            Some("session.audio.input.format.type"),
        ),
        (
            json!({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2.0}}}}}),
            "invalid_value",
            Some("session.audio.input.turn_detection.threshold"),
        ),
        (
            json!({"type": "session.update", "session": {"audio": {"input": {"transcription": {"language": "xx"}}}}}),
            "invalid_value",
            Some("session.audio.input.transcription.language"),
        ),
    ] {
        c.send(event.clone()).await;
        let e = c.event().await;
        assert_eq!(e["type"], "error", "{event}");
        assert_eq!(e["error"]["code"], code, "{event}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        if let Some(p) = param {
            assert_eq!(e["error"]["param"], p, "{event}");
        }
        if let Some(id) = event.get("event_id") {
            assert_eq!(&e["error"]["event_id"], id);
        }
    }
    c.send_raw_text("{not json").await;
    let e = c.event().await;
    assert_eq!(e["error"]["code"], "invalid_json", "{e}");
    // A rejected update changed nothing; semantic VAD is accepted.
    c.send(json!({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}}))
        .await;
    let updated = c.event().await;
    assert_eq!(
        updated["session"]["audio"]["input"]["format"]["rate"],
        24000
    );
    assert_eq!(
        updated["session"]["audio"]["input"]["turn_detection"]["type"],
        "semantic_vad"
    );

    // Binary frames are not part of this API: an error event, and the session goes on.
    c.send_binary(vec![0; 64]).await;
    let e = c.event().await;
    assert_eq!(e["error"]["code"], "invalid_event", "{e}");
    c.send(json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(c.event().await["type"], "input_audio_buffer.cleared");
}

/// A quiet session that answers pings stays open past the idle timeout (a push-to-talk app
/// between turns); a connection that answers nothing is closed after two idle periods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_sessions_are_kept_dead_ones_closed() {
    let harkd = Harkd::builder().args(["--idle-timeout-s", "1"]).start();
    let url = harkd.ws_url("/v1/realtime?intent=transcription");
    let mut quiet = Client::connect_with(&url, &[]).await;
    assert_eq!(quiet.event().await["type"], "session.created");
    // Reading answers the server's pings (tungstenite replies with pongs).
    let nothing = quiet.recv_timeout(std::time::Duration::from_secs(4)).await;
    assert!(nothing.is_none(), "{nothing:?}");
    quiet
        .send(json!({"type": "input_audio_buffer.clear"}))
        .await;
    assert_eq!(quiet.event().await["type"], "input_audio_buffer.cleared");

    // This one never reads, so it never answers a ping.
    let mut dead = Client::connect_with(&url, &[]).await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (events, code) = dead.until_close().await;
    assert_eq!(events[0]["type"], "session.created");
    let last = events.last().unwrap();
    assert_eq!(last["error"]["code"], "idle_timeout", "{last}");
    assert_eq!(code, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beta_interface_and_other_rates() {
    let harkd = Harkd::builder().start();
    let url = harkd.ws_url("/v1/realtime?intent=transcription");
    let mut c = Client::connect_with(&url, &[("OpenAI-Beta", "realtime=v1")]).await;
    let created = c.event().await;
    assert_eq!(created["type"], "transcription_session.created");
    assert_eq!(created["session"]["input_audio_format"], "pcm16");
    c.send(
        json!({"type": "transcription_session.update", "session": {"input_audio_format": "pcm16",
        "input_audio_transcription": {"model": "whisper-1", "language": "fr", "prompt": ""},
        "turn_detection": null, "input_audio_noise_reduction": null}}),
    )
    .await;
    let updated = c.event().await;
    assert_eq!(updated["type"], "transcription_session.updated");
    assert_eq!(
        updated["session"]["input_audio_transcription"]["language"],
        "fr"
    );
    assert_eq!(updated["session"]["turn_detection"], Value::Null);
    c.append(&at_24k("lights")).await;
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    let events = c
        .events_until("conversation.item.input_audio_transcription.completed")
        .await;
    let item = of_type(&events, "input_audio_buffer.committed")[0]["item_id"]
        .as_str()
        .unwrap()
        .to_owned();
    check_item(&events, &item);

    // A GA session at 16 kHz, switched mid-session from 24 kHz.
    let mut c = Client::connect_with(&url, &[]).await;
    assert_eq!(c.event().await["type"], "session.created");
    c.send(
        json!({"type": "session.update", "session": {"type": "transcription",
        "audio": {"input": {"turn_detection": null}}}}),
    )
    .await;
    c.event().await;
    c.append(&at_24k("hello")).await;
    c.send(
        json!({"type": "session.update", "session": {"type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}}),
    )
    .await;
    // The stream of the old format finishes: its item completes.
    let events = c
        .events_until("conversation.item.input_audio_transcription.completed")
        .await;
    assert!(kinds(&events).contains(&"session.updated".to_owned()));
    c.append(&Clip::fixture("lights").samples).await;
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    let events2 = c
        .events_until("conversation.item.input_audio_transcription.completed")
        .await;
    let first = of_type(&events, "input_audio_buffer.committed")[0]["item_id"].clone();
    let second = &of_type(&events2, "input_audio_buffer.committed")[0];
    assert_eq!(second["previous_item_id"], first);
}

/// A realtime connection takes a session slot only with its first audio: sockets that connect
/// and never append hold none, and are closed after `start_timeout_s`; the first append on a
/// full server is answered `server_busy` and closed with 1013.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_append_hold_no_slot_and_are_closed() {
    use hark_tests::native::{self, Pace};
    use std::time::{Duration, Instant};

    let harkd = Harkd::builder()
        .args(["--max-sessions", "2", "--start-timeout-s", "3"])
        .start();
    let url = harkd.ws_url("/v1/realtime?intent=transcription");
    let began = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut c = Client::connect_with(&url, &[]).await;
        assert_eq!(c.event().await["type"], "session.created");
        // Configuring takes no slot either.
        c.send(
            json!({"type": "session.update", "session": {"type": "transcription",
            "audio": {"input": {"transcription": {"language": "en"}}}}}),
        )
        .await;
        assert_eq!(c.event().await["type"], "session.updated");
        idle.push(c);
    }
    let health = harkd.get("/healthz", &[]).body;
    assert!(health.contains("\"sessions\":0"), "{health}");

    // A native client is still served while the 64 are connected.
    let native_url = harkd.ws_url("/v1/listen");
    let clip = Clip::fixture("fox");
    let mut start = native::start(clip.rate, clip.channels);
    start.endpointing_ms = Some(0);
    start.partials = false;
    let mut legit = native::Client::connect(&native_url).await;
    legit.start(&start).await;
    let health = harkd.get("/healthz", &[]).body;
    assert!(health.contains("\"sessions\":1"), "{health}");
    legit.send_clip(&clip, 100, Pace::Fast).await;
    let t = legit.close_and_collect().await;
    assert!(t.errors().iter().all(|e| !e.fatal), "{:?}", t.errors());
    assert!(!t.finals().is_empty(), "{:?}", t.messages);

    // Admitted at connect while there was room; refused at its first append once two
    // native sessions hold both slots.
    let freed = Instant::now() + Duration::from_secs(5);
    while !harkd.get("/healthz", &[]).body.contains("\"sessions\":0") {
        assert!(Instant::now() < freed, "the native session kept its slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut late = Client::connect_with(&url, &[]).await;
    assert_eq!(late.event().await["type"], "session.created");
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut h = native::Client::connect(&native_url).await;
        h.start(&start).await;
        holders.push(h);
    }
    late.append(&at_24k("fox")[..2_400]).await;
    let (events, code) = late.until_close().await;
    let errors = of_type(&events, "error");
    assert_eq!(errors.len(), 1, "{events:?}");
    assert_eq!(errors[0]["error"]["code"], "server_busy");
    assert_eq!(code, Some(1013));
    for mut h in holders {
        assert_eq!(h.close_and_collect().await.kinds(), ["closed"]);
    }

    // The 64 are closed at the deadline with a coded error (keepalive-free, configured or
    // not), not kept to the idle timeout.
    for c in &mut idle {
        let (events, code) = c.until_close().await;
        let errors = of_type(&events, "error");
        assert_eq!(errors.len(), 1, "{events:?}");
        assert_eq!(errors[0]["error"]["code"], "idle_timeout");
        let message = errors[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains("input_audio_buffer.append"), "{message}");
        assert!(code.is_some(), "no close frame");
    }
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "closing the idle sockets took {took:?}"
    );
}
