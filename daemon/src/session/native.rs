//! The native protocol v1 at `/v1/listen` (protocol README, §1).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use hark_audio_io::StreamConverter;
use hark_model::Task;
use hark_protocol::{
    AudioSource, ClientMessage, CloseReason, Closed, ErrorCode, ErrorMessage, Final, Flushed,
    Partial, ProtocolError, Ready, ServerMessage, SpeechStarted, SpeechStopped, Start,
    effective_endpointing_ms, parse_client_text, validate_start,
};
use hark_streaming::Event;
use tokio::sync::OwnedSemaphorePermit;

use super::{
    ArrivalLog, ClientGone, Dispatch, Outbox, dispatch, open_link, recv, round_ms, samples_at,
    seconds, stream_config,
};
use crate::language::language_name;
use crate::metrics as m;
use crate::scheduler::{Output, StreamLink};
use crate::state::{AppState, Refusal};

/// Finals a session keeps for replay after a resume.
const KEPT_FINALS: usize = 256;
const ENDPOINT: &str = "native";

/// How a session ended, for the final `closed` and the close code.
enum End {
    /// A fatal `error` is to be sent.
    Fatal(ProtocolError),
    /// The client sent `close` and everything was finalised.
    ClientClose,
    /// The socket broke; nothing more can be sent.
    Gone,
}

impl End {
    fn with_field(self, field: &str) -> End {
        match self {
            End::Fatal(err) => End::Fatal(err.with_field(field)),
            other => other,
        }
    }
}

/// A running session: everything a resume needs.
pub struct Parked {
    run: Box<Running>,
}

impl Parked {
    /// Give up the session, keeping only its slot.
    pub fn into_permit(self) -> OwnedSemaphorePermit {
        self.run.permit
    }
}

struct Running {
    id: String,
    start: Start,
    permit: OwnedSemaphorePermit,
    link: StreamLink,
    converter: StreamConverter,
    /// Scratch for converted audio.
    mono: Vec<f32>,
    /// Sample frames received from the client.
    acked: u64,
    arrivals: ArrivalLog,
    /// Finals produced, for replay on resume (the last [`KEPT_FINALS`]).
    finals: VecDeque<Final>,
    /// Finals produced in the session.
    segments: u64,
    /// Pending flushes: token → (client id, acked samples when asked).
    flushes: HashMap<u64, (Option<String>, u64)>,
    /// Segment that already had its first partial (time-to-first-partial is per segment).
    first_partial_of: Option<u64>,
    /// Segment start, in stream samples, by segment id (for time-to-first-partial).
    segment_start: Option<(u64, u64)>,
    /// A `lagging` warning was sent and the lag has not recovered since.
    lagging: bool,
    /// `close` was received: the stream is finalising.
    closing: bool,
    /// Audio after `close` was reported once.
    reported_late_audio: bool,
    /// Fractional seconds of audio not yet counted in the audio counter.
    audio_carry: f64,
}

/// Serve one connection. `authorized` is the outcome of the credential check, done on the
/// HTTP request before the upgrade.
pub async fn serve(socket: WebSocket, state: Arc<AppState>, authorized: bool) {
    let _tracked = state.track_session();
    let (sink, mut stream) = socket.split();
    let out = Outbox::spawn(
        sink,
        Duration::from_secs(u64::from(state.config.send_timeout_s)),
    );
    if !authorized {
        refuse(
            out,
            &mut stream,
            ErrorCode::Unauthorized,
            "missing or wrong bearer token (send `Authorization: Bearer TOKEN` or `?token=TOKEN`)"
                .into(),
            None,
        )
        .await;
        return;
    }
    // A full server says so at once, but a slot is taken only by `start`: sockets that never
    // start hold none.
    if let Err(refusal) = state.has_room() {
        let (code, message, retry) = refusal_message(&state, refusal);
        refuse(out, &mut stream, code, message, retry).await;
        return;
    }
    let now = Instant::now();
    let session = Session {
        state: state.clone(),
        out,
        start_by: now + Duration::from_secs(u64::from(state.config.start_timeout_s)),
        run: None,
        last_frame: now,
    };
    session.serve(&mut stream).await;
}

fn refusal_message(state: &AppState, refusal: Refusal) -> (ErrorCode, String, Option<u32>) {
    let retry = Some(state.config.busy_retry_after_s);
    match refusal {
        Refusal::Busy => (
            ErrorCode::ServerBusy,
            format!("all {} stream slots are in use", state.config.max_sessions),
            retry,
        ),
        Refusal::Loading => (
            ErrorCode::ServerBusy,
            "the model is still loading".into(),
            retry,
        ),
        Refusal::ShuttingDown => (
            ErrorCode::ShuttingDown,
            "the server is stopping".into(),
            None,
        ),
    }
}

