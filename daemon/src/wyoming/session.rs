//! One Wyoming connection: `describe` → `info`, and any number of transcriptions in sequence
//! (`transcribe`, `audio-start`, `audio-chunk`…, `audio-stop` → `transcript`), each run as a
//! stream on the daemon's scheduler, like a WebSocket session.
//!
//! While audio arrives, text the decoder has committed goes out at once as `transcript-chunk`
//! events (between `transcript-start`, sent at `audio-start`, and `transcript-stop`, sent after
//! the final `transcript`). Committed text never changes, so the chunks only ever append.
//!
//! A separate task reads and parses events (reading one is not cancel-safe), so the session
//! can wait for the client, the stream and the daemon's shutdown at once. Bad input ends the
//! connection with an `error` event: Home Assistant waits for a `transcript` and ignores
//! `error`, so a closed connection is what makes it give up at once rather than time out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hark_protocol::{ErrorCode, ProtocolError};
use hark_streaming::Event as StreamEvent;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::event::{Event, FrameError, FrameLimits, read_event};
use super::info::info;
use super::pcm::{AudioFormat, FormatError};
use super::transcription::{Transcription, TranscriptionError};
use crate::language::{known_tags, language_name};
use crate::metrics as m;
use crate::scheduler::{Output, StreamLink};
use crate::state::{AppState, Refusal, SessionGuard};

const ENDPOINT: &str = "wyoming";
/// Longest header line; real headers are well under 1 KiB.
const HEADER_BYTES: usize = 64 * 1024;
/// Largest data section (`transcribe` may carry a `context` object).
const DATA_BYTES: usize = 1024 * 1024;
/// How long a closing connection keeps reading (see [`drain`]).
const DRAIN: Duration = Duration::from_secs(2);
/// Parsed events waiting for the session (bounds what a fast client has buffered here).
const EVENT_QUEUE: usize = 8;

/// Serve one accepted connection until it closes.
pub async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    _guard: SessionGuard,
) {
    let _ = socket.set_nodelay(true);
    let (read, write) = socket.into_split();
    let reader = BufReader::new(read);
    let mut conn = Connection::new(state.clone(), write);
    let permit = match state.admit_now() {
        Ok(permit) => permit,
        Err(refusal) => {
            let err = refusal_error(refusal, state.config.max_sessions);
            metrics::counter!(m::SESSIONS_REFUSED, "reason" => err.code.as_str()).increment(1);
            conn.end(End::Fatal(err), Some(reader)).await;
            return;
        }
    };
    metrics::counter!(m::SESSIONS_TOTAL, "endpoint" => ENDPOINT).increment(1);
    metrics::gauge!(m::SESSIONS_ACTIVE, "endpoint" => ENDPOINT).increment(1.0);
    tracing::info!(%peer, "wyoming connection opened");
    let limits = FrameLimits {
        header_bytes: HEADER_BYTES,
        data_bytes: DATA_BYTES,
        payload_bytes: state.limits.max_frame_bytes as usize,
    };
    let (tx, mut events) = mpsc::channel(EVENT_QUEUE);
    let (stop, stopped) = oneshot::channel();
    let reading = tokio::spawn(read_events(reader, limits, tx, stopped));
    let end = conn.run(&mut events, permit).await;
    let _ = stop.send(());
    drop(events);
    let reader = reading.await.ok();
    tracing::info!(%peer, end = end.describe(), "wyoming connection closed");
    metrics::gauge!(m::SESSIONS_ACTIVE, "endpoint" => ENDPOINT).decrement(1.0);
    conn.end(end, reader).await;
}

/// Parse events off the socket until it ends, an event is malformed (framing is then lost) or
/// the session stops listening; hands the reader back for [`drain`].
async fn read_events(
    mut reader: BufReader<OwnedReadHalf>,
    limits: FrameLimits,
    tx: mpsc::Sender<Result<Event, FrameError>>,
    mut stop: oneshot::Receiver<()>,
) -> BufReader<OwnedReadHalf> {
    loop {
        let next = tokio::select! {
            _ = &mut stop => None,
            next = read_event(&mut reader, &limits) => Some(next),
        };
        let event = match next {
            None | Some(Ok(None)) => return reader,
            Some(Ok(Some(event))) => Ok(event),
            Some(Err(err)) => Err(err),
        };
        let last = event.is_err();
        if tx.send(event).await.is_err() || last {
            return reader;
        }
    }
}

