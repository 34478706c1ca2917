//! OpenAI Realtime transcription sessions at `/v1/realtime` (protocol README, §2).
//!
//! The session keeps a [`TranscriptionConfig`] and a queue of engine streams: the newest
//! takes the appended audio; older ones are finishing after a `session.update` that changed
//! the audio format, language or turn detection, and their results are sent first, so events
//! stay in audio order. `clear` aborts the newest stream (its uncommitted audio and open
//! item are dropped); `commit` flushes it.
//!
//! Events follow OpenAI's order for an item: `speech_started`, `speech_stopped`,
//! `committed`, `conversation.item.added` + `.done` (GA) or `.created` (beta), then the
//! transcription `delta` and `completed`. The engine's partial hypotheses are therefore not
//! sent here (OpenAI sends no text before the commit); the native protocol streams them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use hark_audio_io::StreamConverter;
use hark_model::Task;
use hark_protocol::openai::{
    ClientEvent, ErrorDetail, Item as ItemObject, LogProb, ServerEvent, TranscriptionConfig,
    TurnDetectionType, Usage, decode_audio_as, parse_client_event,
};
use hark_protocol::{ErrorCode, ProtocolError};
use hark_streaming::{Event, FinalReason};
use tokio::sync::OwnedSemaphorePermit;

use super::{
    ArrivalLog, ClientGone, Dispatch, Outbox, dispatch, open_link, recv, samples_at, seconds,
    stream_config,
};
use crate::language::language_name;
use crate::metrics as m;
use crate::scheduler::{Output, StreamLink};
use crate::state::{AppState, Refusal};

const ENDPOINT: &str = "openai";

/// Codes that close an OpenAI session; every other error leaves it open (as OpenAI does).
fn closes_session(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::MessageTooLarge
            | ErrorCode::IdleTimeout
            | ErrorCode::SessionTooLong
            | ErrorCode::ServerBusy
            | ErrorCode::Unauthorized
            | ErrorCode::ShuttingDown
            | ErrorCode::Internal
    )
}

/// Serve one connection; `beta` when the client asked for the beta interface
/// (`OpenAI-Beta: realtime=v1`).
pub async fn serve(socket: WebSocket, state: Arc<AppState>, authorized: bool, beta: bool) {
    let _tracked = state.track_session();
    let (sink, mut stream) = socket.split();
    let out = Outbox::spawn(
        sink,
        Duration::from_secs(u64::from(state.config.send_timeout_s)),
    );
    let refusal = if !authorized {
        Some(ProtocolError::new(
            ErrorCode::Unauthorized,
            "missing or wrong bearer token (send `Authorization: Bearer TOKEN` or `?token=TOKEN`)",
        ))
    } else {
        None
    };
    // A full server says so at once, but a slot is taken only by the first audio: sockets
    // that never append hold none (and are closed after `start_timeout_s`).
    let admitted = match refusal {
        Some(err) => Err(err),
        None => state
            .has_room()
            .map_err(|refusal| refusal_error(&state, refusal)),
    };
    if let Err(err) = admitted {
        metrics::counter!(m::SESSIONS_REFUSED, "reason" => err.code.as_str()).increment(1);
        let session = Realtime::new(state, out, beta);
        session.close_with(err, &mut stream).await;
        return;
    }
    let session = Realtime::new(state, out, beta);
    session.serve(&mut stream).await;
}

fn refusal_error(state: &AppState, refusal: Refusal) -> ProtocolError {
    match refusal {
        Refusal::Busy => ProtocolError::new(
            ErrorCode::ServerBusy,
            format!("all {} stream slots are in use", state.config.max_sessions),
        ),
        Refusal::Loading => ProtocolError::new(ErrorCode::ServerBusy, "the model is still loading"),
        Refusal::ShuttingDown => {
            ProtocolError::new(ErrorCode::ShuttingDown, "the server is stopping")
        }
    }
}

