//! One Wyoming transcription (`audio-start` … `audio-stop`): the client's audio, converted to
//! 16 kHz mono, into a scheduler stream; the stream's text back out as append-only chunks and
//! one whole transcript.

use std::sync::Arc;

use hark_audio_io::{AudioError, StreamConverter};
use hark_model::Task;
use hark_protocol::openai::DeltaTracker;
use hark_streaming::Event as StreamEvent;

use super::pcm::AudioFormat;
use crate::language::language_name;
use crate::scheduler::{OpenError, StreamLink};
use crate::session::{open_link, stream_config};
use crate::state::AppState;

/// A transcription cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptionError {
    #[error("cannot open a stream: {0}")]
    Open(#[from] OpenError),
    #[error("cannot convert the audio: {0}")]
    Convert(#[from] AudioError),
    #[error("the stream stopped unexpectedly")]
    StreamGone,
    #[error("the transcription failed: {0}")]
    Failed(String),
}

pub struct Transcription {
    link: StreamLink,
    /// The format the client stated last (`audio-start`, or a chunk that changed it).
    format: AudioFormat,
    converter: StreamConverter,
    /// BCP 47 tag of the language transcribed.
    language: String,
    /// Texts of the finished segments.
    finals: Vec<String>,
    /// What was streamed of the open segment.
    deltas: DeltaTracker,
    /// Whether any chunk text went out (a later segment's first chunk then starts with a
    /// space).
    streamed: bool,
    /// Seconds of client audio received.
    audio_s: f64,
    /// The audio ended: the stream is finishing.
    stopped: bool,
}

impl Transcription {
    /// Open a stream for audio in `format` spoken in `language` (a tag the daemon knows).
    pub async fn start(
        state: &Arc<AppState>,
        format: AudioFormat,
        language: String,
    ) -> Result<Transcription, TranscriptionError> {
        let task = Task::Transcribe {
            language: language_name(&language).unwrap_or("English").into(),
        };
        // No server-side endpointing: the client's voice activity detection ends the command.
        let cfg = stream_config(state, task, None, None, true);
        let link = open_link(state, cfg).await?;
        Ok(Transcription {
            link,
            format,
            converter: StreamConverter::new(format.rate, format.channels)?,
            language,
            finals: Vec::new(),
            deltas: DeltaTracker::new(),
            streamed: false,
            audio_s: 0.0,
            stopped: false,
        })
    }

    pub fn format(&self) -> AudioFormat {
        self.format
    }

    pub fn language(&self) -> &str {
        &self.language
    }

    /// Seconds of client audio received.
    pub fn audio_s(&self) -> f64 {
        self.audio_s
    }

    /// Whether the audio has ended (the stream is finishing).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The stream whose outputs the connection waits for.
    pub fn link(&mut self) -> &mut StreamLink {
        &mut self.link
    }

    /// Queue interleaved `samples` in `format`; returns their seconds.
    pub async fn push(
        &mut self,
        format: AudioFormat,
        samples: &[f32],
    ) -> Result<f64, TranscriptionError> {
        if format != self.format {
            // A new format mid-stream: drain the old converter, go on with a new one.
            let next = StreamConverter::new(format.rate, format.channels)?;
            self.drain_converter().await?;
            self.converter = next;
            self.format = format;
        }
        let mut mono = Vec::new();
        self.converter.push(samples, &mut mono);
        self.link
            .push(&mono)
            .await
            .map_err(|_| TranscriptionError::StreamGone)?;
        let secs = (samples.len() / usize::from(format.channels)) as f64 / f64::from(format.rate);
        self.audio_s += secs;
        Ok(secs)
    }

    /// End of audio: the stream finalises what it holds, then reports `Finished`.
    pub async fn stop(&mut self) -> Result<(), TranscriptionError> {
        if self.stopped {
            return Ok(());
        }
        self.drain_converter().await?;
        self.link.close();
        self.stopped = true;
        Ok(())
    }

    async fn drain_converter(&mut self) -> Result<(), TranscriptionError> {
        let mut tail = Vec::new();
        // A converter that cannot finish has nothing left to give: the tail is just empty.
        let _ = self.converter.finish(&mut tail);
        self.link
            .push(&tail)
            .await
            .map_err(|_| TranscriptionError::StreamGone)
    }

    /// Take a stream event; returns the text to stream, if any is new. Only committed text
    /// and finals are streamed, so chunks never need to be taken back.
    pub fn on_event(&mut self, event: StreamEvent) -> Result<Option<String>, TranscriptionError> {
        match event {
            StreamEvent::Partial(p) => Ok(self.delta(&p.committed)),
            StreamEvent::Final(f) => {
                let chunk = self.delta(&f.text);
                self.deltas.reset();
                let text = f.text.trim();
                if !text.is_empty() {
                    self.finals.push(text.to_owned());
                }
                Ok(chunk)
            }
            StreamEvent::Error { message, .. } => Err(TranscriptionError::Failed(message)),
            StreamEvent::SpeechStarted { .. } | StreamEvent::SpeechStopped { .. } => Ok(None),
        }
    }

    /// The whole text: every segment's final.
    pub fn transcript(&self) -> String {
        self.finals.join(" ")
    }

    /// The part of `text` (the open segment's committed text or final) not streamed yet, with
    /// a space before a later segment's first words; `None` when nothing is new or `text` does
    /// not extend what was streamed (the transcript carries the whole text anyway).
    fn delta(&mut self, text: &str) -> Option<String> {
        let first = self.deltas.sent().is_empty();
        let delta = self.deltas.advance(text).ok().filter(|d| !d.is_empty())?;
        let chunk = if first && self.streamed {
            format!(" {}", delta.trim_start())
        } else {
            delta.to_owned()
        };
        self.streamed = true;
        Some(chunk)
    }
}
