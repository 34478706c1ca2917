//! harkd's accept loop: HTTP/1.1 connections with a request-header deadline, a cap on open
//! connections (in all and per peer address), and accept errors that back off.
//!
//! A connection that waits for a request (it never sent one, sent half of one, or idles
//! between keep-alive requests) costs the attacker nothing, so it is what gives way: when a
//! cap is reached, the connection that has waited longest is closed to make room. Only when
//! every connection is busy (requests in flight, WebSockets) is a new one refused with `503`.
//! A WebSocket keeps its place in the count until the socket closes.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

/// File descriptors kept free for everything but client sockets (model files, the runtime,
/// refusals in progress).
const FD_RESERVE: usize = 64;
/// Refusals (`503`) written at the same time; beyond this a refused socket is closed at once.
const MAX_REFUSING: usize = 32;
/// How long a refusal may take to write and to wait for the client to finish sending.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// Longest pause between accept attempts while they fail.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// While accepting keeps failing, the log is reminded this often.
const ACCEPT_REPORT_EVERY: Duration = Duration::from_secs(60);

/// What the accept loop needs to know.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Request headers must arrive within this long (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one peer address.
    pub max_per_peer: usize,
    /// `Retry-After` of a refusal.
    pub retry_after_s: u32,
    /// How long stopping waits for connections with requests in flight.
    pub shutdown_grace: Duration,
}