/// One engine stream of the session.
struct Link {
    link: StreamLink,
    converter: StreamConverter,
    /// Session samples (16 kHz) before this stream's first sample.
    offset: u64,
    /// Whether server VAD drives this stream (else the client commits).
    vad: bool,
    /// Pending commits: flush token → (client event id, finals sent before the commit).
    commits: HashMap<u64, (Option<String>, u64)>,
}

/// The item (utterance) being transcribed.
struct Item {
    id: String,
    partials: u64,
    /// Session sample where its audio starts.
    start: u64,
}

/// The engine settings a configuration implies; a change needs a new stream.
#[derive(Clone, PartialEq)]
struct EngineKey {
    rate: u32,
    endpointing_ms: Option<u32>,
    pre_roll_ms: Option<u32>,
    language: String,
}

struct Realtime {
    state: Arc<AppState>,
    out: Outbox,
    /// The session slot, taken by the first audio.
    permit: Option<OwnedSemaphorePermit>,
    /// When a connection that has sent no audio is closed.
    audio_by: Instant,
    id: String,
    beta: bool,
    config: TranscriptionConfig,
    links: VecDeque<Link>,
    item: Option<Item>,
    previous_item: Option<String>,
    /// Session samples appended since the last item boundary (what `commit` would commit).
    uncommitted: u64,
    /// Session samples pushed (16 kHz).
    samples: u64,
    /// Seconds of client audio received.
    audio_s: f64,
    audio_carry: f64,
    finals: u64,
    arrivals: ArrivalLog,
    last_frame: Instant,
    /// A keepalive ping went out and no frame has come since.
    pinged: bool,
    active: bool,
}

/// How the session ends.
enum End {
    Fatal(ProtocolError),
    Gone,
}

impl Dispatch for Realtime {
    type End = End;
    const GONE: End = End::Gone;

    fn state(&self) -> &AppState {
        &self.state
    }

    fn link(&mut self) -> Option<&mut StreamLink> {
        self.links.front_mut().map(|l| &mut l.link)
    }

    fn last_frame(&mut self) -> &mut Instant {
        &mut self.last_frame
    }

    fn start_deadline(&self) -> Option<(Instant, u32)> {
        self.permit
            .is_none()
            .then_some((self.audio_by, self.state.config.start_timeout_s))
    }

