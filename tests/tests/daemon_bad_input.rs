//! Every kind of bad input gets a clear `error` (with its documented code, fatality and close
//! code) or a clean close, never a crash, and never disturbs another session.

use std::time::{Duration, Instant};

use hark_protocol::{CloseReason, Encoding, ErrorCode, ServerMessage, encode_pcm};
use hark_tests::audio::Clip;
use hark_tests::harkd::{Builder, Harkd};
use hark_tests::native::{self, Client, Pace, Received, Transcript};
use serde_json::json;

fn small_limits() -> Builder {
    Harkd::builder().args([
        "--max-frame-bytes",
        "4096",
        "--idle-timeout-s",
        "2",
        "--resume-window-s",
        "0",
    ])
}

/// The session ended with a fatal `code`: `error` (fatal) then `closed`, then this close code.
fn assert_fatal(t: &Transcript, code: ErrorCode, close: u16) {
    let errors = t.errors();
    let last = errors
        .last()
        .unwrap_or_else(|| panic!("no error: {:?}", t.kinds()));
    assert_eq!(last.code, code, "{:?}", t.messages);
    assert!(last.fatal, "{last:?}");
    assert!(!last.message.is_empty());
    let closed = t
        .closed()
        .unwrap_or_else(|| panic!("no closed: {:?}", t.kinds()));
    assert_eq!(closed.reason, CloseReason::Error(code));
    assert_eq!(t.kinds().last(), Some(&"closed"));
    assert_eq!(t.close_code, Some(close), "{:?}", t.kinds());
}

/// The next message is a non-fatal error with `code`.
async fn expect_warning(c: &mut Client, code: ErrorCode) {
    match c.recv().await {
        Received::Msg(ServerMessage::Error(e)) => {
            assert_eq!(e.code, code, "{e:?}");
            assert!(!e.fatal, "{e:?}");
        }
        other => panic!("expected a {code} warning, got {other:?}"),
    }
}

