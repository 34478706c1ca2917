//! A client of the native protocol v1, as thin as possible: it sends what a test says and
//! records what comes back, with receipt times.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hark_protocol::{Closed, ErrorMessage, Final, Partial, Ready, ServerMessage, Start};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::audio::Clip;

/// Longest wait for any single server message before a test fails.
pub const RECV_LIMIT: Duration = Duration::from_secs(90);

/// What the socket delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A server message.
    Msg(ServerMessage),
    /// A text frame the client does not understand (must not happen with this server).
    Unparsed(String),
    /// A binary frame (must not happen: the server only sends text).
    Binary(usize),
    /// The server closed with this code.
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Ended,
}

impl Received {
    pub fn msg(&self) -> Option<&ServerMessage> {
        match self {
            Received::Msg(m) => Some(m),
            _ => None,
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One native-protocol connection.
pub struct Client {
    ws: Ws,
    /// Frames read while sending, with their receipt time.
    inbox: VecDeque<(Instant, Received)>,
    closed: bool,
}

/// Everything one session delivered, in order.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    pub messages: Vec<(Instant, ServerMessage)>,
    pub close_code: Option<u16>,
}

impl Transcript {
    pub fn finals(&self) -> Vec<&Final> {
        self.messages
            .iter()
            .filter_map(|(_, m)| match m {
                ServerMessage::Final(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    pub fn partials(&self) -> Vec<&Partial> {
        self.messages
            .iter()
            .filter_map(|(_, m)| match m {
                ServerMessage::Partial(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    pub fn errors(&self) -> Vec<&ErrorMessage> {
        self.messages
            .iter()
            .filter_map(|(_, m)| match m {
                ServerMessage::Error(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    pub fn closed(&self) -> Option<&Closed> {
        self.messages.iter().find_map(|(_, m)| match m {
            ServerMessage::Closed(c) => Some(c),
            _ => None,
        })
    }

    /// Message types in order (`["ready", "partial", …]`).
    pub fn kinds(&self) -> Vec<&'static str> {
        self.messages.iter().map(|(_, m)| kind(m)).collect()
    }

    /// Text of all finals joined by spaces (empty ones skipped), as `hark transcribe` joins spans.
    pub fn text(&self) -> String {
        self.finals()
            .iter()
            .map(|f| f.text.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The `type` of a server message.
pub fn kind(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Ready(_) => "ready",
        ServerMessage::SpeechStarted(_) => "speech_started",
        ServerMessage::Partial(_) => "partial",
        ServerMessage::Final(_) => "final",
        ServerMessage::SpeechStopped(_) => "speech_stopped",
        ServerMessage::Flushed(_) => "flushed",
        ServerMessage::Error(_) => "error",
        ServerMessage::Closed(_) => "closed",
    }
}

/// A `start` with the given format and defaults otherwise.
pub fn start(rate: u32, channels: u16) -> Start {
    Start::new(rate, hark_protocol::Encoding::S16le, channels)
}

/// Pacing of audio frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the socket takes them.
    Fast,
    /// Frame `i` is sent when its last sample would have been spoken, times `speed`
    /// (1.0: real time, 2.0: twice as fast).
    Realtime(f64),
}

impl Client {
    /// Connect to `url` (`ws://host:port/v1/listen[?token=…]`), with extra headers.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Client {
        Self::try_connect(url, headers)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
    }

    /// Connect, or the handshake error.
    pub async fn try_connect(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (k, v) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client {
            ws,
            inbox: VecDeque::new(),
            closed: false,
        })
    }

    pub async fn connect(url: &str) -> Client {
        Self::connect_with(url, &[]).await
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send a text frame");
    }

    /// Send a text frame; `false` when the connection is already closed.
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.ws.send(Message::Text(text.into())).await.is_ok()
    }

    pub async fn send_json(&mut self, value: &impl serde::Serialize) {
        self.send_text(&serde_json::to_string(value).expect("serialise"))
            .await;
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send a binary frame");
    }

    /// Send a binary frame; `false` when the connection is already closed.
    pub async fn try_send_binary(&mut self, bytes: Vec<u8>) -> bool {
        self.ws.send(Message::Binary(bytes.into())).await.is_ok()
    }

    /// Send a WebSocket ping.
    pub async fn ping(&mut self) {
        self.ws
            .send(Message::Ping(vec![1, 2, 3].into()))
            .await
            .expect("send a ping");
    }

    /// Send `start` and expect `ready`.
    pub async fn start(&mut self, start: &Start) -> Ready {
        self.send_json(&hark_protocol::ClientMessage::Start(start.clone()))
            .await;
        match self.recv().await {
            Received::Msg(ServerMessage::Ready(r)) => r,
            other => panic!("expected ready, got {other:?}"),
        }
    }

    async fn read_frame(&mut self) -> Received {
        loop {
            let Some(frame) = self.ws.next().await else {
                self.closed = true;
                return Received::Ended;
            };
            match frame {
                Ok(Message::Text(t)) => {
                    return match hark_protocol::parse_server_text(t.as_str()) {
                        Ok(Some(m)) => Received::Msg(m),
                        _ => Received::Unparsed(t.to_string()),
                    };
                }
                Ok(Message::Binary(b)) => return Received::Binary(b.len()),
                Ok(Message::Close(frame)) => {
                    self.closed = true;
                    return Received::Close(frame.map(|f| u16::from(f.code)));
                }
                Ok(_) => continue,
                Err(_) => {
                    self.closed = true;
                    return Received::Ended;
                }
            }
        }
    }

    /// The next frame (failing the test after [`RECV_LIMIT`]).
    pub async fn recv(&mut self) -> Received {
        self.recv_timeout(RECV_LIMIT)
            .await
            .unwrap_or_else(|| panic!("no message from harkd within {RECV_LIMIT:?}"))
    }

    /// The next frame, or `None` after `limit`.
    pub async fn recv_timeout(&mut self, limit: Duration) -> Option<Received> {
        if let Some((_, r)) = self.inbox.pop_front() {
            return Some(r);
        }
        if self.closed {
            return Some(Received::Ended);
        }
        tokio::time::timeout(limit, self.read_frame()).await.ok()
    }

    /// The next frame with its receipt time.
    pub async fn recv_timed(&mut self) -> (Instant, Received) {
        if let Some(x) = self.inbox.pop_front() {
            return x;
        }
        let r = self.recv().await;
        (Instant::now(), r)
    }

    /// Read until the server closes; every message with its receipt time.
    pub async fn collect_until_close(&mut self) -> Transcript {
        let mut t = Transcript::default();
        loop {
            match self.recv_timed().await {
                (at, Received::Msg(m)) => t.messages.push((at, m)),
                (_, Received::Close(code)) => {
                    t.close_code = code;
                    return t;
                }
                (_, Received::Ended) => return t,
                (_, other) => panic!("unexpected frame from harkd: {other:?}"),
            }
        }
    }

    /// Send `bytes` in frames of `frame_bytes`, paced as asked, reading the server's messages
    /// meanwhile (they are kept for [`recv`](Self::recv) with their receipt times). Returns
    /// the wall time the first frame was sent. Stops early if the connection closes.
    pub async fn send_audio(
        &mut self,
        bytes: &[u8],
        frame_bytes: usize,
        bytes_per_second: f64,
        pace: Pace,
    ) -> Instant {
        let t0 = Instant::now();
        let mut sent = 0usize;
        for chunk in bytes.chunks(frame_bytes) {
            if let Pace::Realtime(speed) = pace {
                let due = t0
                    + Duration::from_secs_f64(
                        (sent + chunk.len()) as f64 / bytes_per_second / speed,
                    );
                loop {
                    let now = Instant::now();
                    if now >= due || self.closed {
                        break;
                    }
                    tokio::select! {
                        frame = self.read_frame() => self.inbox.push_back((Instant::now(), frame)),
                        () = tokio::time::sleep_until(due.into()) => {}
                    }
                }
            }
            if self.closed || !self.try_send_binary(chunk.to_vec()).await {
                break;
            }
            sent += chunk.len();
        }
        t0
    }

    /// Stream a clip as `s16le` in frames of `frame_ms`.
    pub async fn send_clip(&mut self, clip: &Clip, frame_ms: u32, pace: Pace) -> Instant {
        let bytes = clip.s16le();
        let fb = clip.frame_bytes();
        let frame_bytes = (clip.rate as usize * frame_ms as usize / 1000).max(1) * fb;
        let bps = f64::from(clip.rate) * fb as f64;
        self.send_audio(&bytes, frame_bytes, bps, pace).await
    }

    /// Send `close` and collect everything until the server closes.
    pub async fn close_and_collect(&mut self) -> Transcript {
        self.send_json(&serde_json::json!({"type": "close"})).await;
        self.collect_until_close().await
    }

    /// Drop the TCP connection without any WebSocket closing handshake.
    pub fn drop_abruptly(self) {
        drop(self.ws.into_inner());
    }
}

/// Check the order rules of protocol §1.5 on one session's messages; returns the problems.
pub fn order_violations(t: &Transcript) -> Vec<String> {
    let mut problems = Vec::new();
    let kinds = t.kinds();
    // `ready` may have been consumed by `Client::start`; if it is here, it is first.
    if kinds.contains(&"ready") && kinds.first() != Some(&"ready") {
        problems.push(format!("ready is not the first message: {kinds:?}"));
    }
    if kinds.last() != Some(&"closed") {
        problems.push(format!("last message is not closed: {kinds:?}"));
    }
    let mut next_segment = 0u64;
    let mut open: Option<u64> = None;
    let mut committed = String::new();
    for (_, m) in &t.messages {
        match m {
            ServerMessage::Partial(p) => {
                if p.segment_id != next_segment {
                    problems.push(format!(
                        "partial of segment {} while {next_segment} is open",
                        p.segment_id
                    ));
                }
                if open == Some(p.segment_id) && !p.committed.starts_with(&committed) {
                    problems.push(format!(
                        "committed text shrank: {committed:?} -> {:?}",
                        p.committed
                    ));
                }
                open = Some(p.segment_id);
                committed = p.committed.clone();
            }
            ServerMessage::Final(f) => {
                if f.segment_id != next_segment {
                    problems.push(format!(
                        "final of segment {}, expected {next_segment}",
                        f.segment_id
                    ));
                }
                if open == Some(f.segment_id) && !f.text.starts_with(&committed) {
                    problems.push(format!(
                        "final {:?} does not extend the committed {committed:?}",
                        f.text
                    ));
                }
                next_segment = f.segment_id + 1;
                open = None;
                committed.clear();
            }
            _ => {}
        }
    }
    problems
}
