//! Streaming audio through the real harkd over real WebSockets: finals equal offline
//! transcription, partials arrive while audio is still streaming, voice activity, flush,
//! eight sessions at once.

use std::collections::HashMap;

use hark_protocol::{CloseReason, Encoding, ServerMessage, encode_pcm};
use hark_tests::audio::Clip;
use hark_tests::harkd::{Builder, Harkd};
use hark_tests::native::{self, Client, Pace, order_violations};

/// The offline transcript of `clip` with the daemon's model and token budget.
fn offline(builder: &Builder, clip: &Clip) -> String {
    hark_tests::offline::transcribe(builder.model(), &clip.path, builder.token_budget())
}

/// `start` for a clip with silence endpointing off (one segment, as offline) and no partials.
fn whole_file_start(clip: &Clip) -> hark_protocol::Start {
    let mut start = native::start(clip.rate, clip.channels);
    start.endpointing_ms = Some(0);
    start.partials = false;
    start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finals_equal_offline_at_every_rate_and_encoding() {
    let builder = Harkd::builder();
    let harkd = builder.clone().start();
    for name in ["fox", "april", "hello-44k1-stereo", "hello-8k"] {
        let clip = Clip::fixture(name);
        let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
        let ready = c.start(&whole_file_start(&clip)).await;
        assert!(ready.session_id.starts_with("s-"));
        assert_eq!(ready.endpointing_ms, 0);
        assert_eq!(ready.model, "e2b-shaped");
        c.send_clip(&clip, 100, Pace::Fast).await;
        let t = c.close_and_collect().await;
        assert!(
            order_violations(&t).is_empty(),
            "{:?}",
            order_violations(&t)
        );
        assert_eq!(t.finals().len(), 1, "{name}: {:?}", t.kinds());
        assert_eq!(t.text(), offline(&builder, &clip), "{name}");
        let closed = t.closed().unwrap();
        assert_eq!(closed.reason, CloseReason::ClientClose);
        assert_eq!(closed.acked_samples, clip.frames() as u64, "{name}");
        assert_eq!(closed.segments, 1);
        assert_eq!(t.close_code, Some(1000));
    }

    // The same audio as f32le in odd-sized frames gives the same text.
    let clip = Clip::fixture("callback");
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    let mut start = whole_file_start(&clip);
    start.encoding = Encoding::F32le;
    c.start(&start).await;
    let bytes = encode_pcm(Encoding::F32le, &clip.samples);
    c.send_audio(&bytes, 4 * 777, 64_000.0, Pace::Fast).await;
    let t = c.close_and_collect().await;
    assert_eq!(t.text(), offline(&builder, &clip));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_stream_gets_partials_before_its_final() {
    let harkd = Harkd::builder().start();
    let clip = Clip::fixture("fox");
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    let mut start = native::start(clip.rate, clip.channels);
    start.endpointing_ms = Some(0);
    start.label = Some("realtime-test".into());
    c.start(&start).await;
    c.send_clip(&clip, 40, Pace::Realtime(1.0)).await;
    let close_sent = std::time::Instant::now();
    let t = c.close_and_collect().await;
    assert!(
        order_violations(&t).is_empty(),
        "{:?}",
        order_violations(&t)
    );
    let partials = t.partials();
    assert!(partials.len() >= 3, "{:?}", t.kinds());
    // Partials arrived while audio was still being sent, the final only after `close`.
    let early = t
        .messages
        .iter()
        .filter(|(at, m)| matches!(m, ServerMessage::Partial(_)) && *at < close_sent)
        .count();
    assert!(
        early >= 2,
        "only {early} partials before the end of the audio"
    );
    let (final_at, _) = t
        .messages
        .iter()
        .find(|(_, m)| matches!(m, ServerMessage::Final(_)))
        .expect("a final");
    assert!(*final_at >= close_sent);
    // Partial timing fields: the hypothesis end and the acknowledgement only grow.
    for pair in partials.windows(2) {
        assert!(pair[1].end >= pair[0].end);
        assert!(pair[1].acked_samples >= pair[0].acked_samples);
    }
    for p in &partials {
        assert!(p.lag_s >= 0.0 && p.emit_latency_s >= 0.0, "{p:?}");
        assert!(p.end <= clip.seconds() + 0.05);
    }
    let last = partials.last().unwrap();
    let fin = t.finals()[0];
    assert!(fin.text.starts_with(&last.committed));
    assert_eq!(fin.segment_id, 0);
    assert_eq!(fin.acked_samples, clip.frames() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_activity_opens_and_closes_segments() {
    let harkd = Harkd::builder().start();
    let fox = Clip::fixture("fox");
    let lights = Clip::fixture("lights");
    // 1 s of silence, speech, 1.5 s of silence, speech, 1 s of silence.
    let mut audio = vec![0.0f32; 16_000];
    audio.extend(&fox.samples);
    audio.extend(std::iter::repeat_n(0.0, 24_000));
    audio.extend(&lights.samples);
    audio.extend(std::iter::repeat_n(0.0, 16_000));
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    let start = native::start(16_000, 1);
    let ready = c.start(&start).await;
    assert_eq!(ready.endpointing_ms, 500);
    c.send_audio(
        &encode_pcm(Encoding::S16le, &audio),
        3_200,
        32_000.0,
        Pace::Fast,
    )
    .await;
    let t = c.close_and_collect().await;
    assert!(
        order_violations(&t).is_empty(),
        "{:?}",
        order_violations(&t)
    );
    let kinds = t.kinds();
    let started = kinds.iter().filter(|k| **k == "speech_started").count();
    let stopped = kinds.iter().filter(|k| **k == "speech_stopped").count();
    assert!(started >= 2, "{kinds:?}");
    assert_eq!(started, t.finals().len(), "{kinds:?}");
    assert_eq!(started, stopped, "{kinds:?}");
    // Each segment: speech_started, (partials), final, speech_stopped.
    let mut open = false;
    for k in &kinds {
        match *k {
            "speech_started" => {
                assert!(!open, "{kinds:?}");
                open = true;
            }
            "partial" => assert!(open, "{kinds:?}"),
            "final" => assert!(open, "{kinds:?}"),
            "speech_stopped" => {
                assert!(open, "{kinds:?}");
                open = false;
            }
            _ => {}
        }
    }
    let first = t
        .messages
        .iter()
        .find_map(|(_, m)| match m {
            ServerMessage::SpeechStarted(s) => Some(s.at),
            _ => None,
        })
        .unwrap();
    assert!(
        (0.5..1.2).contains(&first),
        "speech began near 1 s, got {first}"
    );
    for f in t.finals() {
        assert!(f.end > f.start, "{f:?}");
    }

    // Silence and steady noise produce no segment and no text at all.
    for name in ["silence", "noise"] {
        let clip = Clip::fixture(name);
        let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
        c.start(&native::start(clip.rate, clip.channels)).await;
        c.send_clip(&clip, 100, Pace::Fast).await;
        let t = c.close_and_collect().await;
        // `ready` was consumed by `start`.
        assert_eq!(t.kinds(), ["closed"], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_finalizes_the_segment_and_is_acknowledged() {
    let builder = Harkd::builder();
    let harkd = builder.clone().start();
    let hello = Clip::fixture("hello");
    let lights = Clip::fixture("lights");
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    c.start(&whole_file_start(&hello)).await;
    c.send_clip(&hello, 100, Pace::Fast).await;
    c.send_json(&serde_json::json!({"type": "flush", "id": "ptt-1"}))
        .await;
    c.send_clip(&lights, 100, Pace::Fast).await;
    c.send_json(&serde_json::json!({"type": "flush"})).await;
    // A flush with nothing open is still acknowledged.
    c.send_json(&serde_json::json!({"type": "flush", "id": "empty"}))
        .await;
    let t = c.close_and_collect().await;
    assert!(
        order_violations(&t).is_empty(),
        "{:?}",
        order_violations(&t)
    );
    assert_eq!(
        t.kinds(),
        ["final", "flushed", "final", "flushed", "flushed", "closed"]
    );
    let flushed: Vec<_> = t
        .messages
        .iter()
        .filter_map(|(_, m)| match m {
            ServerMessage::Flushed(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    let n1 = hello.frames() as u64;
    let n2 = n1 + lights.frames() as u64;
    assert_eq!(flushed[0].id.as_deref(), Some("ptt-1"));
    assert_eq!(flushed[0].acked_samples, n1);
    assert_eq!(flushed[1].id, None);
    assert_eq!(flushed[1].acked_samples, n2);
    assert_eq!(flushed[2].id.as_deref(), Some("empty"));
    // Each flushed segment is transcribed exactly as its clip alone.
    let finals = t.finals();
    assert_eq!(finals[0].text, offline(&builder, &hello));
    assert_eq!(finals[1].text, offline(&builder, &lights));
    assert!((finals[1].start - n1 as f64 / 16_000.0).abs() < 1e-3);
    assert_eq!(t.closed().unwrap().segments, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_sessions_each_get_their_own_transcript() {
    let builder = Harkd::builder();
    let harkd = builder.clone().start();
    let names = [
        "fox", "callback", "lights", "hello", "april", "hello-8k", "fox", "lights",
    ];
    let mut expected = HashMap::new();
    for name in names {
        expected
            .entry(name)
            .or_insert_with(|| offline(&builder, &Clip::fixture(name)));
    }
    let url = harkd.ws_url("/v1/listen");
    let sessions = names.map(|name| {
        let url = url.clone();
        tokio::spawn(async move {
            let clip = Clip::fixture(name);
            let mut c = Client::connect(&url).await;
            let ready = c.start(&whole_file_start(&clip)).await;
            c.send_clip(&clip, 50, Pace::Realtime(2.0)).await;
            (name, ready, c.close_and_collect().await)
        })
    });
    let mut ids = Vec::new();
    for s in sessions {
        let (name, ready, t) = s.await.unwrap();
        assert!(
            order_violations(&t).is_empty(),
            "{name}: {:?}",
            order_violations(&t)
        );
        assert_eq!(t.text(), expected[name], "{name}");
        ids.push(ready.session_id.clone());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "session ids are unique");

    let page = harkd.get("/metrics", &[]).body;
    let metric = |name, labels| hark_tests::http::metric(&page, name, labels).unwrap_or(0.0);
    assert!(metric("harkd_sessions_total", "native") >= 8.0, "{page}");
    assert!(metric("harkd_finals_total", "") >= 8.0);
    assert!(metric("harkd_time_to_final_seconds_count", "") >= 8.0);
    assert!(metric("harkd_audio_seconds_total", "native") >= 15.0);
    // Every second the sessions received went through a worker (the session counter counts
    // whole seconds, so each session may leave up to one uncounted).
    let received = metric("harkd_audio_seconds_total", "native");
    let processed = metric("harkd_worker_audio_milliseconds_total", "") / 1000.0;
    assert!(
        processed >= received && processed <= received + 8.0,
        "workers processed {processed} s of {received} s"
    );
    assert!(metric("harkd_worker_busy_milliseconds_total", "") > 0.0);
    assert_eq!(metric("harkd_sessions_active", "native"), 0.0);
}