    fn what_starts(&self) -> &'static str {
        "`input_audio_buffer.append`"
    }

    async fn on_frame(&mut self, msg: Message) -> Result<(), End> {
        self.pinged = false;
        match msg {
            Message::Text(text) => match parse_client_event(text.as_str()) {
                Ok(event) => self.on_event(event).await,
                Err(rejected) => {
                    self.reject(rejected.error, rejected.event_id.as_deref())
                        .await
                }
            },
            // OpenAI answers a binary frame with an error event and keeps the session.
            Message::Binary(_) => {
                let err = ProtocolError::new(
                    ErrorCode::TextExpected,
                    "binary frames are not part of the Realtime API; send input_audio_buffer.append events",
                );
                self.reject(err, None).await
            }
            Message::Ping(_) | Message::Pong(_) => Ok(()),
            Message::Close(_) => Err(End::Gone),
        }
    }

    async fn on_output(&mut self, output: Option<Output>) -> Result<(), End> {
        let Some(front) = self.links.front() else {
            return Ok(());
        };
        let (offset, vad) = (front.offset, front.vad);
        let Some(output) = output else {
            return Err(internal_gone());
        };
        match output {
            Output::Event {
                event, position, ..
            } => self.on_event_output(event, offset, vad, position).await,
            Output::Flushed { token, .. } => {
                let commit = self
                    .links
                    .front_mut()
                    .and_then(|l| l.commits.remove(&token));
                if let Some((_, finals_before)) = commit
                    && finals_before == self.finals
                {
                    // The committed audio held no speech: an item with an empty transcript.
                    let id = match self.item.take() {
                        Some(item) => item.id,
                        None => self.item_id(),
                    };
                    let logprobs = self.config.wants_logprobs().then(Vec::new);
                    self.complete(id, String::new(), 0.0, logprobs).await?;
                }
                Ok(())
            }
            Output::Finished { .. } => {
                self.links.pop_front();
                Ok(())
            }
        }
    }

    /// A quiet session stays open, as on OpenAI (push-to-talk apps send nothing between
    /// turns): it is pinged, and only a connection that does not answer within another
    /// `idle` is closed as dead.
    async fn on_idle(&mut self, idle: Duration) -> Result<(), End> {
        if self.pinged {
            let message = format!("no answer to a ping for {} s", idle.as_secs());
            return Err(self.finish(ErrorCode::IdleTimeout, &message).await);
        }
        self.out.ping().map_err(|ClientGone| End::Gone)?;
        self.pinged = true;
        self.last_frame = Instant::now();
        Ok(())
    }

    /// Finalise every stream (delivering its results), then end with a fatal `code`.
    async fn finish(&mut self, code: ErrorCode, message: &str) -> End {
        let deadline =
            Instant::now() + Duration::from_secs(u64::from(self.state.config.shutdown_grace_s));
        if let Err(end) = self.close_current().await {
            return end;
        }
        while !self.links.is_empty() {
            let link = self.links.front_mut().map(|l| &mut l.link);
            let output = match tokio::time::timeout_at(deadline.into(), recv(link)).await {
                Ok(o) => o,
                Err(_) => break,
            };
            if let Err(end) = self.on_output(output).await {
                return end;
            }
        }
        End::Fatal(ProtocolError::new(code, message))
    }
}

impl Realtime {
    fn new(state: Arc<AppState>, out: Outbox, beta: bool) -> Self {
        let model = state
            .model()
            .map(|m| m.name.clone())
            .unwrap_or_else(|| "hark".into());
        let mut config = TranscriptionConfig::new(model);
        config.expires_at = expires_at(state.limits.max_session_s);
        Self {
            out,
            permit: None,
            audio_by: Instant::now() + Duration::from_secs(u64::from(state.config.start_timeout_s)),
            id: unique_id("sess"),
            beta,
            config,
            links: VecDeque::new(),
            item: None,
            previous_item: None,
            uncommitted: 0,
            samples: 0,
            audio_s: 0.0,
            audio_carry: 0.0,
            finals: 0,
            arrivals: ArrivalLog::default(),
            last_frame: Instant::now(),
            pinged: false,
            active: false,
            state,
        }
    }

    fn event_id(&mut self) -> String {
        unique_id("event")
    }

    fn item_id(&mut self) -> String {
        unique_id("item")
    }

    async fn send(&mut self, event: ServerEvent) -> Result<(), End> {
        self.out
            .send(event.to_json())
            .await
            .map_err(|ClientGone| End::Gone)
    }

    /// Report a client error; the session stays open unless the code closes it.
    async fn reject(&mut self, err: ProtocolError, event_id: Option<&str>) -> Result<(), End> {
        if closes_session(err.code) {
            return Err(End::Fatal(err));
        }
        metrics::counter!(m::ERRORS, "code" => err.code.as_str()).increment(1);
        let event = ServerEvent::Error {
            event_id: self.event_id(),
            error: ErrorDetail::from_error(&err, event_id),
        };
        self.send(event).await
    }