/// Refuse a connection before any session: `error`, `closed`, close.
async fn refuse(
    mut out: Outbox,
    stream: &mut SplitStream<WebSocket>,
    code: ErrorCode,
    message: String,
    retry_after_s: Option<u32>,
) {
    count_error(code);
    metrics::counter!(m::SESSIONS_REFUSED, "reason" => code.as_str()).increment(1);
    let error = ErrorMessage {
        code,
        message,
        fatal: true,
        field: None,
        retry_after_s,
    };
    let closed = Closed {
        reason: CloseReason::Error(code),
        acked_samples: 0,
        audio_s: 0.0,
        segments: 0,
    };
    if out
        .send(ServerMessage::Error(error).to_json())
        .await
        .is_ok()
        && out
            .send(ServerMessage::Closed(closed).to_json())
            .await
            .is_ok()
    {
        out.close(stream, code.close_code(), code.as_str()).await;
    } else {
        out.abandon();
    }
}

fn count_error(code: ErrorCode) {
    metrics::counter!(m::ERRORS, "code" => code.as_str()).increment(1);
}

struct Session {
    state: Arc<AppState>,
    out: Outbox,
    /// `start` must arrive before this.
    start_by: Instant,
    run: Option<Box<Running>>,
    last_frame: Instant,
}

impl Dispatch for Session {
    type End = End;
    const GONE: End = End::Gone;

    fn state(&self) -> &AppState {
        &self.state
    }

    fn link(&mut self) -> Option<&mut StreamLink> {
        self.run.as_mut().map(|r| &mut r.link)
    }

    fn idle_armed(&self) -> bool {
        !self.run.as_ref().is_some_and(|r| r.closing)
    }

    fn last_frame(&mut self) -> &mut Instant {
        &mut self.last_frame
    }

    fn start_deadline(&self) -> Option<(Instant, u32)> {
        self.run
            .is_none()
            .then_some((self.start_by, self.state.config.start_timeout_s))
    }

    async fn on_frame(&mut self, msg: Message) -> Result<(), End> {
        match msg {
            Message::Text(text) => match parse_client_text(text.as_str()) {
                Ok(msg) => self.on_message(msg).await,
                Err(err) => self.reject(err).await,
            },
            Message::Binary(bytes) => self.on_audio(&bytes).await,
            Message::Ping(_) | Message::Pong(_) => Ok(()),
            Message::Close(_) => Err(End::Gone),
        }
    }

    async fn on_output(&mut self, output: Option<Output>) -> Result<(), End> {
        let Some(output) = output else {
            // The worker dropped the stream without finishing it.
            return Err(internal_gone());
        };
        let run = self.run.as_mut().expect("outputs only while running");
        let msg = match output {
            Output::Event {
                event,
                position,
                backlog,
            } => match event {
                Event::SpeechStarted { segment_id, at } => {
                    run.segment_start = Some((segment_id, samples_at(at)));
                    // Without endpointing no voice detector runs: a segment opening is not
                    // voice activity.
                    run.vad().then(|| {
                        (
                            ServerMessage::SpeechStarted(SpeechStarted { at: round_ms(at) }),
                            false,
                        )
                    })
                }
                Event::Partial(p) => run
                    .partial_message(p, position, backlog)
                    .map(|p| (ServerMessage::Partial(p), true)),
                Event::Final(f) => {
                    let msg = run.final_message(f, position, backlog);
                    run.keep_final(msg.clone());
                    Some((ServerMessage::Final(msg), false))
                }
                Event::SpeechStopped { at, .. } => run.vad().then(|| {
                    (
                        ServerMessage::SpeechStopped(SpeechStopped { at: round_ms(at) }),
                        false,
                    )
                }),
                Event::Error { message, .. } => {
                    return Err(fatal(ErrorCode::Internal, message));
                }
            },
            Output::Flushed { token, .. } => {
                let (id, acked) = run.flushes.remove(&token).unwrap_or((None, run.acked));
                Some((
                    ServerMessage::Flushed(Flushed {
                        id,
                        acked_samples: acked,
                    }),
                    false,
                ))
            }
            Output::Finished { .. } => return Err(End::ClientClose),
        };
        let lag = run.lag_warning(self.state.config.lag_warning_s);
        if let Some((msg, sheddable)) = msg {
            if sheddable {
                self.out
                    .send_sheddable(msg.to_json())
                    .map_err(|ClientGone| End::Gone)?;
            } else {
                self.send(msg).await?;
            }
        }
        if let Some(lag_s) = lag {
            let err = ProtocolError::new(
                ErrorCode::Lagging,
                format!(
                    "the server is {lag_s:.1} s behind real time; partial updates are skipped until it catches up"
                ),
            );
            self.warn(&err).await?;
        }
        Ok(())
    }

