//! Resuming a native session after its connection dropped (protocol §1.6).

use std::time::Duration;

use hark_protocol::{ErrorCode, Resume, ServerMessage};
use hark_tests::audio::Clip;
use hark_tests::harkd::Harkd;
use hark_tests::native::{self, Client, Pace, Received};
use serde_json::json;

fn whole_file_start() -> hark_protocol::Start {
    let mut start = native::start(16_000, 1);
    start.endpointing_ms = Some(0);
    start.partials = false;
    start
}

async fn fatal_code(c: &mut Client) -> (ErrorCode, Option<u16>) {
    let t = c.collect_until_close().await;
    (t.errors()[0].code, t.close_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_resumes_where_it_left_off() {
    let builder = Harkd::builder().args(["--resume-window-s", "20"]);
    let harkd = builder.clone().start();
    let url = harkd.ws_url("/v1/listen");
    let hello = Clip::fixture("hello");
    let fox = Clip::fixture("fox");
    let offline = |clip: &Clip| {
        hark_tests::offline::transcribe(builder.model(), &clip.path, builder.token_budget())
    };

    // First connection: one flushed segment, then half of the next, then the line drops
    // before the client reads anything.
    let mut c = Client::connect(&url).await;
    let ready = c.start(&whole_file_start()).await;
    assert_eq!(ready.limits.resume_window_s, 20);
    let id = ready.session_id.clone();
    c.send_clip(&hello, 100, Pace::Fast).await;
    c.send_json(&json!({"type": "flush"})).await;
    let fox_bytes = fox.s16le();
    let half = fox_bytes.len() / 4 * 2;
    c.send_audio(&fox_bytes[..half], 3_200, 32_000.0, Pace::Fast)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.drop_abruptly();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Second connection: resumed, everything received is acknowledged, the final the client
    // never read is sent again.
    let mut start = whole_file_start();
    start.resume = Some(Resume {
        session_id: id.clone(),
        last_final_segment_id: None,
    });
    let mut c = Client::connect(&url).await;
    let ready = c.start(&start).await;
    assert!(ready.resumed);
    assert_eq!(ready.session_id, id);
    let acked = ready.acked_samples as usize;
    assert_eq!(acked, hello.frames() + half / 2);
    match c.recv().await {
        Received::Msg(ServerMessage::Final(f)) => {
            assert_eq!(f.segment_id, 0);
            assert_eq!(f.text, offline(&hello));
        }
        other => panic!("expected the replayed final, got {other:?}"),
    }
    // The client sends the rest from the acknowledged position on.
    let resume_at = (acked - hello.frames()) * 2;
    c.send_audio(&fox_bytes[resume_at..], 3_200, 32_000.0, Pace::Fast)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.drop_abruptly();

    // Third connection: the client has final 0, so nothing is replayed.
    start.resume = Some(Resume {
        session_id: id.clone(),
        last_final_segment_id: Some(0),
    });
    let mut c = Client::connect(&url).await;
    let ready = c.start(&start).await;
    assert!(ready.resumed);
    assert_eq!(ready.acked_samples as usize, hello.frames() + fox.frames());
    let t = c.close_and_collect().await;
    assert_eq!(t.kinds(), ["final", "closed"], "{:?}", t.messages);
    // The segment spanning both connections is exactly the offline transcript of the clip.
    assert_eq!(t.finals()[0].segment_id, 1);
    assert_eq!(t.finals()[0].text, offline(&fox));
    assert_eq!(t.closed().unwrap().segments, 2);

    // A closed session cannot be resumed; neither can an unknown one or another format.
    let mut c = Client::connect(&url).await;
    c.send_json(&hark_protocol::ClientMessage::Start(start.clone()))
        .await;
    assert_eq!(
        fatal_code(&mut c).await,
        (ErrorCode::ResumeFailed, Some(1008))
    );

    let mut c = Client::connect(&url).await;
    let id = c.start(&whole_file_start()).await.session_id;
    c.drop_abruptly();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut other = native::start(48_000, 1);
    other.resume = Some(Resume {
        session_id: id,
        last_final_segment_id: None,
    });
    let mut c = Client::connect(&url).await;
    c.send_json(&hark_protocol::ClientMessage::Start(other))
        .await;
    assert_eq!(
        fatal_code(&mut c).await,
        (ErrorCode::ResumeFailed, Some(1008))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_windows_expire_and_can_be_off() {
    let harkd = Harkd::builder().args(["--resume-window-s", "1"]).start();
    let url = harkd.ws_url("/v1/listen");
    let mut c = Client::connect(&url).await;
    let id = c.start(&whole_file_start()).await.session_id;
    c.drop_abruptly();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let health: serde_json::Value = serde_json::from_str(&harkd.get("/healthz", &[]).body).unwrap();
    assert_eq!(health["sessions"], 0, "the expired session freed its slot");
    let mut start = whole_file_start();
    start.resume = Some(Resume {
        session_id: id,
        last_final_segment_id: None,
    });
    let mut c = Client::connect(&url).await;
    c.send_json(&hark_protocol::ClientMessage::Start(start.clone()))
        .await;
    assert_eq!(
        fatal_code(&mut c).await,
        (ErrorCode::ResumeFailed, Some(1008))
    );

    let off = Harkd::builder().args(["--resume-window-s", "0"]).start();
    let mut c = Client::connect(&off.ws_url("/v1/listen")).await;
    c.send_json(&hark_protocol::ClientMessage::Start(start))
        .await;
    assert_eq!(
        fatal_code(&mut c).await,
        (ErrorCode::ResumeFailed, Some(1008))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_sessions_give_way_to_new_clients() {
    let harkd = Harkd::builder()
        .args(["--resume-window-s", "60", "--max-sessions", "1"])
        .start();
    let url = harkd.ws_url("/v1/listen");
    let mut c = Client::connect(&url).await;
    let id = c.start(&whole_file_start()).await.session_id;
    c.drop_abruptly();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The only slot is held by the parked session; a new client takes it.
    let mut c = Client::connect(&url).await;
    c.start(&whole_file_start()).await;
    // The evicted session is gone: with the slot taken, even its owner is refused.
    let _ = id;
    let mut r = Client::connect(&url).await;
    let t = r.collect_until_close().await;
    assert_eq!(t.errors()[0].code, ErrorCode::ServerBusy);
    assert_eq!(c.close_and_collect().await.kinds(), ["closed"]);
}
