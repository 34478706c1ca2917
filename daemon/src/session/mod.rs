//! WebSocket sessions: what both endpoints share.
//!
//! A session is one tokio task that reads the client's frames, feeds audio to its
//! [`StreamLink`](crate::scheduler::StreamLink) and turns the link's outputs into protocol
//! messages. Writing goes through an [`Outbox`]: a second task owns the socket's write half,
//! so a client that reads slowly never blocks the session (partial updates are dropped for
//! it when its queue is full, finals wait up to `send_timeout_s`, then the client is
//! disconnected).

pub mod native;
pub mod openai;
pub mod resume;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hark_model::SAMPLE_RATE;
use hark_model::Task;
use hark_streaming::{GateConfig, StreamConfig};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::scheduler::{OpenError, Output, StreamLink};
use crate::state::AppState;

/// Frames queued for a client before partial updates are dropped for it.
const OUTBOX_FRAMES: usize = 256;
/// How long a closing session waits for the client's close reply.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// Server-side VAD frame (the gate's default); the hangover must stay below the endpoint
/// silence by at least one frame.
const VAD_FRAME_MS: u32 = 20;

/// The client stopped accepting data or went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client is gone or not reading")]
pub struct ClientGone;

enum Outgoing {
    Text(String),
    Ping,
    Close(u16, String),
}

/// The write side of a session's socket.
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    writer: JoinHandle<()>,
    send_timeout: Duration,
    /// Partial updates dropped because the client read too slowly.
    pub shed: u64,
}

impl Outbox {
    /// Start the writer task on `sink`.
    pub fn spawn(sink: SplitSink<WebSocket, Message>, send_timeout: Duration) -> Outbox {
        let (tx, rx) = mpsc::channel(OUTBOX_FRAMES);
        let writer = tokio::spawn(write_frames(sink, rx));
        Outbox {
            tx,
            writer,
            send_timeout,
            shed: 0,
        }
    }

    /// Queue a message that must arrive (waits while the client's queue is full).
    pub async fn send(&mut self, text: String) -> Result<(), ClientGone> {
        match tokio::time::timeout(self.send_timeout, self.tx.send(Outgoing::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ClientGone),
            Err(_) => {
                tracing::warn!(
                    "client read nothing for {:?}; disconnecting",
                    self.send_timeout
                );
                metrics::counter!(crate::metrics::DISCONNECTS, "reason" => "send_timeout")
                    .increment(1);
                Err(ClientGone)
            }
        }
    }

    /// Queue a message that may be dropped when the client is behind (partial updates).
    pub fn send_sheddable(&mut self, text: String) -> Result<(), ClientGone> {
        match self.tx.try_send(Outgoing::Text(text)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shed += 1;
                metrics::counter!(crate::metrics::PARTIALS_SHED, "stage" => "outbox").increment(1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ClientGone),
        }
    }

    /// Queue a WebSocket ping (a live client answers with a pong, which counts as a frame).
    pub fn ping(&mut self) -> Result<(), ClientGone> {
        match self.tx.try_send(Outgoing::Ping) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ClientGone),
        }
    }

    /// Send a close frame after everything queued, then wait (briefly) for the client's close
    /// reply on `stream`, so the closing handshake completes.
    pub async fn close(self, stream: &mut SplitStream<WebSocket>, code: u16, reason: &str) {
        let Outbox { tx, writer, .. } = self;
        let queued = tokio::time::timeout(
            CLOSE_HANDSHAKE,
            tx.send(Outgoing::Close(code, reason.to_owned())),
        )
        .await;
        drop(tx);
        if matches!(queued, Ok(Ok(()))) {
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, writer).await;
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
                while let Some(Ok(msg)) = stream.next().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        } else {
            writer.abort();
        }
    }

    /// Drop the connection without a close frame (the client is gone anyway).
    pub fn abandon(self) {
        self.writer.abort();
    }
}

async fn write_frames(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        let result = match out {
            Outgoing::Text(text) => sink.send(Message::Text(text.into())).await,
            Outgoing::Ping => sink.send(Message::Ping(Vec::new().into())).await,
            Outgoing::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let sent = sink.send(Message::Close(Some(frame))).await;
                let _ = sink.flush().await;
                let _ = sent;
                return;
            }
        };
        if result.is_err() {
            return;
        }
    }
}

