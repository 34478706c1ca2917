//! One continuous stream through harkd, surviving dropped connections.
//!
//! [`run_session`] sends the audio it is given, hands every server message to the caller in
//! stream terms (absolute times, ids unique over the whole stream), and when the connection
//! drops it reconnects: first resuming the same server session (the server says how much
//! audio it holds and the client sends the rest from its [`ReplayBuffer`]), and when that is
//! impossible starting a fresh session from the last point where nothing was in flight. Either
//! way every sample is transcribed once.

use std::time::{Duration, Instant};

use hark_protocol::{
    AudioSource, ClientMessage, Encoding, ErrorCode, ErrorMessage, Final, Flush, Flushed, Partial,
    Ready, Resume, ServerMessage, Start, Task,
};
use tokio::sync::mpsc;

use super::timeline::{ReplayBuffer, Timeline, seconds};
use super::{Connection, Endpoint, RemoteError};
use crate::input::RATE;

/// Send a keepalive after this long without sending anything (the default idle timeout is
/// 30 s).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
/// Largest audio frame sent (also bounded by the server's `max_frame_bytes`).
const MAX_FRAME_SAMPLES: usize = RATE as usize / 4;
/// Audio kept for a fresh-session replay beyond what resume needs, at most.
const MAX_REPLAY_S: u64 = 120;
/// First and longest pause between reconnection attempts.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// Resume attempts before falling back to a fresh session, and the pause between them.
const RESUME_TRIES: u32 = 3;
const RESUME_RETRY: Duration = Duration::from_millis(250);

/// What a stream asks of the server.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Client name for the server's logs and metrics.
    pub label: String,
    /// BCP 47 tag of the spoken language; `None`: the server default.
    pub language: Option<String>,
    /// Transcribe or translate.
    pub task: Task,
    /// Output language with `Task::Translate`.
    pub target_language: Option<String>,
    /// Ask for `partial` messages.
    pub partials: bool,
    /// Endpointing silence in ms (0: segments close only on flush/close).
    pub endpointing_ms: Option<u32>,
    /// How long to keep trying to reconnect after the connection drops; zero: give up at once.
    pub reconnect_for: Duration,
    /// `File` when the audio is a recording sent faster than real time (no lag warnings).
    pub source: AudioSource,
}

impl SessionOptions {
    /// Defaults for a client called `label`: partials on, server endpointing, reconnecting
    /// for up to a minute.
    pub fn new(label: &str) -> Self {
        SessionOptions {
            label: label.to_owned(),
            language: None,
            task: Task::Transcribe,
            target_language: None,
            partials: true,
            endpointing_ms: None,
            reconnect_for: Duration::from_secs(60),
            source: AudioSource::Live,
        }
    }

    fn start(&self, resume: Option<Resume>) -> Start {
        let mut start = Start::new(RATE, Encoding::S16le, 1);
        start.language = self.language.clone();
        start.task = self.task;
        start.target_language = self.target_language.clone();
        start.partials = self.partials;
        start.endpointing_ms = self.endpointing_ms;
        start.label = Some(self.label.clone());
        start.resume = resume;
        start.source = self.source;
        start
    }
}

/// What the client sends into the stream.
#[derive(Debug)]
pub enum Control {
    /// 16 kHz mono samples.
    Audio(Vec<f32>),
    /// Finalise the open segment now (push-to-talk release); answered by
    /// [`SessionEvent::Flushed`] with the same id.
    Flush(Option<String>),
    /// No more audio: finalise and end the session. Dropping the sender does the same.
    Close,
}

/// What the stream reports, in stream terms: times count from the first sample sent and
/// segment ids are unique over the whole stream, across reconnections.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// A server session is open (the first one, or a fresh one after a failed resume).
    Ready(Ready),
    /// Voice activity began at this stream time.
    SpeechStarted(f64),
    /// Hypothesis of the open segment.
    Partial(Partial),
    /// A closed segment, delivered exactly once.
    Final(Final),
    /// Endpoint silence reached at this stream time.
    SpeechStopped(f64),
    /// A flush was fully processed (`acked_samples` in stream terms).
    Flushed(Flushed),
    /// A non-fatal server error (`lagging`, an ignored message).
    Warning(ErrorMessage),
    /// The connection dropped; reconnecting.
    Disconnected(String),
    /// Connected again: `resumed` when the server kept the session, otherwise a fresh
    /// session replays from a safe point; `lost_s` is audio that could not be replayed.
    Reconnected {
        /// The server session continued.
        resumed: bool,
        /// Seconds of audio that were lost (0 unless the replay buffer was exceeded).
        lost_s: f64,
    },
}