    /// Finalise the open segment (delivering its final), then end with a fatal `code`.
    async fn finish(&mut self, code: ErrorCode, message: &str) -> End {
        if let Some(run) = self.run.as_mut() {
            if !run.closing {
                run.closing = true;
                if run.drain_converter().await.is_ok() {
                    run.link.close();
                }
            }
            let deadline =
                Instant::now() + Duration::from_secs(u64::from(self.state.config.shutdown_grace_s));
            loop {
                let link = self.run.as_mut().map(|r| &mut r.link);
                let output = match tokio::time::timeout_at(deadline.into(), recv(link)).await {
                    Ok(o) => o,
                    Err(_) => break,
                };
                match self.on_output(output).await {
                    Ok(()) => {}
                    Err(End::ClientClose) => break,
                    Err(other) => return other,
                }
            }
        }
        fatal(code, message)
    }
}

impl Session {
    async fn serve(mut self, stream: &mut SplitStream<WebSocket>) {
        let end = dispatch(&mut self, stream).await;
        self.end(end, stream).await;
    }

    async fn send(&mut self, msg: ServerMessage) -> Result<(), End> {
        self.out
            .send(msg.to_json())
            .await
            .map_err(|ClientGone| End::Gone)
    }

    /// Send a non-fatal error and go on.
    async fn warn(&mut self, err: &ProtocolError) -> Result<(), End> {
        count_error(err.code);
        let msg = ErrorMessage::from_error(err, true);
        debug_assert!(!msg.fatal);
        self.send(msg.into()).await
    }

    /// Route a client protocol error: non-fatal ones are reported and the session goes on.
    async fn reject(&mut self, err: ProtocolError) -> Result<(), End> {
        let started = self.run.is_some();
        if err.code.is_fatal(started) {
            Err(End::Fatal(err))
        } else {
            self.warn(&err).await
        }
    }

    async fn on_message(&mut self, msg: ClientMessage) -> Result<(), End> {
        match msg {
            ClientMessage::Start(start) => {
                if self.run.is_some() {
                    let err = ProtocolError::new(
                        ErrorCode::UnexpectedMessage,
                        "the session already started; `start` is sent once",
                    );
                    return self.warn(&err).await;
                }
                self.start(start).await
            }
            ClientMessage::Flush(flush) => {
                let Some(run) = self.run.as_mut() else {
                    let err = ProtocolError::new(
                        ErrorCode::UnexpectedMessage,
                        "`flush` before `start`: nothing to flush",
                    );
                    return self.warn(&err).await;
                };
                if run.closing {
                    return Ok(());
                }
                run.drain_converter().await.map_err(|_| internal_gone())?;
                let token = run.link.flush();
                run.flushes.insert(token, (flush.id, run.acked));
                Ok(())
            }
            ClientMessage::Close => {
                let Some(run) = self.run.as_mut() else {
                    return Err(End::ClientClose);
                };
                if !run.closing {
                    run.closing = true;
                    run.drain_converter().await.map_err(|_| internal_gone())?;
                    run.link.close();
                }
                Ok(())
            }
            ClientMessage::Keepalive => Ok(()),
        }
    }

