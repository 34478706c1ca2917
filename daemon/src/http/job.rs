//! One uploaded file through the streaming scheduler, as a WebSocket session would send it:
//! a stream with voice activity detection (segments end at pauses and are split at quiet
//! points before 30 s), all samples pushed as fast as the worker takes them, then closed; the
//! finals come back with their times. The file shares the workers with live sessions.

use std::sync::Arc;

use hark_model::Task;
use hark_protocol::openai::DeltaTracker;
use hark_streaming::{Event, GateConfig};
use tokio::sync::mpsc;

use super::errors::ApiError;
use crate::metrics as m;
use crate::scheduler::{Output, StreamLink};
use crate::session::{open_link, seconds, stream_config};
use crate::state::AppState;

/// Samples pushed between two looks at the stream's outputs (1 s).
const PUSH_CHUNK: usize = hark_model::SAMPLE_RATE as usize;

/// A finalised stretch of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub tokens: Vec<u32>,
}

/// What a file came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// Segments with text, in order.
    pub segments: Vec<Segment>,
    /// Length of the audio, seconds.
    pub duration: f64,
}

impl Transcript {
    /// The segments' texts joined by spaces.
    pub fn text(&self) -> String {
        self.segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Transcribe `samples` (16 kHz mono) with `task`. With `deltas`, text is sent there as the
/// decoder produces it (append-only: each piece extends what was sent before); the job stops
/// when that receiver is dropped.
pub async fn run(
    state: &Arc<AppState>,
    endpoint: &'static str,
    task: Task,
    samples: &[f32],
    deltas: Option<mpsc::UnboundedSender<String>>,
) -> Result<Transcript, ApiError> {
    let endpointing = GateConfig::default().endpoint_silence_ms;
    let cfg = stream_config(state, task, Some(endpointing), None, deltas.is_some());
    let mut link = open_link(state, cfg).await.map_err(|e| {
        tracing::error!("cannot open a stream for an upload: {e}");
        ApiError::internal(format!("cannot open a stream: {e}"))
    })?;
    let duration = seconds(samples.len() as u64);
    metrics::counter!(m::SESSIONS_TOTAL, "endpoint" => endpoint).increment(1);
    // Whole seconds, as the WebSocket sessions count them.
    metrics::counter!(m::AUDIO_SECONDS, "endpoint" => endpoint).increment(duration.round() as u64);
    let mut collect = Collector::new(deltas);
    let shutdown = state.shutdown_signal();
    tokio::pin!(shutdown);
    let work = async {
        for chunk in samples.chunks(PUSH_CHUNK) {
            if collect.deltas.as_ref().is_some_and(|tx| tx.is_closed()) {
                // The streaming client went away: dropping the link aborts the stream.
                return Err(ApiError::internal("the client went away"));
            }
            if link.push(chunk).await.is_err() {
                break;
            }
            while let Some(output) = link.try_recv() {
                collect.output(output)?;
            }
        }
        link.close();
        finish(&mut link, &mut collect).await
    };
    let outcome = tokio::select! {
        biased;
        () = &mut shutdown => Err(ApiError::unavailable(
            "shutting_down",
            "the server is stopping",
            state.config.busy_retry_after_s,
        )),
        done = work => done,
    };
    outcome?;
    metrics::counter!(m::FINALS).increment(collect.segments.len() as u64);
    Ok(Transcript {
        segments: collect.segments,
        duration,
    })
}

/// Take outputs until the stream has finished.
async fn finish(link: &mut StreamLink, collect: &mut Collector) -> Result<(), ApiError> {
    loop {
        match link.recv().await {
            Some(Output::Finished { .. }) => return Ok(()),
            Some(output) => collect.output(output)?,
            None => return Err(ApiError::internal("the stream stopped unexpectedly")),
        }
    }
}

/// Gathers finals and turns partials into append-only deltas.
struct Collector {
    segments: Vec<Segment>,
    deltas: Option<mpsc::UnboundedSender<String>>,
    /// What was sent of the open segment.
    open: DeltaTracker,
    /// Whether anything was sent before the open segment (it then starts with a space).
    sent_any: bool,
}

impl Collector {
    fn new(deltas: Option<mpsc::UnboundedSender<String>>) -> Self {
        Self {
            segments: Vec::new(),
            deltas,
            open: DeltaTracker::new(),
            sent_any: false,
        }
    }

    fn output(&mut self, output: Output) -> Result<(), ApiError> {
        let Output::Event { event, .. } = output else {
            return Ok(());
        };
        match event {
            Event::Partial(p) => self.advance(p.committed.trim()),
            Event::Final(f) => {
                let text = f.text.trim().to_owned();
                self.advance(&text)?;
                let had_text = !self.open.sent().is_empty();
                self.open.reset();
                self.sent_any |= had_text;
                if !text.is_empty() {
                    self.segments.push(Segment {
                        start: f.start,
                        end: f.end,
                        text,
                        tokens: f.token_ids,
                    });
                }
                Ok(())
            }
            Event::Error { code, message } => {
                tracing::error!(?code, "an upload's stream failed: {message}");
                Err(ApiError::internal(format!(
                    "transcription failed: {message}"
                )))
            }
            Event::SpeechStarted { .. } | Event::SpeechStopped { .. } => Ok(()),
        }
    }

    /// Send what `text` adds to the open segment's text. A revision that would retract sent
    /// text sends nothing; the final response carries the whole text.
    fn advance(&mut self, text: &str) -> Result<(), ApiError> {
        let Some(tx) = &self.deltas else {
            return Ok(());
        };
        let first = self.open.sent().is_empty();
        let Ok(new) = self.open.advance(text) else {
            return Ok(());
        };
        if new.is_empty() {
            return Ok(());
        }
        let piece = if first && self.sent_any {
            format!(" {new}")
        } else {
            new.to_owned()
        };
        // A send fails when the client went away; nothing will read the error.
        tx.send(piece)
            .map_err(|_| ApiError::internal("the client went away"))
    }
}