/// Read and discard what the client still sends, for a moment: closing a socket with unread
/// input resets the connection, and the client could lose the `error` sent just before.
async fn drain(mut reader: BufReader<OwnedReadHalf>) {
    let mut scratch = [0; 8192];
    let _ = tokio::time::timeout(DRAIN, async {
        while matches!(reader.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}

fn refusal_error(refusal: Refusal, slots: usize) -> ProtocolError {
    match refusal {
        Refusal::Busy => ProtocolError::new(
            ErrorCode::ServerBusy,
            format!("all {slots} stream slots are in use"),
        ),
        Refusal::Loading => ProtocolError::new(ErrorCode::ServerBusy, "the model is still loading"),
        Refusal::ShuttingDown => {
            ProtocolError::new(ErrorCode::ShuttingDown, "the server is stopping")
        }
    }
}

/// How a connection ends.
enum End {
    /// The client closed the connection or stopped reading.
    Gone,
    /// Send `error` and close.
    Fatal(ProtocolError),
}

impl End {
    fn describe(&self) -> &'static str {
        match self {
            End::Gone => "client_gone",
            End::Fatal(err) => err.code.as_str(),
        }
    }
}

fn fatal(code: ErrorCode, message: impl Into<String>) -> End {
    End::Fatal(ProtocolError::new(code, message))
}

/// What woke the session loop.
enum Wake {
    Event(Option<Result<Event, FrameError>>),
    Output(Option<Output>),
    Idle,
    Shutdown,
    GraceOver,
}

struct Connection {
    state: Arc<AppState>,
    writer: OwnedWriteHalf,
    send_timeout: Duration,
    /// The language `transcribe` asked for, for the next `audio-start`.
    language: Option<String>,
    current: Option<Transcription>,
    last_event: Instant,
    /// Carry-over of audio seconds not yet counted in the metric.
    audio_carry: f64,
}

impl Connection {
    fn new(state: Arc<AppState>, writer: OwnedWriteHalf) -> Self {
        Self {
            send_timeout: Duration::from_secs(u64::from(state.config.send_timeout_s)),
            state,
            writer,
            language: None,
            current: None,
            last_event: Instant::now(),
            audio_carry: 0.0,
        }
    }

    /// Serve events until the connection ends. The slot `_permit` is held meanwhile.
    async fn run(
        &mut self,
        events: &mut mpsc::Receiver<Result<Event, FrameError>>,
        _permit: OwnedSemaphorePermit,
    ) -> End {
        let idle = Duration::from_secs(u64::from(self.state.limits.idle_timeout_s));
        let shutdown = self.state.shutdown_signal();
        tokio::pin!(shutdown);
        let mut grace_until: Option<Instant> = None;
        loop {
            // While a transcription finishes the client is waiting for us, not the reverse:
            // its next events wait (in order) and it cannot time out.
            let listening =
                grace_until.is_none() && !self.current.as_ref().is_some_and(|t| t.is_stopped());
            let quiet_until = self.last_event + idle;
            let grace = grace_until.unwrap_or_else(Instant::now);
            let link = self.current.as_mut().map(|t| t.link());
            let wake = tokio::select! {
                biased;
                () = &mut shutdown, if grace_until.is_none() => Wake::Shutdown,
                () = tokio::time::sleep_until(grace.into()), if grace_until.is_some() => Wake::GraceOver,
                out = recv(link) => Wake::Output(out),
                event = events.recv(), if listening => Wake::Event(event),
                () = tokio::time::sleep_until(quiet_until.into()), if listening => Wake::Idle,
            };
            let step = match wake {
                Wake::Shutdown => {
                    let grace = Duration::from_secs(u64::from(self.state.config.shutdown_grace_s));
                    grace_until = Some(Instant::now() + grace);
                    self.stop_audio().await
                }
                Wake::GraceOver => Err(fatal(ErrorCode::ShuttingDown, "the server is stopping")),
                Wake::Idle => Err(fatal(
                    ErrorCode::IdleTimeout,
                    format!("no event for {} s", idle.as_secs()),
                )),
                Wake::Output(out) => self.on_output(out).await,
                Wake::Event(Some(Ok(event))) => {
                    self.last_event = Instant::now();
                    self.on_event(event).await
                }
                Wake::Event(Some(Err(err))) => Err(frame_error(err)),
                Wake::Event(None) => Err(End::Gone),
            };
            if let Err(end) = step {
                return end;
            }
            if grace_until.is_some() && self.current.is_none() {
                // Whatever was being transcribed has been delivered.
                return fatal(ErrorCode::ShuttingDown, "the server is stopping");
            }
        }
    }

    async fn on_event(&mut self, event: Event) -> Result<(), End> {
        match event.kind.as_str() {
            "describe" => {
                let model = self.state.model().map_or("hark", |m| m.name.as_str());
                let languages: Vec<&str> = known_tags().collect();
                self.send(&info(model, &languages)).await
            }
            "ping" => {
                let text = event.data.get("text").cloned().unwrap_or_default();
                self.send(&Event::new("pong", json!({ "text": text })))
                    .await
            }
            "transcribe" => self.on_transcribe(&event),
            "audio-start" => self.on_audio_start(&event).await,
            "audio-chunk" => self.on_audio_chunk(&event).await,
            "audio-stop" => {
                if self.current.is_none() {
                    // Nothing was sent: an empty transcript, as wyoming-faster-whisper answers.
                    self.language = None;
                    return self
                        .send(&Event::new("transcript", json!({ "text": "" })))
                        .await;
                }
                self.stop_audio().await
            }
            other => {
                // The protocol: events a program does not handle are ignored.
                tracing::debug!(kind = other, "ignoring a wyoming event");
                Ok(())
            }
        }
    }

    fn on_transcribe(&mut self, event: &Event) -> Result<(), End> {
        if self.current.is_some() {
            return Err(fatal(
                ErrorCode::UnexpectedMessage,
                "`transcribe` during a transcription; send `audio-stop` first",
            ));
        }
        self.language = match event.data.get("language") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(tag)) if language_name(tag).is_some() => {
                Some(tag.clone())
            }
            Some(serde_json::Value::String(tag)) => {
                return Err(fatal(
                    ErrorCode::InvalidField,
                    format!("language `{tag}` is not one this server knows (see `info`)"),
                ));
            }
            Some(_) => {
                return Err(fatal(ErrorCode::BadMessage, "`language` must be a string"));
            }
        };
        Ok(())
    }

    async fn on_audio_start(&mut self, event: &Event) -> Result<(), End> {
        if self.current.is_some() {
            return Err(fatal(
                ErrorCode::UnexpectedMessage,
                "`audio-start` during a transcription; send `audio-stop` first",
            ));
        }
        let format = AudioFormat::from_data(&event.data, None).map_err(format_error)?;
        let language = self
            .language
            .clone()
            .unwrap_or_else(|| self.state.config.default_language.clone());
        let t = Transcription::start(&self.state, format, language.clone())
            .await
            .map_err(transcription_error)?;
        self.current = Some(t);
        self.send(&Event::new(
            "transcript-start",
            json!({ "language": language }),
        ))
        .await
    }

    async fn on_audio_chunk(&mut self, event: &Event) -> Result<(), End> {
        let Some(t) = self.current.as_mut().filter(|t| !t.is_stopped()) else {
            return Err(fatal(
                ErrorCode::AudioBeforeStart,
                "`audio-chunk` before `audio-start`: its format is unknown",
            ));
        };
        let format = AudioFormat::from_data(&event.data, Some(t.format())).map_err(format_error)?;
        let samples = format.decode(&event.payload).map_err(format_error)?;
        let secs = t
            .push(format, &samples)
            .await
            .map_err(transcription_error)?;
        let total = t.audio_s();
        self.count_audio(secs);
        let limit = self.state.limits.max_session_s;
        if limit > 0 && total > f64::from(limit) {
            return Err(fatal(
                ErrorCode::SessionTooLong,
                format!("a transcription may hold at most {limit} s of audio"),
            ));
        }
        Ok(())
    }

    /// End of audio: the stream finalises what it holds, then `Finished` completes it.
    async fn stop_audio(&mut self) -> Result<(), End> {
        match self.current.as_mut() {
            Some(t) => t.stop().await.map_err(transcription_error),
            None => Ok(()),
        }
    }

    async fn on_output(&mut self, output: Option<Output>) -> Result<(), End> {
        let Some(output) = output else {
            return Err(transcription_error(TranscriptionError::StreamGone));
        };
        match output {
            Output::Event { event, .. } => self.on_stream_event(event).await,
            Output::Flushed { .. } => Ok(()),
            Output::Finished { .. } => self.complete().await,
        }
    }

    async fn on_stream_event(&mut self, event: StreamEvent) -> Result<(), End> {
        let Some(t) = self.current.as_mut() else {
            return Ok(());
        };
        if matches!(event, StreamEvent::Final(_)) {
            metrics::counter!(m::FINALS).increment(1);
        }
        match t.on_event(event).map_err(transcription_error)? {
            Some(text) => {
                metrics::counter!(m::PARTIALS).increment(1);
                self.send(&Event::new("transcript-chunk", json!({ "text": text })))
                    .await
            }
            None => Ok(()),
        }
    }

    /// The stream finished: the whole `transcript`, then `transcript-stop`.
    async fn complete(&mut self) -> Result<(), End> {
        let Some(t) = self.current.take() else {
            return Ok(());
        };
        self.language = None;
        let text = t.transcript();
        tracing::info!(
            audio_s = t.audio_s(),
            chars = text.len(),
            "wyoming transcript"
        );
        self.send(&Event::new(
            "transcript",
            json!({ "text": text, "language": t.language() }),
        ))
        .await?;
        self.send(&Event::new("transcript-stop", json!({}))).await
    }

    fn count_audio(&mut self, secs: f64) {
        self.audio_carry += secs;
        if self.audio_carry >= 1.0 {
            let whole = self.audio_carry.floor();
            self.audio_carry -= whole;
            metrics::counter!(m::AUDIO_SECONDS, "endpoint" => ENDPOINT).increment(whole as u64);
        }
    }

    async fn send(&mut self, event: &Event) -> Result<(), End> {
        let bytes = event.encode();
        match tokio::time::timeout(self.send_timeout, self.writer.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => {
                metrics::counter!(m::DISCONNECTS, "reason" => "send_timeout").increment(1);
                Err(End::Gone)
            }
        }
    }

    /// Send the `error` of a fatal end, then close the connection.
    async fn end(mut self, end: End, reader: Option<BufReader<OwnedReadHalf>>) {
        self.current = None;
        match end {
            End::Gone => {
                metrics::counter!(m::DISCONNECTS, "reason" => "client_gone").increment(1);
            }
            End::Fatal(err) => {
                metrics::counter!(m::ERRORS, "code" => err.code.as_str()).increment(1);
                let event = Event::new(
                    "error",
                    json!({ "text": err.message, "code": err.code.as_str() }),
                );
                if self.send(&event).await.is_ok() {
                    let _ = tokio::time::timeout(self.send_timeout, self.writer.shutdown()).await;
                    if let Some(reader) = reader {
                        drain(reader).await;
                    }
                }
            }
        }
    }
}