    async fn serve(mut self, stream: &mut SplitStream<WebSocket>) {
        self.active = true;
        metrics::gauge!(m::SESSIONS_ACTIVE, "endpoint" => ENDPOINT).increment(1.0);
        metrics::counter!(m::SESSIONS_TOTAL, "endpoint" => ENDPOINT).increment(1);
        tracing::info!(session = %self.id, beta = self.beta, "realtime session started");
        let created = if self.beta {
            ServerEvent::TranscriptionSessionCreated {
                event_id: self.event_id(),
                session: self.config.beta_session(&self.id),
            }
        } else {
            ServerEvent::SessionCreated {
                event_id: self.event_id(),
                session: self.config.session(&self.id),
            }
        };
        let end = match self.send(created).await {
            Ok(()) => dispatch(&mut self, stream).await,
            Err(end) => end,
        };
        match end {
            End::Gone => {
                metrics::counter!(m::DISCONNECTS, "reason" => "client_gone").increment(1);
                tracing::info!(session = %self.id, "connection dropped");
                metrics::gauge!(m::SESSIONS_ACTIVE, "endpoint" => ENDPOINT).decrement(1.0);
                self.out.abandon();
            }
            End::Fatal(err) => self.close_with(err, stream).await,
        }
    }

    async fn on_event(&mut self, event: ClientEvent) -> Result<(), End> {
        let event_id = event.event_id().map(str::to_owned);
        let event_id = event_id.as_deref();
        match event {
            ClientEvent::SessionUpdate { session, .. } => {
                let mut next = self.config.clone();
                if let Err(err) = next.apply(&session, &self.state.limits) {
                    return self.reject(err, event_id).await;
                }
                if !self
                    .reconfigure(next, "session.audio.input.transcription.language", event_id)
                    .await?
                {
                    return Ok(());
                }
                let event = ServerEvent::SessionUpdated {
                    event_id: self.event_id(),
                    session: self.config.session(&self.id),
                };
                self.send(event).await
            }
            ClientEvent::TranscriptionSessionUpdate { session, .. } => {
                let mut next = self.config.clone();
                if let Err(err) = next.apply_beta(&session) {
                    return self.reject(err, event_id).await;
                }
                if !self
                    .reconfigure(next, "session.input_audio_transcription.language", event_id)
                    .await?
                {
                    return Ok(());
                }
                let event = ServerEvent::TranscriptionSessionUpdated {
                    event_id: self.event_id(),
                    session: self.config.beta_session(&self.id),
                };
                self.send(event).await
            }
            ClientEvent::InputAudioBufferAppend { audio, .. } => {
                match decode_audio_as(&audio, self.config.encoding) {
                    Ok(samples) => self.append(&samples).await,
                    Err(err) => self.reject(err, event_id).await,
                }
            }
            ClientEvent::InputAudioBufferCommit { .. } => self.commit(event_id).await,
            ClientEvent::InputAudioBufferClear { .. } => {
                if self.links.back().is_some_and(|l| !l.link.is_closed()) {
                    // Dropping the stream aborts it: its queued audio and open item go.
                    self.links.pop_back();
                }
                self.item = None;
                self.uncommitted = 0;
                let event = ServerEvent::Cleared {
                    event_id: self.event_id(),
                };
                self.send(event).await
            }
        }
    }

    /// Adopt a validated configuration; a new stream is started for later audio when the
    /// engine settings changed.
    async fn reconfigure(
        &mut self,
        next: TranscriptionConfig,
        language_field: &str,
        event_id: Option<&str>,
    ) -> Result<bool, End> {
        if let Some(tag) = next.language()
            && language_name(tag).is_none()
        {
            let err = ProtocolError::new(
                ErrorCode::InvalidField,
                format!("language `{tag}` is not one this server knows"),
            )
            .with_field(language_field);
            // Rejected: nothing changes and no `session.updated` follows the error.
            self.reject(err, event_id).await?;
            return Ok(false);
        }
        let default = &self.state.config.default_language;
        let changed = engine_key(&self.config, default) != engine_key(&next, default);
        self.config = next;
        if changed {
            self.close_current().await?;
        }
        Ok(true)
    }

