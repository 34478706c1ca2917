//! SIGTERM with open sessions: every session gets the final of its open segment, then
//! `shutting_down` and `closed`; systemd hears READY=1 once the model is loaded and
//! STOPPING=1 at shutdown.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use hark_protocol::{CloseReason, ErrorCode};
use hark_tests::audio::{Clip, write_wav_s16};
use hark_tests::harkd::Harkd;
use hark_tests::native::{self, Client, Pace};
use hark_tests::openai;
use serde_json::json;

/// Datagrams received on the notify socket until one contains `needle` (or the limit).
fn wait_notify(sock: &UnixDatagram, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut all = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            if all.contains(needle) {
                return all;
            }
        }
    }
    panic!("no {needle} from harkd within {limit:?}; got {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finalizes_open_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let builder = Harkd::builder().env("NOTIFY_SOCKET", notify_path.to_str().unwrap());
    let mut harkd = builder.clone().spawn();
    let ready = wait_notify(&notify, "READY=1", Duration::from_secs(60));
    assert!(ready.contains("STATUS="), "{ready}");
    // READY is only sent once the model is loaded: /healthz agrees.
    assert_eq!(harkd.get("/healthz", &[]).status, 200);

    // Session A has half a clip in an open segment.
    let fox = Clip::fixture("fox");
    let half = Clip {
        samples: fox.samples[..fox.samples.len() / 2].to_vec(),
        ..fox.clone()
    };
    let half_path = dir.path().join("half.wav");
    write_wav_s16(&half_path, half.rate, half.channels, &half.samples);
    let expected =
        hark_tests::offline::transcribe(builder.model(), &half_path, builder.token_budget());
    let mut a = Client::connect(&harkd.ws_url("/v1/listen")).await;
    let mut start = native::start(16_000, 1);
    start.endpointing_ms = Some(0);
    start.partials = false;
    a.start(&start).await;
    a.send_clip(&half, 100, Pace::Fast).await;

    // Session B is open without audio.
    let mut b = Client::connect(&harkd.ws_url("/v1/listen")).await;
    b.start(&native::start(16_000, 1)).await;

    // Session C (OpenAI) has uncommitted audio in manual-commit mode.
    let mut c = openai::Client::connect_with(&harkd.ws_url("/v1/realtime"), &[]).await;
    assert_eq!(c.event().await["type"], "session.created");
    c.send(json!({"type": "session.update", "session": {"type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": null}}}}))
        .await;
    assert_eq!(c.event().await["type"], "session.updated");
    let hello = Clip::fixture("hello");
    c.append(&hello.samples).await;

    // Let the daemon receive everything, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    harkd.sigterm();

    let t = a.collect_until_close().await;
    assert_eq!(t.kinds(), ["final", "error", "closed"], "{:?}", t.messages);
    assert_eq!(t.finals()[0].text, expected);
    let e = t.errors()[0];
    assert_eq!(e.code, ErrorCode::ShuttingDown);
    assert!(e.fatal);
    let closed = t.closed().unwrap();
    assert_eq!(closed.reason, CloseReason::Error(ErrorCode::ShuttingDown));
    assert_eq!(closed.acked_samples, half.frames() as u64);
    assert_eq!(closed.segments, 1);
    assert_eq!(t.close_code, Some(1001));

    let t = b.collect_until_close().await;
    assert_eq!(t.kinds(), ["error", "closed"]);
    assert_eq!(t.close_code, Some(1001));

    let (events, code) = c.until_close().await;
    let kinds: Vec<_> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("input_audio_buffer.committed"),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"conversation.item.input_audio_transcription.completed".to_owned()),
        "{kinds:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["error"]["code"], "shutting_down");
    assert_eq!(code, Some(1001));

    let status = harkd.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", harkd.log());
    let stopping = wait_notify(&notify, "STOPPING=1", Duration::from_secs(5));
    assert!(stopping.contains("STOPPING=1"));
    // Nothing listens any more.
    assert!(
        Client::try_connect(&harkd.ws_url("/v1/listen"), &[])
            .await
            .is_err()
    );
}
