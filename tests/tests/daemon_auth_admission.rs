//! Bearer tokens (header, query, OpenAI subprotocol; on and off) and admission control.

use std::time::Duration;

use hark_protocol::{CloseReason, ErrorCode, ServerMessage};
use hark_tests::audio::Clip;
use hark_tests::harkd::Harkd;
use hark_tests::native::{self, Client, Pace, Received};
use hark_tests::openai;

const TOKEN: &str = "t0ken-for-tests";

async fn refused(c: &mut Client, code: ErrorCode, close: u16) {
    let t = c.collect_until_close().await;
    assert_eq!(t.kinds(), ["error", "closed"], "{:?}", t.messages);
    let e = t.errors()[0];
    assert_eq!(e.code, code);
    assert!(e.fatal);
    assert_eq!(t.closed().unwrap().reason, CloseReason::Error(code));
    assert_eq!(t.close_code, Some(close));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_by_header_query_or_subprotocol() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let harkd = Harkd::builder()
        .args(["--token-file", token_file.to_str().unwrap()])
        .start();
    let url = harkd.ws_url("/v1/listen");

    // Missing and wrong tokens: upgraded, told why, closed.
    let mut c = Client::connect(&url).await;
    refused(&mut c, ErrorCode::Unauthorized, 1008).await;
    let mut c = Client::connect_with(&url, &[("Authorization", "Bearer wrong")]).await;
    refused(&mut c, ErrorCode::Unauthorized, 1008).await;
    let mut c = Client::connect(&format!("{url}?token=wrong")).await;
    refused(&mut c, ErrorCode::Unauthorized, 1008).await;

    // The right token by header or by query parameter.
    let bearer = format!("Bearer {TOKEN}");
    for mut c in [
        Client::connect_with(&url, &[("Authorization", &bearer)]).await,
        Client::connect(&format!("{url}?token={TOKEN}")).await,
    ] {
        c.start(&native::start(16_000, 1)).await;
        let t = c.close_and_collect().await;
        assert_eq!(t.kinds(), ["closed"]);
    }

    // The OpenAI endpoint: header, query, or the browser subprotocol.
    let rt = harkd.ws_url("/v1/realtime?intent=transcription");
    let mut c = openai::Client::connect_with(&rt, &[]).await;
    let (events, code) = c.until_close().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "error");
    assert_eq!(events[0]["error"]["code"], "unauthorized");
    assert_eq!(events[0]["error"]["type"], "invalid_request_error");
    assert_eq!(code, Some(1008));
    let protocol = format!("realtime, openai-insecure-api-key.{TOKEN}");
    for (url, headers) in [
        (rt.clone(), vec![("Authorization", bearer.as_str())]),
        (format!("{rt}&token={TOKEN}"), vec![]),
        (
            rt.clone(),
            vec![("Sec-WebSocket-Protocol", protocol.as_str())],
        ),
    ] {
        let mut c = openai::Client::connect_with(&url, &headers).await;
        assert_eq!(c.event().await["type"], "session.created");
    }

    // /metrics needs the token too; /healthz does not.
    assert_eq!(harkd.get("/metrics", &[]).status, 401);
    assert_eq!(
        harkd.get(&format!("/metrics?token={TOKEN}"), &[]).status,
        200
    );
    assert_eq!(
        harkd
            .get("/metrics", &[&format!("Authorization: {bearer}")])
            .status,
        200
    );
    assert_eq!(harkd.get("/healthz", &[]).status, 200);
    let page = harkd.get(&format!("/metrics?token={TOKEN}"), &[]).body;
    assert!(
        hark_tests::http::metric(&page, "harkd_errors_total", "unauthorized").unwrap_or(0.0) >= 4.0,
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_everyone_is_served() {
    let harkd = Harkd::builder().start();
    let url = harkd.ws_url("/v1/listen");
    // A token sent to a server without one is simply not needed.
    for mut c in [
        Client::connect(&url).await,
        Client::connect_with(&url, &[("Authorization", "Bearer anything")]).await,
    ] {
        c.start(&native::start(16_000, 1)).await;
        assert_eq!(c.close_and_collect().await.kinds(), ["closed"]);
    }
    assert_eq!(harkd.get("/metrics", &[]).status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_over_the_limit() {
    let builder = Harkd::builder().args(["--max-sessions", "2", "--resume-window-s", "0"]);
    let harkd = builder.clone().start();
    let url = harkd.ws_url("/v1/listen");
    let clip = Clip::fixture("fox");
    let expected =
        hark_tests::offline::transcribe(builder.model(), &clip.path, builder.token_budget());
    let mut start = native::start(16_000, 1);
    start.endpointing_ms = Some(0);
    start.partials = false;

    // Two sessions fill the server and stream in real time.
    let mut a = Client::connect(&url).await;
    a.start(&start).await;
    let mut b = Client::connect(&url).await;
    b.start(&start).await;
    let half = clip.s16le().len() / 2 / 2 * 2;
    let bytes = clip.s16le();
    a.send_audio(&bytes[..half], 1_600, 32_000.0, Pace::Realtime(1.0))
        .await;
    b.send_audio(&bytes[..half], 1_600, 32_000.0, Pace::Fast)
        .await;

    // A third client gets `server_busy` with a retry hint, then a clean close (1013).
    let mut c = Client::connect(&url).await;
    let t = c.collect_until_close().await;
    assert_eq!(t.kinds(), ["error", "closed"]);
    let e = t.errors()[0];
    assert_eq!(e.code, ErrorCode::ServerBusy);
    assert!(e.retry_after_s.is_some_and(|s| s > 0), "{e:?}");
    assert_eq!(t.close_code, Some(1013));
    // The OpenAI endpoint shares the slots.
    let mut o = openai::Client::connect_with(&harkd.ws_url("/v1/realtime"), &[]).await;
    let (events, code) = o.until_close().await;
    assert_eq!(events[0]["error"]["code"], "server_busy");
    assert_eq!(events[0]["error"]["type"], "server_error");
    assert_eq!(code, Some(1013));

    // The admitted sessions are untouched by the refusals.
    a.send_audio(&bytes[half..], 1_600, 32_000.0, Pace::Realtime(1.0))
        .await;
    b.send_audio(&bytes[half..], 1_600, 32_000.0, Pace::Fast)
        .await;
    let ta = a.close_and_collect().await;
    let tb = b.close_and_collect().await;
    assert_eq!(ta.text(), expected);
    assert_eq!(tb.text(), expected);

    // Slots are released when sessions end.
    let mut d = Client::connect(&url).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match d.recv_timeout(Duration::from_millis(300)).await {
            None => break,
            Some(Received::Msg(ServerMessage::Error(e))) if e.code == ErrorCode::ServerBusy => {
                assert!(std::time::Instant::now() < deadline);
                d = Client::connect(&url).await;
            }
            other => panic!("{other:?}"),
        }
    }
    d.start(&start).await;
    assert_eq!(d.close_and_collect().await.kinds(), ["closed"]);
    let page = harkd.get("/metrics", &[]).body;
    assert!(
        hark_tests::http::metric(&page, "harkd_sessions_refused_total", "server_busy")
            .unwrap_or(0.0)
            >= 2.0,
        "{page}"
    );
    assert_eq!(
        hark_tests::http::metric(&page, "harkd_session_slots", ""),
        Some(2.0)
    );
}
