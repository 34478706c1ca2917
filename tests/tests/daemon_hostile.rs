//! harkd against hostile networks and browsers (issue 16, parts 1 and 3): connections that
//! never send a request, a flood under a small open-file limit, a full connection cap, web
//! pages from other origins, and WebSockets that never send `start`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use hark_protocol::{ErrorCode, ServerMessage};
use hark_tests::audio::Clip;
use hark_tests::harkd::Harkd;
use hark_tests::native::{self, Client, Pace};
use tokio_tungstenite::tungstenite;

/// `n` connections that send nothing (even ones) or half a request line (odd ones).
fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr).expect("connect");
            if i % 2 == 1 {
                s.write_all(b"GET /healthz HT").unwrap();
            }
            s
        })
        .collect()
}

/// Whether the server has closed `s` (reads to end of stream or a reset within `wait`).
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// `GET /healthz`: status and how long the answer took.
fn timed_health(addr: SocketAddr) -> (u16, Duration, hark_tests::http::Response) {
    let began = Instant::now();
    let r = hark_tests::http::get(addr, "/healthz", &[]).expect("GET /healthz");
    (r.status, began.elapsed(), r)
}

#[test]
fn a_flood_of_idle_connections_under_a_small_file_limit() {
    let harkd = Harkd::builder().args(["--header-timeout-s", "2"]).start();
    // What the issue measured: 128 open files, 130+ connections that never send a request.
    let limited = Command::new("prlimit")
        .args(["--pid", &harkd.pid().to_string(), "--nofile=128:128"])
        .status()
        .expect("run prlimit");
    assert!(limited.success(), "prlimit failed");

    let mut idle = idle_connections(harkd.addr, 140);
    std::thread::sleep(Duration::from_millis(300));
    // Health still answers, promptly, while the flood is held.
    let (status, took, r) = timed_health(harkd.addr);
    assert_eq!(status, 200, "{r:?}\n{}", harkd.log());
    eprintln!("/healthz answered in {took:?} with 140 idle connections and 128 open files");
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");

    // Every idle connection is closed: by the header deadline, or earlier to make room.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, s) in idle.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(closed_within(s, left), "idle connection {i} still open");
    }
    let (status, took, _) = timed_health(harkd.addr);
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");

    // Running out of descriptors was hit, and logged once, not once per try.
    let log = harkd.log();
    let accept_lines = log
        .lines()
        .filter(|l| l.contains("accept connections"))
        .count();
    assert_eq!(accept_lines, 1, "{log}");
    let page = harkd.get("/metrics", &[]).body;
    let failures = hark_tests::http::metric(&page, "harkd_accept_errors_total", "").unwrap_or(0.0);
    assert!(failures >= 1.0, "no accept error was counted:\n{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_cap_closes_idle_connections_first_then_answers_503() {
    let harkd = Harkd::builder()
        .args(["--max-connections", "6", "--start-timeout-s", "2"])
        .args(["--header-timeout-s", "60"])
        .start();
    let addr = harkd.addr;

    // Ten connections that wait for nothing: the cap makes room by closing the oldest.
    let mut idle = tokio::task::spawn_blocking(move || idle_connections(addr, 10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, took, _) = timed_health(addr);
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(2)),
        "the longest-waiting connection was not closed"
    );
    assert!(
        !closed_within(&mut idle[9], Duration::from_millis(200)),
        "the newest connection was closed although older ones waited"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Six WebSockets are busy connections: the seventh connection is refused with 503.
    let url = harkd.ws_url("/v1/listen");
    let began = Instant::now();
    let mut sockets = Vec::new();
    for _ in 0..6 {
        sockets.push(Client::connect(&url).await);
    }
    let (status, _, r) = timed_health(addr);
    assert_eq!(status, 503, "{r:?}");
    assert!(r.body.contains("server_busy"), "{}", r.body);
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after: 5"),
        "{}",
        r.headers
    );

    // They never send `start`: closed after the start deadline with a coded error.
    for c in &mut sockets {
        let t = c.collect_until_close().await;
        assert_eq!(t.kinds(), ["error", "closed"], "{:?}", t.messages);
        assert_eq!(t.errors()[0].code, ErrorCode::IdleTimeout);
        assert!(t.errors()[0].message.contains("start"), "{:?}", t.errors());
    }
    assert!(
        began.elapsed() < Duration::from_secs(6),
        "{:?}",
        began.elapsed()
    );
    // Once those sockets are gone, their places are free again.
    drop(sockets);
    let deadline = Instant::now() + Duration::from_secs(5);
    while timed_health(addr).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "connection places were not released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn handshake_status(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_from_foreign_web_pages_are_refused() {
    let harkd = Harkd::builder()
        .args(["--allowed-origins", "https://captions.example"])
        .start();
    let listen = harkd.ws_url("/v1/listen");
    let realtime = harkd.ws_url("/v1/realtime");
    let own = format!("http://{}", harkd.addr);

    for url in [&listen, &realtime] {
        let foreign = Client::try_connect(url, &[("Origin", "https://evil.example")]).await;
        assert_eq!(handshake_status(foreign), 403, "{url}");
        let null = Client::try_connect(url, &[("Origin", "null")]).await;
        assert_eq!(handshake_status(null), 403, "{url}");
        // A page on a name re-pointed at 127.0.0.1 (DNS rebinding) is not this server's own.
        let rebound_host = format!("evil.example:{}", harkd.addr.port());
        let rebound = Client::try_connect(
            url,
            &[
                ("Origin", &format!("http://{rebound_host}")),
                ("Host", &rebound_host),
            ],
        )
        .await;
        assert_eq!(handshake_status(rebound), 403, "{url}");
        let listed = Client::try_connect(url, &[("Origin", "https://captions.example")]).await;
        assert_eq!(handshake_status(listed), 101, "{url}");
    }

    // The page harkd serves itself, and clients that send no Origin, work.
    let start = native::start(16_000, 1);
    let mut same = Client::connect_with(&listen, &[("Origin", &own)]).await;
    same.start(&start).await;
    assert_eq!(same.close_and_collect().await.kinds(), ["closed"]);
    let mut plain = Client::connect(&listen).await;
    plain.start(&start).await;
    assert_eq!(plain.close_and_collect().await.kinds(), ["closed"]);

    let page = harkd.get("/metrics", &[]).body;
    let refused =
        hark_tests::http::metric(&page, "harkd_sessions_refused_total", "forbidden_origin");
    assert!(refused.unwrap_or(0.0) >= 6.0, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_start_hold_no_slot_and_are_closed() {
    let harkd = Harkd::builder()
        .args(["--max-sessions", "2", "--start-timeout-s", "3"])
        .start();
    let url = harkd.ws_url("/v1/listen");
    let began = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut c = Client::connect(&url).await;
        // Keepalives do not buy time before `start`.
        c.send_text(r#"{"type":"keepalive"}"#).await;
        idle.push(c);
    }

    // A legitimate client still gets a slot and a transcript.
    let clip = Clip::fixture("fox");
    let mut start = native::start(clip.rate, clip.channels);
    start.endpointing_ms = Some(0);
    start.partials = false;
    let mut legit = Client::connect(&url).await;
    legit.start(&start).await;
    let health = harkd.get("/healthz", &[]).body;
    assert!(health.contains("\"sessions\":1"), "{health}");
    legit.send_clip(&clip, 100, Pace::Fast).await;
    let t = legit.close_and_collect().await;
    assert_eq!(t.kinds().last(), Some(&"closed"), "{:?}", t.messages);
    assert!(t.errors().iter().all(|e| !e.fatal), "{:?}", t.errors());
    assert!(!t.finals().is_empty(), "{:?}", t.messages);

    // The 64 are closed after the start deadline with a coded error, not kept to the idle
    // timeout.
    for c in &mut idle {
        let t = c.collect_until_close().await;
        let errors = t.errors();
        assert_eq!(errors.len(), 1, "{:?}", t.messages);
        assert_eq!(errors[0].code, ErrorCode::IdleTimeout);
        assert!(
            errors[0].message.contains("`start`"),
            "{}",
            errors[0].message
        );
        assert!(matches!(
            t.messages.last().map(|(_, m)| m),
            Some(ServerMessage::Closed(_))
        ));
    }
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "closing the idle sockets took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_keep_a_client_from_ready() {
    let harkd = Harkd::builder().start();
    let addr = harkd.addr;
    let idle = tokio::task::spawn_blocking(move || idle_connections(addr, 1_000))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let began = Instant::now();
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    c.start(&native::start(16_000, 1)).await;
    let took = began.elapsed();
    eprintln!("ready after {took:?} with 1000 idle connections open");
    assert!(took < Duration::from_secs(2), "ready took {took:?}");
    assert_eq!(c.close_and_collect().await.kinds(), ["closed"]);
    let (status, took, _) = timed_health(addr);
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    drop(idle);
}