/// How a stream went, when it ended cleanly.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    /// The last server session id.
    pub session_id: String,
    /// Model that served the stream.
    pub model: String,
    /// Samples the server acknowledged over the whole stream.
    pub acked_samples: u64,
    /// Samples the client captured and sent.
    pub sent_samples: u64,
    /// Finals delivered.
    pub segments: u64,
    /// Reconnections that resumed the server session.
    pub resumed: u32,
    /// Reconnections that had to open a fresh session.
    pub restarted: u32,
    /// Audio lost to a reconnection, in samples (0 unless the replay buffer was exceeded).
    pub lost_samples: u64,
}

/// Why a connection stopped serving the stream.
enum Interrupt {
    /// The socket dropped (or the server is restarting): try to reconnect.
    Dropped(String),
    /// The server ended the session for good.
    Fatal(RemoteError),
}

struct Stream<'a, F> {
    endpoint: &'a Endpoint,
    opts: &'a SessionOptions,
    on_event: F,
    buffer: ReplayBuffer,
    timeline: Timeline,
    /// Absolute position sent on the current connection.
    sent: u64,
    session_id: String,
    model: String,
    resume_window: Duration,
    max_frame: usize,
    /// The caller has sent everything (Close or a dropped sender).
    input_done: bool,
    /// Flushes asked for while disconnected, sent after the backlog.
    pending_flushes: Vec<Option<String>>,
    close_sent: bool,
    last_send: Instant,
    summary_resumed: u32,
    summary_restarted: u32,
    lost: u64,
}

/// Runs one stream until the caller closes it and the server confirms, calling `on_event` for
/// every server event. The first connection must succeed (its error says why the daemon is not
/// usable); later drops are retried for `opts.reconnect_for`.
pub async fn run_session<F: FnMut(SessionEvent)>(
    endpoint: &Endpoint,
    opts: &SessionOptions,
    mut controls: mpsc::Receiver<Control>,
    on_event: F,
) -> Result<SessionSummary, RemoteError> {
    let (mut conn, ready) = Connection::open(endpoint, &opts.start(None)).await?;
    let mut stream = Stream {
        endpoint,
        opts,
        on_event,
        buffer: ReplayBuffer::default(),
        timeline: Timeline::default(),
        sent: 0,
        session_id: String::new(),
        model: String::new(),
        resume_window: Duration::ZERO,
        max_frame: MAX_FRAME_SAMPLES,
        input_done: false,
        pending_flushes: Vec::new(),
        close_sent: false,
        last_send: Instant::now(),
        summary_resumed: 0,
        summary_restarted: 0,
        lost: 0,
    };
    stream.adopt(&ready);
    (stream.on_event)(SessionEvent::Ready(ready));
    loop {
        match stream.drive(&mut conn, &mut controls).await {
            Ok(acked) => {
                return Ok(SessionSummary {
                    session_id: stream.session_id,
                    model: stream.model,
                    acked_samples: acked,
                    sent_samples: stream.buffer.end(),
                    segments: stream.timeline.finals(),
                    resumed: stream.summary_resumed,
                    restarted: stream.summary_restarted,
                    lost_samples: stream.lost,
                });
            }
            Err(Interrupt::Fatal(e)) => return Err(e),
            Err(Interrupt::Dropped(reason)) => {
                drop(conn);
                if opts.reconnect_for.is_zero() {
                    return Err(endpoint.lost(reason));
                }
                tracing::warn!("connection to harkd lost ({reason}); reconnecting");
                (stream.on_event)(SessionEvent::Disconnected(reason.clone()));
                conn = stream.reconnect(&mut controls, reason).await?;
            }
        }
    }
}