fn transcription_error(err: TranscriptionError) -> End {
    if let TranscriptionError::Open(e) = &err {
        tracing::error!("cannot open a stream: {e}");
    }
    let code = match err {
        TranscriptionError::Convert(_) => ErrorCode::UnsupportedSampleRate,
        _ => ErrorCode::Internal,
    };
    fatal(code, err.to_string())
}

fn format_error(err: FormatError) -> End {
    let code = match err {
        FormatError::Missing(_) => ErrorCode::BadMessage,
        FormatError::Rate(_) => ErrorCode::UnsupportedSampleRate,
        FormatError::Width(_) => ErrorCode::UnsupportedEncoding,
        FormatError::Channels(_) => ErrorCode::UnsupportedChannels,
        FormatError::OddBytes { .. } => ErrorCode::OddByteCount,
    };
    fatal(code, err.to_string())
}

fn frame_error(err: FrameError) -> End {
    let code = match &err {
        FrameError::HeaderTooLong { .. } => ErrorCode::MessageTooLarge,
        FrameError::TooLarge { field, .. } if *field == "payload_length" => {
            ErrorCode::FrameTooLarge
        }
        FrameError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        FrameError::BadJson(_) | FrameError::BadData(_) => ErrorCode::BadJson,
        FrameError::BadHeader | FrameError::BadLength { .. } => ErrorCode::BadMessage,
        // The client closed the connection inside an event: nobody to tell.
        FrameError::Truncated | FrameError::Io(_) => return End::Gone,
    };
    fatal(code, err.to_string())
}

/// The next output of the link, or never when there is none.
async fn recv(link: Option<&mut StreamLink>) -> Option<Output> {
    match link {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}