    /// Finish the stream taking audio (it keeps delivering its results).
    async fn close_current(&mut self) -> Result<(), End> {
        if let Some(l) = self.links.back_mut()
            && !l.link.is_closed()
        {
            let mut tail = Vec::new();
            let _ = l.converter.finish(&mut tail);
            if !tail.is_empty() {
                l.link.push(&tail).await.map_err(|_| internal_gone())?;
                self.samples += tail.len() as u64;
            }
            l.link.close();
        }
        Ok(())
    }

    /// The stream taking audio, opened on first use with the current configuration.
    async fn current(&mut self) -> Result<&mut Link, End> {
        if self.permit.is_none() {
            let permit = self.state.admit_now().map_err(|refusal| {
                let err = refusal_error(&self.state, refusal);
                metrics::counter!(m::SESSIONS_REFUSED, "reason" => err.code.as_str()).increment(1);
                End::Fatal(err)
            })?;
            self.permit = Some(permit);
        }
        if self.links.back().is_none_or(|l| l.link.is_closed()) {
            let key = engine_key(&self.config, &self.state.config.default_language);
            let language = language_name(&key.language).unwrap_or("English");
            let cfg = stream_config(
                &self.state,
                Task::Transcribe {
                    language: language.into(),
                },
                key.endpointing_ms,
                key.pre_roll_ms,
                true,
            );
            let link = open_link(&self.state, cfg).await.map_err(|e| {
                tracing::error!("cannot open a stream: {e}");
                End::Fatal(ProtocolError::new(
                    ErrorCode::Internal,
                    format!("cannot open a stream: {e}"),
                ))
            })?;
            let converter = StreamConverter::new(key.rate, 1)
                .map_err(|e| End::Fatal(ProtocolError::new(ErrorCode::Internal, e.to_string())))?;
            self.links.push_back(Link {
                link,
                converter,
                offset: self.samples,
                vad: key.endpointing_ms.is_some(),
                commits: HashMap::new(),
            });
        }
        Ok(self.links.back_mut().expect("just ensured"))
    }

    async fn append(&mut self, samples: &[f32]) -> Result<(), End> {
        let limit = f64::from(self.state.limits.max_session_s);
        let rate = self.config.sample_rate;
        let mut take = samples.len();
        let over = limit > 0.0 && self.audio_s + take as f64 / f64::from(rate) >= limit;
        if over {
            take = (((limit - self.audio_s) * f64::from(rate)).ceil().max(0.0) as usize).min(take);
        }
        if take > 0 {
            let link = self.current().await?;
            let mut mono = Vec::new();
            link.converter.push(&samples[..take], &mut mono);
            link.link.push(&mono).await.map_err(|_| internal_gone())?;
            self.samples += mono.len() as u64;
            self.uncommitted += mono.len() as u64;
            self.arrivals.record(self.samples, Instant::now());
            let secs = take as f64 / f64::from(rate);
            self.audio_s += secs;
            self.audio_carry += secs;
            if self.audio_carry >= 1.0 {
                let whole = self.audio_carry.floor();
                self.audio_carry -= whole;
                metrics::counter!(m::AUDIO_SECONDS, "endpoint" => ENDPOINT).increment(whole as u64);
            }
        }
        if over {
            let limit = self.state.limits.max_session_s;
            return Err(self
                .finish(
                    ErrorCode::SessionTooLong,
                    &format!("the session reached its limit of {limit} s of audio"),
                )
                .await);
        }
        Ok(())
    }

    async fn commit(&mut self, event_id: Option<&str>) -> Result<(), End> {
        let open = self.links.back().is_some_and(|l| !l.link.is_closed());
        if self.uncommitted == 0 || !open {
            let err = ProtocolError::new(
                ErrorCode::UnexpectedMessage,
                "the input audio buffer is empty: nothing to commit",
            );
            return self.reject(err, event_id).await;
        }
        let finals = self.finals;
        let link = self.links.back_mut().expect("checked");
        let mut tail = Vec::new();
        let _ = link.converter.finish(&mut tail);
        if !tail.is_empty() {
            link.link.push(&tail).await.map_err(|_| internal_gone())?;
            self.samples += tail.len() as u64;
        }
        let token = link.link.flush();
        link.commits
            .insert(token, (event_id.map(str::to_owned), finals));
        self.uncommitted = 0;
        Ok(())
    }