    async fn start(&mut self, start: Start) -> Result<(), End> {
        if let Err(err) = validate_start(&start, &self.state.limits) {
            return self.reject(err).await;
        }
        let task = match task_of(&start, &self.state.config.default_language) {
            Ok(task) => task,
            Err(err) => return self.reject(err).await,
        };
        if let Some(resume) = start.resume.clone() {
            return self.resume(start, resume).await;
        }
        let permit = match self.state.admit_now() {
            Ok(permit) => permit,
            Err(refusal) => {
                let (code, message, _) = refusal_message(&self.state, refusal);
                metrics::counter!(m::SESSIONS_REFUSED, "reason" => code.as_str()).increment(1);
                return Err(fatal(code, message));
            }
        };
        let endpointing = effective_endpointing_ms(&start);
        let cfg = stream_config(
            &self.state,
            task,
            (endpointing > 0).then_some(endpointing),
            None,
            start.partials,
        );
        let converter = StreamConverter::new(start.sample_rate, start.channels).map_err(|e| {
            fatal(ErrorCode::UnsupportedSampleRate, e.to_string()).with_field("sample_rate")
        })?;
        let link = open_link(&self.state, cfg).await.map_err(|e| {
            tracing::error!("cannot open a stream: {e}");
            fatal(ErrorCode::Internal, format!("cannot open a stream: {e}"))
        })?;
        let id = format!("s-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        tracing::info!(
            session = %id,
            label = start.label.as_deref().unwrap_or(""),
            rate = start.sample_rate,
            channels = start.channels,
            encoding = %start.encoding,
            worker = link.worker(),
            "session started"
        );
        metrics::counter!(m::SESSIONS_TOTAL, "endpoint" => ENDPOINT).increment(1);
        self.run = Some(Box::new(Running {
            id,
            start,
            permit,
            link,
            converter,
            mono: Vec::new(),
            acked: 0,
            arrivals: ArrivalLog::default(),
            finals: VecDeque::new(),
            segments: 0,
            flushes: HashMap::new(),
            first_partial_of: None,
            segment_start: None,
            lagging: false,
            closing: false,
            reported_late_audio: false,
            audio_carry: 0.0,
        }));
        self.send_ready(false).await
    }

    async fn send_ready(&mut self, resumed: bool) -> Result<(), End> {
        metrics::gauge!(m::SESSIONS_ACTIVE, "endpoint" => ENDPOINT).increment(1.0);
        let run = self.run.as_ref().expect("running");
        let ready = Ready {
            v: hark_protocol::PROTOCOL_VERSION,
            session_id: run.id.clone(),
            model: self
                .state
                .model()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            resumed,
            acked_samples: run.acked,
            endpointing_ms: effective_endpointing_ms(&run.start),
            limits: self.state.limits.clone(),
        };
        self.send(ServerMessage::Ready(ready)).await
    }

    /// `start` with `resume`: take the parked session back (protocol §1.6).
    async fn resume(&mut self, start: Start, resume: hark_protocol::Resume) -> Result<(), End> {
        let failed =
            |why: String| fatal(ErrorCode::ResumeFailed, why).with_field("resume.session_id");
        let Some(parked) = self.state.parked.take(&resume.session_id) else {
            return Err(failed(format!(
                "session `{}` is unknown or its resume window expired; start a new session",
                resume.session_id
            )));
        };
        let mut run = parked.run;
        let same_format = run.start.sample_rate == start.sample_rate
            && run.start.encoding == start.encoding
            && run.start.channels == start.channels;
        if !same_format {
            // The session cannot continue with another format; it is dropped.
            return Err(failed(format!(
                "the audio format differs from the session's ({} Hz, {}, {} channel(s))",
                run.start.sample_rate, run.start.encoding, run.start.channels
            )));
        }
        run.closing = false;
        // Results produced while the client was away: keep finals, drop the rest.
        while let Some(output) = run.link.try_recv() {
            match output {
                Output::Event {
                    event: Event::Final(f),
                    position,
                    backlog,
                } => {
                    let msg = run.final_message(f, position, backlog);
                    run.keep_final(msg);
                }
                Output::Event {
                    event: Event::Error { message, .. },
                    ..
                } => return Err(fatal(ErrorCode::Internal, message)),
                _ => {}
            }
        }
        let replay: Vec<Final> = run
            .finals
            .iter()
            .filter(|f| {
                resume
                    .last_final_segment_id
                    .is_none_or(|last| f.segment_id > last)
            })
            .cloned()
            .collect();
        tracing::info!(session = %run.id, acked = run.acked, replayed = replay.len(), "session resumed");
        metrics::counter!(m::SESSIONS_RESUMED).increment(1);
        self.run = Some(run);
        self.send_ready(true).await?;
        for f in replay {
            self.send(ServerMessage::Final(f)).await?;
        }
        Ok(())
    }