/// When each stretch of a session's 16 kHz audio arrived, to measure how long after its
/// arrival a result about it was sent (`emit_latency_s`, the latency histograms).
#[derive(Debug, Default)]
pub struct ArrivalLog {
    /// (end sample of a pushed stretch, arrival time), increasing.
    entries: VecDeque<(u64, Instant)>,
}

/// Arrival times older than this many samples before the newest are forgotten (a segment
/// is at most 30 s long; results refer to recent audio).
const ARRIVAL_HORIZON: u64 = 40 * SAMPLE_RATE as u64;

impl ArrivalLog {
    /// Samples up to `end` (exclusive) arrived at `at`.
    pub fn record(&mut self, end: u64, at: Instant) {
        if self.entries.back().is_some_and(|&(e, _)| e >= end) {
            return;
        }
        self.entries.push_back((end, at));
        while self
            .entries
            .front()
            .is_some_and(|&(e, _)| e + ARRIVAL_HORIZON < end)
        {
            self.entries.pop_front();
        }
    }

    /// When the sample at `position` arrived (the oldest known time if it was forgotten).
    pub fn arrival(&self, position: u64) -> Option<Instant> {
        let i = self.entries.partition_point(|&(end, _)| end < position);
        self.entries
            .get(i)
            .or_else(|| self.entries.back())
            .map(|&(_, at)| at)
    }

    /// Seconds between the arrival of `position` and now.
    pub fn latency_s(&self, position: u64, now: Instant) -> f64 {
        self.arrival(position)
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64())
    }
}

/// Samples of 16 kHz audio in `s` seconds of stream time.
pub fn samples_at(s: f64) -> u64 {
    (s.max(0.0) * SAMPLE_RATE as f64).round() as u64
}

/// Seconds of 16 kHz audio in `samples`.
pub fn seconds(samples: u64) -> f64 {
    samples as f64 / SAMPLE_RATE as f64
}

/// Round to milliseconds for the wire (times are not more precise than that).
pub fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// The engine settings of a session.
pub fn stream_config(
    state: &AppState,
    task: Task,
    endpointing_ms: Option<u32>,
    pre_roll_ms: Option<u32>,
    partials: bool,
) -> StreamConfig {
    let vad = endpointing_ms.map(|ms| {
        let default = GateConfig::default();
        GateConfig {
            endpoint_silence_ms: ms,
            hangover_ms: default.hangover_ms.min(ms.saturating_sub(VAD_FRAME_MS)),
            pre_roll_ms: pre_roll_ms.unwrap_or(default.pre_roll_ms),
            ..default
        }
    });
    StreamConfig {
        task,
        vad,
        partials,
        partial_interval_ms: state.config.partial_interval_ms,
        max_new_tokens: state.config.max_new_tokens,
        ..StreamConfig::default()
    }
}

/// Open a stream on the scheduler (the prompt prefill runs on a blocking thread).
pub async fn open_link(
    state: &std::sync::Arc<AppState>,
    cfg: StreamConfig,
) -> Result<StreamLink, OpenError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || match state.model() {
        Some(model) => model.scheduler.open(cfg),
        None => Err(OpenError::ShuttingDown),
    })
    .await
    .unwrap_or(Err(OpenError::ShuttingDown))
}

/// One endpoint's side of a session: what it does with each thing that wakes it. The loop that
/// waits for those, [`dispatch`], is the same for the native and the OpenAI-compatible endpoint.
trait Dispatch {
    /// How a session of this endpoint ends.
    type End;
    /// The end of a session whose socket broke.
    const GONE: Self::End;
    fn state(&self) -> &AppState;
    /// The stream link whose outputs the session waits for, if any.
    fn link(&mut self) -> Option<&mut StreamLink>;
    /// Whether a quiet client times out now (not while a session is already closing).
    fn idle_armed(&self) -> bool {
        true
    }
    /// When the client's last frame arrived.
    fn last_frame(&mut self) -> &mut Instant;
    /// When the session must have started, and the limit in seconds (for the message); `None`
    /// once it has or where there is nothing to start.
    fn start_deadline(&self) -> Option<(Instant, u32)> {
        None
    }
    /// The message that starts a session (for the start-timeout error).
    fn what_starts(&self) -> &'static str {
        "`start`"
    }
    /// Handle a client frame.
    async fn on_frame(&mut self, msg: Message) -> Result<(), Self::End>;
    /// Handle the stream's next output (`None`: the stream stopped).
    async fn on_output(&mut self, output: Option<Output>) -> Result<(), Self::End>;
    /// End the session with a fatal error after finalising what it can.
    async fn finish(&mut self, code: hark_protocol::ErrorCode, message: &str) -> Self::End;
    /// No frame for `idle`: by default the session ends with `idle_timeout`.
    async fn on_idle(&mut self, idle: Duration) -> Result<(), Self::End> {
        let message = format!("no frame for {} s", idle.as_secs());
        Err(self
            .finish(hark_protocol::ErrorCode::IdleTimeout, &message)
            .await)
    }
}