/// Serve `router` on `listener` until `shutdown` resolves, then finish the requests in flight
/// (at most `shutdown_grace`). Upgraded WebSockets are not waited for: their sessions watch
/// the shutdown signal themselves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ListenerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let conns = Arc::new(Connections::new(
        settings.max_connections,
        settings.max_per_peer,
    ));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.accepted();
                accepted
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors (or memory): free one by closing the connection that
                // has waited longest for a request, and do not spin on the error.
                let freed = conns.evict_oldest_idle(None);
                let pause = backoff.failed(&e, freed);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let peer_ip = peer.ip().to_canonical();
        match conns.admit(peer_ip) {
            Some(entry) => {
                tokio::spawn(serve_connection(
                    stream,
                    entry,
                    router.clone(),
                    settings.header_timeout,
                    stop_rx.clone(),
                ));
            }
            None => {
                metrics::counter!(crate::metrics::CONNECTIONS_REFUSED).increment(1);
                tracing::debug!(%peer, "connection refused: too many open connections");
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    let retry = settings.retry_after_s;
                    tokio::spawn(async move {
                        refuse(stream, retry).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    drop(stop_rx);
    stop_tx.send_replace(true);
    if tokio::time::timeout(settings.shutdown_grace, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests did not finish within the shutdown grace period");
    }
}

/// The connection cap that file descriptors allow: the soft `RLIMIT_NOFILE` (raised to the
/// hard limit first, as much as the process may) less what is already open and a reserve.
/// `None` when the limit cannot be read.
pub fn fd_budget() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed by pointer, which
    // lives for the whole call.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    };
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    let open = std::fs::read_dir("/proc/self/fd").map_or(FD_RESERVE, |d| d.count());
    Some(soft.saturating_sub(open + FD_RESERVE).max(1))
}

/// Errors of one incoming connection (it went away before it was accepted): nothing to back
/// off from.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

/// Serve one connection until it closes, is evicted, or the server stops.
async fn serve_connection(
    stream: TcpStream,
    entry: Arc<ConnEntry>,
    router: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let tower = TowerToHyperService::new(router);
    let requests = entry.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        requests.busy();
        let entry = requests.clone();
        let response = tower.call(req);
        async move {
            let response = response.await;
            // A switched (WebSocket) connection stays busy: it is a session now, not a wait.
            if let Ok(r) = &response
                && r.status() != StatusCode::SWITCHING_PROTOCOLS
            {
                entry.idle();
            }
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let io = TokioIo::new(Counted {
        stream,
        _entry: entry.clone(),
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(peer = %entry.peer, "connection ended: {e}");
            }
        }
        () = entry.evict.notified() => {
            tracing::debug!(peer = %entry.peer, "idle connection closed to make room");
        }
        // The value only ever changes to "stopping".
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Answer `503` at once, without reading a request: the server has no room for it.
async fn refuse(mut stream: TcpStream, retry_after_s: u32) {
    let body = "{\"error\":\"server_busy\",\"message\":\"too many open connections; retry later\"}";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: {retry_after_s}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sends until it closes: closing with unread data would reset
        // the connection and could destroy the answer before the client reads it.
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// Counts accept failures so that a burst is logged once, with its size, not once per try.
/// A burst ends after [`BURST_QUIET`] without a failure.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u64,
    since: Option<Instant>,
    last_failure: Option<Instant>,
    last_report: Option<Instant>,
    pause: Duration,
}

/// Accepts must work this long before a burst of failures counts as over.
const BURST_QUIET: Duration = Duration::from_secs(10);

impl AcceptBackoff {
    /// Note a failure; the pause before the next try. `freed`: an idle connection was closed,
    /// so a descriptor comes free as soon as its task runs.
    fn failed(&mut self, e: &io::Error, freed: bool) -> Duration {
        let now = Instant::now();
        metrics::counter!(crate::metrics::ACCEPT_ERRORS).increment(1);
        if self.since.is_none() {
            tracing::warn!(
                "cannot accept connections: {e}; closing idle connections and retrying with back-off"
            );
            self.since = Some(now);
            self.last_report = Some(now);
        } else if self
            .last_report
            .is_some_and(|at| now.duration_since(at) >= ACCEPT_REPORT_EVERY)
        {
            tracing::warn!(
                "still cannot accept connections: {e} ({} failures in {:.0} s)",
                self.failures + 1,
                self.since
                    .map_or(0.0, |s| now.duration_since(s).as_secs_f64())
            );
            self.last_report = Some(now);
        }
        self.failures += 1;
        self.last_failure = Some(now);
        if freed {
            return Duration::from_millis(5);
        }
        self.pause = (self.pause * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
        self.pause
    }

    /// An accept worked: the next failure starts with a short pause, and a burst that has been
    /// quiet long enough is reported as over.
    fn accepted(&mut self) {
        self.pause = Duration::ZERO;
        let (Some(since), Some(last)) = (self.since, self.last_failure) else {
            return;
        };
        if last.elapsed() < BURST_QUIET {
            return;
        }
        tracing::info!(
            "accepting connections again; {} accept(s) failed over {:.1} s",
            self.failures,
            last.duration_since(since).as_secs_f64()
        );
        *self = AcceptBackoff::default();
    }
}

/// Open connections by peer, and which of them wait for a request.
#[derive(Debug)]
struct Connections {
    max_total: usize,
    max_per_peer: usize,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
    /// Connections waiting for a request, longest waiting first: wait number → connection.
    waiting: BTreeMap<u64, Waiting>,
    /// Connection id → its wait number while it waits.
    wait_of: HashMap<u64, u64>,
    next_wait: u64,
    next_id: u64,
}

#[derive(Debug)]
struct Waiting {
    peer: IpAddr,
    id: u64,
    evict: Arc<Notify>,
}

impl Connections {
    fn new(max_total: usize, max_per_peer: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_peer: max_per_peer.max(1),
            registry: Mutex::new(Registry::default()),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry stays consistent between statements; a panic elsewhere cannot break it.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a new connection from `peer`, making room by closing a waiting one if a cap is
    /// reached; `None` when there is no room.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Arc<ConnEntry>> {
        let mut r = self.registry();
        let from_peer = r.per_peer.get(&peer).copied().unwrap_or(0);
        let room = if from_peer >= self.max_per_peer {
            r.evict_oldest(Some(peer))
        } else if r.total >= self.max_total {
            r.evict_oldest(None)
        } else {
            true
        };
        if !room {
            return None;
        }
        r.total += 1;
        *r.per_peer.entry(peer).or_default() += 1;
        let id = r.next_id;
        r.next_id += 1;
        let entry = Arc::new(ConnEntry {
            conns: self.clone(),
            peer,
            id,
            evict: Arc::new(Notify::new()),
        });
        r.wait(&entry);
        Some(entry)
    }

    fn evict_oldest_idle(&self, peer: Option<IpAddr>) -> bool {
        self.registry().evict_oldest(peer)
    }
}

impl Registry {
    /// Close the connection from `peer` (any peer: `None`) that has waited longest.
    fn evict_oldest(&mut self, peer: Option<IpAddr>) -> bool {
        let found = self
            .waiting
            .iter()
            .find(|(_, w)| peer.is_none_or(|p| p == w.peer))
            .map(|(&n, _)| n);
        let Some(n) = found else {
            return false;
        };
        if let Some(w) = self.waiting.remove(&n) {
            self.wait_of.remove(&w.id);
            w.evict.notify_one();
        }
        true
    }

    fn wait(&mut self, entry: &ConnEntry) {
        self.stop_waiting(entry.id);
        let n = self.next_wait;
        self.next_wait += 1;
        self.wait_of.insert(entry.id, n);
        self.waiting.insert(
            n,
            Waiting {
                peer: entry.peer,
                id: entry.id,
                evict: entry.evict.clone(),
            },
        );
    }

    fn stop_waiting(&mut self, id: u64) {
        if let Some(n) = self.wait_of.remove(&id) {
            self.waiting.remove(&n);
        }
    }
}

/// One counted connection; uncounted when the last holder (the connection task or the
/// upgraded socket) drops it.
#[derive(Debug)]
struct ConnEntry {
    conns: Arc<Connections>,
    peer: IpAddr,
    id: u64,
    evict: Arc<Notify>,
}

impl ConnEntry {
    fn busy(&self) {
        self.conns.registry().stop_waiting(self.id);
    }

    fn idle(&self) {
        self.conns.registry().wait(self);
    }
}

impl Drop for ConnEntry {
    fn drop(&mut self) {
        let mut r = self.conns.registry();
        r.stop_waiting(self.id);
        r.total = r.total.saturating_sub(1);
        if let Some(n) = r.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                r.per_peer.remove(&self.peer);
            }
        }
    }
}

/// A client socket that keeps its connection counted for as long as it is open (through a
/// WebSocket upgrade too).
struct Counted {
    stream: TcpStream,
    _entry: Arc<ConnEntry>,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_full_peer_makes_room_by_closing_its_longest_waiting_connection() {
        let conns = Arc::new(Connections::new(10, 2));
        let first = conns.admit(A).unwrap();
        let second = conns.admit(A).unwrap();
        first.busy();
        // The second waits longest among A's waiting connections: it is the one closed.
        let third = conns.admit(A).unwrap();
        assert!(
            second.evict.notified().now_or_never_ready(),
            "second not evicted"
        );
        assert!(!first.evict.notified().now_or_never_ready());
        drop(second);
        // All of A's connections are busy now: no room.
        third.busy();
        assert!(conns.admit(A).is_none());
        // Another peer is not affected by A's cap.
        assert!(conns.admit(B).is_some());
    }

    #[test]
    fn the_total_cap_and_release() {
        let conns = Arc::new(Connections::new(2, 2));
        let a = conns.admit(A).unwrap();
        let b = conns.admit(B).unwrap();
        a.busy();
        b.busy();
        assert!(conns.admit(A).is_none());
        drop(a);
        let again = conns.admit(A);
        assert!(again.is_some());
        assert_eq!(conns.registry().total, 2);
        drop(again);
        drop(b);
        assert_eq!(conns.registry().total, 0);
        assert!(conns.registry().per_peer.is_empty());
    }

    trait NowOrNever {
        fn now_or_never_ready(self) -> bool;
    }

    impl<F: Future> NowOrNever for F {
        fn now_or_never_ready(self) -> bool {
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut fut = std::pin::pin!(self);
            fut.as_mut().poll(&mut cx).is_ready()
        }
    }
}