    fn open_item(&mut self, start: u64) -> &mut Item {
        if self.item.is_none() {
            let id = self.item_id();
            self.item = Some(Item {
                id,
                partials: 0,
                start,
            });
        }
        self.item.as_mut().expect("just ensured")
    }

    async fn on_event_output(
        &mut self,
        event: Event,
        offset: u64,
        vad: bool,
        position: u64,
    ) -> Result<(), End> {
        let now = Instant::now();
        match event {
            Event::SpeechStarted { at, .. } => {
                let start = offset + samples_at(at);
                self.item = None;
                let id = self.open_item(start).id.clone();
                if vad {
                    let event = ServerEvent::SpeechStarted {
                        event_id: self.event_id(),
                        audio_start_ms: ms(start),
                        item_id: id,
                    };
                    self.send(event).await?;
                }
                Ok(())
            }
            // OpenAI sends no text before an item is committed: partials only open the item.
            Event::Partial(p) => {
                let start = offset + samples_at(p.start);
                let item = self.open_item(start);
                item.partials += 1;
                if item.partials == 1 {
                    let item_start = item.start;
                    metrics::histogram!(m::TIME_TO_FIRST_PARTIAL)
                        .record(self.arrivals.latency_s(item_start, now));
                }
                metrics::histogram!(m::LAG).record(seconds(self.backlog(offset, position)));
                Ok(())
            }
            Event::Final(f) => {
                let start = offset + samples_at(f.start);
                let end = offset + samples_at(f.end);
                let id = self.open_item(start).id.clone();
                self.item = None;
                metrics::histogram!(m::TIME_TO_FINAL).record(self.arrivals.latency_s(end, now));
                metrics::histogram!(m::LAG).record(seconds(self.backlog(offset, position)));
                if vad && f.reason == FinalReason::Endpoint {
                    let event = ServerEvent::SpeechStopped {
                        event_id: self.event_id(),
                        audio_end_ms: ms(end),
                        item_id: id.clone(),
                    };
                    self.send(event).await?;
                    // Audio after the endpoint is what a later commit would commit.
                    self.uncommitted = self.samples.saturating_sub(end);
                }
                let usage = (f.end - f.start).max(0.0);
                let logprobs = self.config.wants_logprobs().then(|| {
                    f.token_logprobs
                        .iter()
                        .map(|t| LogProb::new(&t.token, f64::from(t.logprob)))
                        .collect()
                });
                self.complete(id, f.text, usage, logprobs).await
            }
            Event::SpeechStopped { .. } => Ok(()),
            Event::Error { message, .. } => {
                if let Some(item) = self.item.take() {
                    let err = ProtocolError::new(ErrorCode::Internal, message.clone());
                    let event = ServerEvent::TranscriptionFailed {
                        event_id: self.event_id(),
                        item_id: item.id,
                        content_index: 0,
                        error: ErrorDetail::from_error(&err, None),
                    };
                    self.send(event).await?;
                }
                Err(End::Fatal(ProtocolError::new(ErrorCode::Internal, message)))
            }
        }
    }