/// What woke the session loop.
enum Wake {
    Frame(Option<Result<Message, axum::Error>>),
    Output(Option<Output>),
    Idle,
    StartTimeout(u32),
    Shutdown,
}

/// Serve a session until it ends: the daemon stopping comes first, then the stream's outputs,
/// then the client's frames, then the idle timeout.
async fn dispatch<S: Dispatch>(session: &mut S, stream: &mut SplitStream<WebSocket>) -> S::End {
    use hark_protocol::ErrorCode;
    let idle = Duration::from_secs(u64::from(session.state().limits.idle_timeout_s));
    let shutdown = session.state().shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let armed = session.idle_armed();
        let quiet_until = *session.last_frame() + idle;
        let start = session.start_deadline();
        let (start_by, start_s) = start.unwrap_or((quiet_until, 0));
        let wake = tokio::select! {
            biased;
            () = &mut shutdown => Wake::Shutdown,
            out = recv(session.link()) => Wake::Output(out),
            frame = stream.next() => Wake::Frame(frame),
            () = tokio::time::sleep_until(start_by.into()), if start.is_some() => {
                Wake::StartTimeout(start_s)
            }
            () = tokio::time::sleep_until(quiet_until.into()), if armed => Wake::Idle,
        };
        let step = match wake {
            Wake::Shutdown => Err(session
                .finish(ErrorCode::ShuttingDown, "the server is stopping")
                .await),
            Wake::Idle => session.on_idle(idle).await,
            // A socket that never starts a session is closed soon: it must not linger until
            // the idle timeout (keepalives would reset that).
            Wake::StartTimeout(limit_s) => Err(session
                .finish(
                    ErrorCode::IdleTimeout,
                    &format!(
                        "no {} within {limit_s} s of connecting",
                        session.what_starts()
                    ),
                )
                .await),
            Wake::Output(output) => session.on_output(output).await,
            Wake::Frame(Some(Ok(msg))) => {
                *session.last_frame() = Instant::now();
                session.on_frame(msg).await
            }
            Wake::Frame(Some(Err(_)) | None) => Err(S::GONE),
        };
        if let Err(end) = step {
            return end;
        }
    }
}

/// The next output of the link, or never when there is none.
async fn recv(link: Option<&mut StreamLink>) -> Option<Output> {
    match link {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_lookup_finds_the_stretch_holding_a_sample() {
        let t0 = Instant::now();
        let mut log = ArrivalLog::default();
        log.record(1600, t0);
        log.record(3200, t0 + Duration::from_millis(100));
        log.record(4800, t0 + Duration::from_millis(200));
        assert_eq!(log.arrival(0), Some(t0));
        assert_eq!(log.arrival(1600), Some(t0));
        assert_eq!(log.arrival(1601), Some(t0 + Duration::from_millis(100)));
        assert_eq!(log.arrival(99_999), Some(t0 + Duration::from_millis(200)));
        let later = t0 + Duration::from_millis(700);
        assert!((log.latency_s(3200, later) - 0.6).abs() < 1e-9);
    }

    #[test]
    fn arrival_log_forgets_old_audio() {
        let t0 = Instant::now();
        let mut log = ArrivalLog::default();
        for i in 1..=100u64 {
            log.record(i * SAMPLE_RATE as u64, t0 + Duration::from_secs(i));
        }
        assert!(log.entries.len() <= 41);
        // Forgotten positions map to the oldest time kept, never to nothing.
        assert!(log.arrival(0).is_some());
    }
}