async fn started(harkd: &Harkd) -> Client {
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    c.start(&native::start(16_000, 1)).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unexpected_text() {
    let harkd = small_limits().start();
    let url = harkd.ws_url("/v1/listen");

    // Before `start`: malformed JSON and schema errors end the session.
    for (text, code) in [
        (
            r#"{"type":"start","sample_rate":16000,"#,
            ErrorCode::BadJson,
        ),
        ("start", ErrorCode::BadJson),
        (r#"["start"]"#, ErrorCode::BadMessage),
        (
            r#"{"type":"start","encoding":"s16le"}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"start","sample_rate":7000,"encoding":"s16le"}"#,
            ErrorCode::UnsupportedSampleRate,
        ),
        (
            r#"{"type":"start","sample_rate":16000,"encoding":"mulaw"}"#,
            ErrorCode::UnsupportedEncoding,
        ),
        (
            r#"{"type":"start","sample_rate":16000,"encoding":"s16le","channels":6}"#,
            ErrorCode::UnsupportedChannels,
        ),
        (
            r#"{"type":"start","v":2,"sample_rate":16000,"encoding":"s16le"}"#,
            ErrorCode::UnsupportedVersion,
        ),
        (
            r#"{"type":"start","sample_rate":16000,"encoding":"s16le","language":"xx"}"#,
            ErrorCode::InvalidField,
        ),
        (
            r#"{"type":"start","sample_rate":16000,"encoding":"s16le","endpointing_ms":50}"#,
            ErrorCode::InvalidField,
        ),
    ] {
        let mut c = Client::connect(&url).await;
        c.send_text(text).await;
        let t = c.collect_until_close().await;
        assert_eq!(t.kinds(), ["error", "closed"], "{text}");
        assert_fatal(&t, code, 1008);
    }
    let mut c = Client::connect(&url).await;
    c.send_text(r#"{"type":"start","sample_rate":0,"encoding":"s16le"}"#)
        .await;
    let t = c.collect_until_close().await;
    assert_eq!(t.errors()[0].field.as_deref(), Some("sample_rate"));

    // Unknown types are reported and ignored in every phase; `flush` before `start` too.
    let mut c = Client::connect(&url).await;
    c.send_text(r#"{"type":"pause"}"#).await;
    expect_warning(&mut c, ErrorCode::UnknownType).await;
    c.send_text(r#"{"type":"flush"}"#).await;
    expect_warning(&mut c, ErrorCode::UnexpectedMessage).await;
    c.send_text(r#"{"type":"keepalive"}"#).await;
    c.start(&native::start(16_000, 1)).await;
    // After `start`: malformed control messages are reported, the session goes on.
    c.send_text("not json").await;
    expect_warning(&mut c, ErrorCode::BadJson).await;
    c.send_text(r#"{"type":"flush","id":42}"#).await;
    expect_warning(&mut c, ErrorCode::BadMessage).await;
    c.send_text(r#"{"type":"start","sample_rate":16000,"encoding":"s16le"}"#)
        .await;
    expect_warning(&mut c, ErrorCode::UnexpectedMessage).await;
    c.send_text(r#"{"type":"pause"}"#).await;
    expect_warning(&mut c, ErrorCode::UnknownType).await;
    // Audio sent as text is not JSON.
    c.send_text("AAAAQAAAwP8=").await;
    expect_warning(&mut c, ErrorCode::BadJson).await;
    let t = c.close_and_collect().await;
    assert_eq!(t.kinds(), ["closed"]);
    assert_eq!(t.close_code, Some(1000));

    // `close` before `start` is a clean close.
    let mut c = Client::connect(&url).await;
    let t = c.close_and_collect().await;
    assert_eq!(t.kinds(), ["closed"]);
    assert_eq!(t.closed().unwrap().reason, CloseReason::ClientClose);

    // A text frame above 16 KiB.
    let mut c = started(&harkd).await;
    let big = format!(
        r#"{{"type":"keepalive","pad":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    c.send_text(&big).await;
    assert_fatal(
        &c.collect_until_close().await,
        ErrorCode::MessageTooLarge,
        1009,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_audio() {
    let harkd = small_limits().start();
    let url = harkd.ws_url("/v1/listen");

    // Audio before `start`.
    let mut c = Client::connect(&url).await;
    c.send_binary(vec![0; 320]).await;
    assert_fatal(
        &c.collect_until_close().await,
        ErrorCode::AudioBeforeStart,
        1008,
    );

    // A frame that is not a whole number of samples; JSON sent as binary is audio too.
    for frame in [vec![0u8; 3], br#"{"type":"flush" }"#.to_vec()] {
        let mut c = started(&harkd).await;
        c.send_binary(vec![0; 640]).await;
        c.send_binary(frame).await;
        assert_fatal(
            &c.collect_until_close().await,
            ErrorCode::OddByteCount,
            1008,
        );
    }

    // Stereo frames must hold whole sample frames (4 bytes).
    let mut c = Client::connect(&url).await;
    c.start(&native::start(16_000, 2)).await;
    c.send_binary(vec![0; 6]).await;
    assert_fatal(
        &c.collect_until_close().await,
        ErrorCode::OddByteCount,
        1008,
    );

    // NaN in f32le.
    let mut c = Client::connect(&url).await;
    let mut start = native::start(16_000, 1);
    start.encoding = Encoding::F32le;
    c.start(&start).await;
    let mut frame = encode_pcm(Encoding::F32le, &[0.1, 0.2]);
    frame.extend_from_slice(&f32::NAN.to_le_bytes());
    c.send_binary(frame).await;
    assert_fatal(
        &c.collect_until_close().await,
        ErrorCode::NonFiniteSample,
        1008,
    );

    // Over the frame limit (4096 here): a clear error…
    let mut c = started(&harkd).await;
    c.send_binary(vec![0; 4098]).await;
    assert_fatal(
        &c.collect_until_close().await,
        ErrorCode::FrameTooLarge,
        1009,
    );
    // …and a frame far beyond it is cut off by the WebSocket layer, without harm.
    let mut c = started(&harkd).await;
    let _ = c.try_send_binary(vec![0; 4 << 20]).await;
    let t = c.collect_until_close().await;
    assert!(t.finals().is_empty());

    // Empty frames are allowed and do nothing.
    let mut c = started(&harkd).await;
    c.send_binary(Vec::new()).await;
    let t = c.close_and_collect().await;
    assert_eq!(t.kinds(), ["closed"]);
    assert_eq!(t.closed().unwrap().acked_samples, 0);

    // Audio after `close` is discarded and reported once; the session still closes cleanly.
    let clip = Clip::fixture("hello");
    let mut c = started(&harkd).await;
    c.send_clip(&clip, 100, Pace::Fast).await;
    c.send_json(&json!({"type": "close"})).await;
    for _ in 0..3 {
        let _ = c.try_send_binary(vec![0; 320]).await;
    }
    let t = c.collect_until_close().await;
    let warnings: Vec<_> = t.errors().into_iter().filter(|e| !e.fatal).collect();
    assert!(warnings.len() <= 1, "{:?}", t.kinds());
    assert!(
        warnings
            .iter()
            .all(|e| e.code == ErrorCode::UnexpectedMessage)
    );
    assert_eq!(t.closed().unwrap().acked_samples, clip.frames() as u64);
    assert_eq!(t.close_code, Some(1000));

    assert_eq!(harkd.get("/healthz", &[]).status, 200, "{}", harkd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_time_out_and_keepalives_prevent_it() {
    let harkd = small_limits().start();
    // Before start and after it.
    for start in [false, true] {
        let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
        if start {
            c.start(&native::start(16_000, 1)).await;
        }
        let t0 = Instant::now();
        let t = c.collect_until_close().await;
        let waited = t0.elapsed();
        assert_fatal(&t, ErrorCode::IdleTimeout, 1008);
        assert!(waited >= Duration::from_millis(1_800), "{waited:?}");
    }
    // Keepalives and pings reset the timer.
    let mut c = started(&harkd).await;
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        if i % 2 == 0 {
            c.send_json(&json!({"type": "keepalive"})).await;
        } else {
            c.ping().await;
        }
    }
    let t = c.close_and_collect().await;
    assert_eq!(t.kinds(), ["closed"], "{:?}", t.messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_in_length() {
    let harkd = small_limits().args(["--max-session-s", "2"]).start();
    let clip = Clip::fixture("fox");
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    let mut start = native::start(16_000, 1);
    start.endpointing_ms = Some(0);
    start.partials = false;
    let ready = c.start(&start).await;
    assert_eq!(ready.limits.max_session_s, 2);
    c.send_clip(&clip, 100, Pace::Fast).await;
    let t = c.collect_until_close().await;
    // The open segment is finalised first.
    assert_eq!(t.kinds(), ["final", "error", "closed"]);
    assert_fatal(&t, ErrorCode::SessionTooLong, 1008);
    assert_eq!(t.closed().unwrap().acked_samples, 32_000);
    assert!((t.finals()[0].end - 2.0).abs() < 0.01);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_and_abrupt_disconnects_leave_others_alone() {
    let builder = small_limits();
    let harkd = builder.clone().start();
    let url = harkd.ws_url("/v1/listen");
    let fox = Clip::fixture("fox");
    let expected =
        hark_tests::offline::transcribe(builder.model(), &fox.path, builder.token_budget());

    // A well-behaved session runs alongside the misbehaving ones.
    let good = {
        let url = url.clone();
        let fox = fox.clone();
        tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            let mut start = native::start(16_000, 1);
            start.endpointing_ms = Some(0);
            start.partials = false;
            c.start(&start).await;
            c.send_clip(&fox, 50, Pace::Realtime(1.5)).await;
            c.close_and_collect().await
        })
    };

    // Clients that vanish mid-stream: before and after `start`, with audio queued.
    for _ in 0..3 {
        let mut c = Client::connect(&url).await;
        c.start(&native::start(16_000, 1)).await;
        c.send_clip(&fox, 100, Pace::Fast).await;
        c.drop_abruptly();
    }
    let c = Client::connect(&url).await;
    c.drop_abruptly();

    // A client that sends everything, then reads nothing for three seconds.
    let april = Clip::fixture("april");
    let mut slow = Client::connect(&url).await;
    let mut start = native::start(16_000, 1);
    start.endpointing_ms = Some(0);
    slow.start(&start).await;
    slow.send_clip(&april, 20, Pace::Fast).await;
    slow.send_json(&json!({"type": "close"})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = slow.collect_until_close().await;
    let v = hark_tests::native::order_violations(&t);
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(t.finals().len(), 1);
    assert_eq!(t.close_code, Some(1000));

    let t = good.await.unwrap();
    assert_eq!(t.text(), expected);

    // The vanished sessions are gone and their slots free.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: serde_json::Value =
            serde_json::from_str(&harkd.get("/healthz", &[]).body).unwrap();
        if health["sessions"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "sessions still held: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = harkd.get("/metrics", &[]).body;
    assert!(
        hark_tests::http::metric(&page, "harkd_disconnects_total", "client_gone").unwrap_or(0.0)
            >= 4.0,
        "{page}"
    );
}