impl<F: FnMut(SessionEvent)> Stream<'_, F> {
    /// Takes the session parameters of a `ready`.
    fn adopt(&mut self, ready: &Ready) {
        self.session_id = ready.session_id.clone();
        self.model = ready.model.clone();
        self.resume_window = Duration::from_secs(u64::from(ready.limits.resume_window_s));
        let limit = (ready.limits.max_frame_bytes as usize / 2).max(1);
        self.max_frame = MAX_FRAME_SAMPLES.min(limit);
    }

    /// Serves the stream on `conn` until the session closes (`Ok` with the acknowledged
    /// total) or the connection stops serving it.
    async fn drive(
        &mut self,
        conn: &mut Connection,
        controls: &mut mpsc::Receiver<Control>,
    ) -> Result<u64, Interrupt> {
        self.catch_up(conn).await?;
        let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY / 2);
        loop {
            tokio::select! {
                msg = conn.next() => {
                    let msg = msg.map_err(Interrupt::Dropped)?;
                    if let Some(acked) = self.handle(msg)? {
                        return Ok(acked);
                    }
                }
                ctl = controls.recv(), if !self.input_done => {
                    self.take(ctl);
                    self.catch_up(conn).await?;
                }
                _ = keepalive.tick() => {
                    if self.last_send.elapsed() >= KEEPALIVE_EVERY {
                        self.send_control(conn, &ClientMessage::Keepalive).await?;
                    }
                }
            }
        }
    }

    /// Records one control from the caller (audio goes to the replay buffer first).
    fn take(&mut self, ctl: Option<Control>) {
        match ctl {
            Some(Control::Audio(samples)) => self.buffer.push(&samples),
            Some(Control::Flush(id)) => self.pending_flushes.push(id),
            Some(Control::Close) | None => self.input_done = true,
        }
    }

    /// Sends everything the server does not have yet: audio, then flushes, then `close`.
    async fn catch_up(&mut self, conn: &mut Connection) -> Result<(), Interrupt> {
        while let Some(frame) = self.buffer.frame_from(self.sent, self.max_frame) {
            let n = (frame.len() / 2) as u64;
            conn.send_audio(frame).await.map_err(Interrupt::Dropped)?;
            self.sent += n;
            self.last_send = Instant::now();
        }
        for id in std::mem::take(&mut self.pending_flushes) {
            self.send_control(conn, &ClientMessage::Flush(Flush { id }))
                .await?;
        }
        if self.input_done && !self.close_sent {
            self.send_control(conn, &ClientMessage::Close).await?;
            self.close_sent = true;
        }
        Ok(())
    }

    async fn send_control(
        &mut self,
        conn: &mut Connection,
        msg: &ClientMessage,
    ) -> Result<(), Interrupt> {
        conn.send_control(msg).await.map_err(Interrupt::Dropped)?;
        self.last_send = Instant::now();
        Ok(())
    }

    /// Handles one server message; `Some(acked)` when it ends the session normally.
    fn handle(&mut self, msg: ServerMessage) -> Result<Option<u64>, Interrupt> {
        match msg {
            ServerMessage::SpeechStarted(s) => {
                let at = self.timeline.speech_started(s.at);
                (self.on_event)(SessionEvent::SpeechStarted(at));
            }
            ServerMessage::Partial(p) => {
                let p = self.timeline.partial(p);
                (self.on_event)(SessionEvent::Partial(p));
            }
            ServerMessage::Final(f) => {
                if let Some(f) = self.timeline.final_(f) {
                    (self.on_event)(SessionEvent::Final(f));
                }
            }
            ServerMessage::SpeechStopped(s) => {
                let at = self.timeline.speech_stopped(s.at);
                (self.on_event)(SessionEvent::SpeechStopped(at));
            }
            ServerMessage::Flushed(mut f) => {
                f.acked_samples = self.timeline.flushed(f.acked_samples);
                (self.on_event)(SessionEvent::Flushed(f));
            }
            ServerMessage::Error(e) if !e.fatal => (self.on_event)(SessionEvent::Warning(e)),
            // A restarting daemon is worth reconnecting to.
            ServerMessage::Error(e) if e.code == ErrorCode::ShuttingDown => {
                return Err(Interrupt::Dropped(format!(
                    "harkd is shutting down: {}",
                    e.message
                )));
            }
            ServerMessage::Error(e) => {
                return Err(Interrupt::Fatal(super::refusal(self.endpoint, e)));
            }
            ServerMessage::Closed(c) => {
                if self.close_sent {
                    return Ok(Some(self.timeline.position(c.acked_samples)));
                }
                // Closed without a fatal error before it and without our `close`.
                return Err(Interrupt::Fatal(RemoteError::Server {
                    code: ErrorCode::Unknown,
                    message: format!("the session was closed ({})", c.reason),
                }));
            }
            ServerMessage::Ready(_) => {
                tracing::warn!("ignoring a second `ready` from the server");
            }
        }
        self.trim();
        Ok(None)
    }

    /// Forgets audio no reconnection can need (never audio not yet sent).
    fn trim(&mut self) {
        let cap = self
            .buffer
            .end()
            .saturating_sub(MAX_REPLAY_S * u64::from(RATE));
        let keep = self.timeline.keep_from().max(cap).min(self.sent);
        self.buffer.trim_to(keep);
    }

    /// Reconnects after a drop, buffering the caller's audio meanwhile. Resumes the server
    /// session while its resume window lasts, then falls back to a fresh session.
    async fn reconnect(
        &mut self,
        controls: &mut mpsc::Receiver<Control>,
        mut reason: String,
    ) -> Result<Connection, RemoteError> {
        let dropped_at = Instant::now();
        let mut can_resume = !self.resume_window.is_zero();
        let mut refusals = 0;
        let mut delay = FIRST_RETRY;
        loop {
            if dropped_at.elapsed() > self.opts.reconnect_for {
                return Err(self.endpoint.lost(format!(
                    "{reason}; gave up after {} s",
                    self.opts.reconnect_for.as_secs()
                )));
            }
            self.buffer_for(delay, controls).await;
            // Leave a margin: a resume that arrives after the window is refused anyway.
            if dropped_at.elapsed() + Duration::from_secs(1) >= self.resume_window {
                can_resume = false;
            }
            let resume = can_resume.then(|| Resume {
                session_id: self.session_id.clone(),
                last_final_segment_id: self.timeline.last_session_final(),
            });
            let resuming = resume.is_some();
            let start = self.opts.start(resume);
            let attempt = {
                let open = Connection::open(self.endpoint, &start);
                tokio::pin!(open);
                loop {
                    tokio::select! {
                        result = &mut open => break result,
                        ctl = controls.recv(), if !self.input_done => self.take(ctl),
                    }
                }
            };
            match attempt {
                Ok((conn, ready)) => {
                    return self.reconnected(conn, ready, resuming);
                }
                Err(RemoteError::Server {
                    code: ErrorCode::ResumeFailed,
                    message,
                }) => {
                    // The daemon may not have noticed the drop yet (the session is parked
                    // only then): try again briefly before giving the session up.
                    refusals += 1;
                    if refusals >= RESUME_TRIES {
                        tracing::info!("resume refused ({message}); opening a fresh session");
                        can_resume = false;
                        delay = Duration::ZERO;
                    } else {
                        delay = RESUME_RETRY;
                    }
                }
                Err(e) if e.is_transient() => {
                    reason = e.to_string();
                    delay = (delay * 2).clamp(FIRST_RETRY, MAX_RETRY);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the caller's audio for `delay` (a live source keeps producing while offline).
    async fn buffer_for(&mut self, delay: Duration, controls: &mut mpsc::Receiver<Control>) {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                ctl = controls.recv(), if !self.input_done => self.take(ctl),
            }
        }
    }

    /// Sets the stream up on a new connection: where to send from, and how times map.
    fn reconnected(
        &mut self,
        conn: Connection,
        ready: Ready,
        resuming: bool,
    ) -> Result<Connection, RemoteError> {
        self.close_sent = false;
        let resumed = resuming && ready.resumed;
        let lost_s;
        if resumed {
            let from = self.timeline.resumed(ready.acked_samples);
            if from < self.buffer.base() || from > self.buffer.end() {
                return Err(self.endpoint.lost(format!(
                    "the resumed session holds {} s of audio, but this client kept {}–{} s",
                    seconds(from),
                    seconds(self.buffer.base()),
                    seconds(self.buffer.end())
                )));
            }
            self.sent = from;
            self.summary_resumed += 1;
            lost_s = 0.0;
        } else {
            let wanted = self.timeline.restart_point();
            let from = wanted.clamp(self.buffer.base(), self.buffer.end());
            let lost = from.saturating_sub(wanted);
            if lost > 0 {
                tracing::warn!(
                    "{:.1} s of audio could not be replayed to the new session",
                    seconds(lost)
                );
            }
            self.lost += lost;
            lost_s = seconds(lost);
            self.timeline.restart_fresh(from);
            self.sent = from;
            self.summary_restarted += 1;
            self.adopt(&ready);
            (self.on_event)(SessionEvent::Ready(ready));
        }
        (self.on_event)(SessionEvent::Reconnected { resumed, lost_s });
        Ok(conn)
    }
}