    /// `committed`, the item events, the transcript as one delta, `completed`; `logprobs`
    /// (when the session's `include` asks) go on both, as the delta carries every token.
    async fn complete(
        &mut self,
        item_id: String,
        transcript: String,
        usage_s: f64,
        logprobs: Option<Vec<LogProb>>,
    ) -> Result<(), End> {
        let previous_item_id = self.previous_item.clone();
        let committed = ServerEvent::Committed {
            event_id: self.event_id(),
            item_id: item_id.clone(),
            previous_item_id: previous_item_id.clone(),
        };
        self.send(committed).await?;
        let item = ItemObject::input_audio(&item_id);
        if self.beta {
            let created = ServerEvent::ItemCreated {
                event_id: self.event_id(),
                previous_item_id,
                item,
            };
            self.send(created).await?;
        } else {
            let added = ServerEvent::ItemAdded {
                event_id: self.event_id(),
                previous_item_id: previous_item_id.clone(),
                item: item.clone(),
            };
            self.send(added).await?;
            let done = ServerEvent::ItemDone {
                event_id: self.event_id(),
                previous_item_id,
                item,
            };
            self.send(done).await?;
        }
        if !transcript.is_empty() {
            metrics::counter!(m::PARTIALS).increment(1);
            let event = ServerEvent::TranscriptionDelta {
                event_id: self.event_id(),
                item_id: item_id.clone(),
                content_index: 0,
                delta: transcript.clone(),
                logprobs: logprobs.clone(),
            };
            self.send(event).await?;
        }
        let completed = ServerEvent::TranscriptionCompleted {
            event_id: self.event_id(),
            item_id: item_id.clone(),
            content_index: 0,
            transcript,
            usage: Usage::Duration {
                seconds: (usage_s * 1000.0).round() / 1000.0,
            },
            logprobs,
        };
        self.send(completed).await?;
        metrics::counter!(m::FINALS).increment(1);
        self.finals += 1;
        self.previous_item = Some(item_id);
        Ok(())
    }

    fn backlog(&self, offset: u64, position: u64) -> u64 {
        self.samples.saturating_sub(offset + position)
    }

    /// Send the fatal `error` and close the socket.
    async fn close_with(mut self, err: ProtocolError, stream: &mut SplitStream<WebSocket>) {
        if self.active {
            metrics::gauge!(m::SESSIONS_ACTIVE, "endpoint" => ENDPOINT).decrement(1.0);
            tracing::info!(session = %self.id, reason = %err.code, "realtime session closed");
        }
        metrics::counter!(m::ERRORS, "code" => err.code.as_str()).increment(1);
        let event = ServerEvent::Error {
            event_id: self.event_id(),
            error: ErrorDetail::from_error(&err, None),
        };
        let sent = self.out.send(event.to_json()).await.is_ok();
        self.links.clear();
        if sent {
            self.out
                .close(stream, err.code.close_code(), err.code.as_str())
                .await;
        } else {
            self.out.abandon();
        }
    }
}

fn internal_gone() -> End {
    End::Fatal(ProtocolError::new(
        ErrorCode::Internal,
        "the stream stopped unexpectedly",
    ))
}

fn engine_key(config: &TranscriptionConfig, default_language: &str) -> EngineKey {
    let pre_roll_ms = config
        .turn_detection
        .as_ref()
        .filter(|td| td.kind == TurnDetectionType::ServerVad)
        .and_then(|td| td.prefix_padding_ms);
    EngineKey {
        rate: config.sample_rate,
        endpointing_ms: config.endpointing_ms(),
        pre_roll_ms,
        language: config.language().unwrap_or(default_language).to_owned(),
    }
}

/// Integer milliseconds of session audio.
fn ms(samples: u64) -> u64 {
    samples * 1000 / hark_model::SAMPLE_RATE as u64
}

/// A unique id like OpenAI's: `prefix_` and 22 base-62 characters of a random 128-bit value.
fn unique_id(prefix: &str) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = uuid::Uuid::new_v4().as_u128();
    let mut id = String::with_capacity(prefix.len() + 23);
    id.push_str(prefix);
    id.push('_');
    for _ in 0..22 {
        id.push(DIGITS[(n % 62) as usize] as char);
        n /= 62;
    }
    id
}

/// Unix time when a session started now reaches `max_session_s` of real-time audio; 0 when
/// there is no limit.
fn expires_at(max_session_s: u32) -> u64 {
    if max_session_s == 0 {
        return 0;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now + u64::from(max_session_s)
}