    async fn on_audio(&mut self, bytes: &[u8]) -> Result<(), End> {
        let limits = &self.state.limits;
        let Some(run) = self.run.as_mut() else {
            return Err(fatal(
                ErrorCode::AudioBeforeStart,
                "binary audio frame before `start`; send `start` first",
            ));
        };
        if run.closing {
            if !run.reported_late_audio {
                run.reported_late_audio = true;
                let err = ProtocolError::new(
                    ErrorCode::UnexpectedMessage,
                    "audio after `close` is discarded",
                );
                return self.warn(&err).await;
            }
            return Ok(());
        }
        limits.check_frame(bytes.len()).map_err(End::Fatal)?;
        let samples = hark_protocol::decode_pcm(run.start.encoding, run.start.channels, bytes)
            .map_err(End::Fatal)?;
        let channels = usize::from(run.start.channels);
        let mut frames = (samples.len() / channels) as u64;
        let rate = u64::from(run.start.sample_rate);
        let max_frames = u64::from(limits.max_session_s) * rate;
        let over = max_frames > 0 && run.acked + frames >= max_frames;
        if over {
            frames = max_frames.saturating_sub(run.acked);
        }
        if frames > 0 {
            run.push_audio(&samples[..frames as usize * channels], frames)
                .await
                .map_err(|_| internal_gone())?;
        }
        if over {
            let limit = limits.max_session_s;
            return Err(self
                .finish(
                    ErrorCode::SessionTooLong,
                    &format!("the session reached its limit of {limit} s of audio"),
                )
                .await);
        }
        Ok(())
    }

    /// Send the last messages and close the socket (or park the session).
    async fn end(self, end: End, stream: &mut SplitStream<WebSocket>) {
        let Session {
            state, out, run, ..
        } = self;
        if run.is_some() {
            metrics::gauge!(m::SESSIONS_ACTIVE, "endpoint" => ENDPOINT).decrement(1.0);
        }
        match end {
            End::Gone => {
                out.abandon();
                let Some(run) = run else {
                    metrics::counter!(m::DISCONNECTS, "reason" => "client_gone").increment(1);
                    return;
                };
                let window = state.limits.resume_window_s;
                if window > 0 && !run.closing && !state.is_shutting_down() {
                    metrics::counter!(m::DISCONNECTS, "reason" => "resumable").increment(1);
                    tracing::info!(session = %run.id, "connection dropped; resumable for {window} s");
                    let id = run.id.clone();
                    state.parked.park(
                        id,
                        Box::new(Parked { run }),
                        Duration::from_secs(u64::from(window)),
                    );
                } else {
                    metrics::counter!(m::DISCONNECTS, "reason" => "client_gone").increment(1);
                    tracing::info!(session = %run.id, "connection dropped");
                }
            }
            End::ClientClose | End::Fatal(..) => {
                let (reason, code) = match &end {
                    End::Fatal(err) => (CloseReason::Error(err.code), err.code.close_code()),
                    _ => (CloseReason::ClientClose, 1000),
                };
                let mut out = out;
                let mut ok = true;
                if let End::Fatal(err) = &end {
                    count_error(err.code);
                    let mut msg = ErrorMessage::from_error(err, true);
                    msg.fatal = true;
                    if err.code == ErrorCode::ServerBusy {
                        msg.retry_after_s = Some(state.config.busy_retry_after_s);
                    }
                    ok = out.send(ServerMessage::Error(msg).to_json()).await.is_ok();
                }
                let (acked, rate, segments) = run
                    .as_ref()
                    .map_or((0, 0, 0), |r| (r.acked, r.start.sample_rate, r.segments));
                let closed = Closed {
                    reason,
                    acked_samples: acked,
                    audio_s: round_ms(hark_protocol::frames_to_seconds(acked, rate)),
                    segments,
                };
                if let Some(r) = &run {
                    tracing::info!(session = %r.id, reason = %reason, audio_s = closed.audio_s, segments, "session closed");
                }
                ok = ok
                    && out
                        .send(ServerMessage::Closed(closed).to_json())
                        .await
                        .is_ok();
                if ok {
                    out.close(stream, code, reason.as_str()).await;
                } else {
                    out.abandon();
                }
            }
        }
    }
}

/// The model instruction a `start` asks for. A language tag the server cannot name is
/// `invalid_field`.
fn task_of(start: &Start, default_language: &str) -> Result<Task, ProtocolError> {
    let name = |tag: &str, field: &str| {
        language_name(tag).ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::InvalidField,
                format!("language `{tag}` is not one this server knows"),
            )
            .with_field(field)
        })
    };
    let source = name(
        start.language.as_deref().unwrap_or(default_language),
        "language",
    )?;
    Ok(match (&start.task, &start.target_language) {
        (hark_protocol::Task::Translate, Some(target)) => Task::Translate {
            source: source.into(),
            target: name(target, "target_language")?.into(),
        },
        _ => Task::Transcribe {
            language: source.into(),
        },
    })
}

fn fatal(code: ErrorCode, message: impl Into<String>) -> End {
    End::Fatal(ProtocolError::new(code, message))
}

fn internal_gone() -> End {
    fatal(ErrorCode::Internal, "the stream stopped unexpectedly")
}

impl Running {
    /// Whether voice activity detection runs (silence endpointing on).
    fn vad(&self) -> bool {
        effective_endpointing_ms(&self.start) > 0
    }

    /// Convert and queue `frames` sample frames of interleaved audio.
    async fn push_audio(
        &mut self,
        samples: &[f32],
        frames: u64,
    ) -> Result<(), crate::scheduler::LinkClosed> {
        let mut mono = std::mem::take(&mut self.mono);
        mono.clear();
        self.converter.push(samples, &mut mono);
        let pushed = self.link.push(&mono).await;
        self.mono = mono;
        pushed?;
        self.acked += frames;
        self.arrivals.record(self.link.pushed(), Instant::now());
        self.audio_carry += frames as f64 / f64::from(self.start.sample_rate);
        if self.audio_carry >= 1.0 {
            let whole = self.audio_carry.floor();
            self.audio_carry -= whole;
            metrics::counter!(m::AUDIO_SECONDS, "endpoint" => ENDPOINT).increment(whole as u64);
        }
        Ok(())
    }

    /// Push what the resampler holds back, so a flush or close covers all audio received.
    async fn drain_converter(&mut self) -> Result<(), crate::scheduler::LinkClosed> {
        let mut tail = Vec::new();
        // A dangling partial frame cannot happen: frames are checked whole.
        let _ = self.converter.finish(&mut tail);
        if tail.is_empty() {
            return Ok(());
        }
        self.link.push(&tail).await?;
        self.arrivals.record(self.link.pushed(), Instant::now());
        Ok(())
    }

    fn lag_s(&self, position: u64) -> f64 {
        seconds(self.link.pushed().saturating_sub(position))
    }

    fn partial_message(
        &mut self,
        p: hark_streaming::Partial,
        position: u64,
        _backlog: u64,
    ) -> Option<Partial> {
        if !self.start.partials {
            return None;
        }
        let now = Instant::now();
        if self.first_partial_of != Some(p.segment_id) {
            self.first_partial_of = Some(p.segment_id);
            let start = match self.segment_start {
                Some((id, start)) if id == p.segment_id => start,
                _ => samples_at(p.start),
            };
            metrics::histogram!(m::TIME_TO_FIRST_PARTIAL)
                .record(self.arrivals.latency_s(start, now));
        }
        let lag = self.lag_s(position);
        metrics::histogram!(m::LAG).record(lag);
        metrics::counter!(m::PARTIALS).increment(1);
        Some(Partial {
            segment_id: p.segment_id,
            committed: p.committed,
            tentative: p.tentative,
            start: round_ms(p.start),
            end: round_ms(p.end),
            acked_samples: self.acked,
            lag_s: round_ms(lag),
            emit_latency_s: round_ms(self.arrivals.latency_s(samples_at(p.end), now)),
        })
    }

    fn final_message(&mut self, f: hark_streaming::Final, position: u64, _backlog: u64) -> Final {
        let now = Instant::now();
        let lag = self.lag_s(position);
        let latency = self.arrivals.latency_s(samples_at(f.end), now);
        metrics::histogram!(m::LAG).record(lag);
        metrics::histogram!(m::TIME_TO_FINAL).record(latency);
        metrics::counter!(m::FINALS).increment(1);
        Final {
            segment_id: f.segment_id,
            text: f.text,
            start: round_ms(f.start),
            end: round_ms(f.end),
            acked_samples: self.acked,
            lag_s: round_ms(lag),
            emit_latency_s: round_ms(latency),
        }
    }

    fn keep_final(&mut self, f: Final) {
        self.segments += 1;
        if self.finals.len() == KEPT_FINALS {
            self.finals.pop_front();
        }
        self.finals.push_back(f);
    }

    /// The lag to warn about, once per episode: set above the threshold, re-armed below half.
    /// A file sent faster than real time is behind by design: no warning there.
    fn lag_warning(&mut self, threshold: f64) -> Option<f64> {
        if self.start.source == AudioSource::File {
            return None;
        }
        let lag = seconds(self.link.backlog());
        if !self.lagging && lag > threshold {
            self.lagging = true;
            return Some(lag);
        }
        if self.lagging && lag < threshold / 2.0 {
            self.lagging = false;
        }
        None
    }
}
