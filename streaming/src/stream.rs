//! One audio stream: VAD gate → segments → hypotheses → events.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use hark_model::decoder::DecoderCache;
use hark_model::speech::quietest_cut;
use hark_model::{SAMPLE_RATE, SpeechModel, Task};
use serde::Deserialize;

use crate::commit::{CommitTracker, Stability};
use crate::events::{ErrorCode, Event, Final, FinalReason, Partial, TokenLogprob};
use crate::segment::{DecoderExec, PromptParts, SegmentDecoder};
use crate::vad::{GateConfig, GateEvent, SpeechGate, VadError};

/// How a stream behaves.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// The instruction (transcribe in a language, or translate).
    #[serde(skip)]
    pub task: Task,
    /// Voice-activity gating; `None` treats the whole stream as speech (no silence skipping).
    pub vad: Option<GateConfig>,
    /// Emit revisable partial hypotheses while speech goes on.
    pub partials: bool,
    /// New audio between two partial hypotheses.
    pub partial_interval_ms: u32,
    /// Latency-versus-stability of committed text.
    pub stability: Stability,
    /// Token budget per hypothesis.
    pub max_new_tokens: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            task: Task::default(),
            vad: Some(GateConfig::default()),
            partials: true,
            partial_interval_ms: 240,
            stability: Stability::default(),
            max_new_tokens: 192,
        }
    }
}

/// A stream could not be created or fed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("voice activity detection: {0}")]
    Vad(#[from] VadError),
    #[error("model: {0}")]
    Model(#[from] hark_model::ModelError),
    #[error("the stream is closed")]
    Closed,
    #[error("sample {index} of the chunk is not a finite number")]
    NonFinite { index: usize },
}

impl StreamError {
    /// The event code this failure is reported with.
    pub fn code(&self) -> ErrorCode {
        match self {
            StreamError::Vad(VadError::NonFiniteSample { .. }) | StreamError::NonFinite { .. } => {
                ErrorCode::BadAudio
            }
            StreamError::Model(_) => ErrorCode::Model,
            _ => ErrorCode::Internal,
        }
    }
}

struct OpenSegment<B: Backend> {
    id: u64,
    /// Absolute index of the segment's first sample.
    start: u64,
    decoder: SegmentDecoder<B>,
    commit: CommitTracker,
    /// The segment's audio, kept so a split can hand its tail to the next segment.
    audio: Vec<f32>,
    tokens_at_last_hypothesis: usize,
    last_partial: Option<(String, String)>,
}

/// One stream's state machine. Not thread-safe by itself: one engine thread drives it.
pub struct Stream<B: Backend> {
    model: Arc<SpeechModel<B>>,
    cfg: StreamConfig,
    parts: Arc<PromptParts>,
    prefix_cache: DecoderCache<B>,
    gate: Option<SpeechGate>,
    gate_events: Vec<GateEvent>,
    /// Samples received.
    position: u64,
    segment: Option<OpenSegment<B>>,
    next_segment_id: u64,
    max_span: usize,
    closed: bool,
    exec: DecoderExec<B>,
}

fn seconds(samples: u64) -> f64 {
    samples as f64 / SAMPLE_RATE as f64
}

impl<B: Backend> Stream<B> {
    /// A stream running its decoder passes on the calling thread.
    pub fn new(model: Arc<SpeechModel<B>>, cfg: StreamConfig) -> Result<Self, StreamError> {
        Self::with_exec(model, cfg, DecoderExec::Direct)
    }

    /// A stream whose decoder passes go through `exec` (e.g. the engine's batcher).
    pub fn with_exec(
        model: Arc<SpeechModel<B>>,
        cfg: StreamConfig,
        exec: DecoderExec<B>,
    ) -> Result<Self, StreamError> {
        let gate = cfg.vad.clone().map(SpeechGate::new).transpose()?;
        let prompt = model.prompt(&cfg.task, 0)?;
        let parts = Arc::new(PromptParts::new(&prompt));
        let prefix_cache = SegmentDecoder::prefill_prefix(&model, &parts);
        let max_span = model.max_span_samples();
        Ok(Self {
            model,
            cfg,
            parts,
            prefix_cache,
            gate,
            gate_events: Vec::new(),
            position: 0,
            segment: None,
            next_segment_id: 0,
            max_span,
            closed: false,
            exec,
        })
    }

    pub fn config(&self) -> &StreamConfig {
        &self.cfg
    }

    /// Samples received so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether a segment is open (speech in progress).
    pub fn in_speech(&self) -> bool {
        self.segment.is_some()
    }

    /// Feed 16 kHz mono samples. With `allow_partials` false (the stream is behind real time)
    /// no partial hypothesis is decoded; finals are never skipped.
    pub fn push(
        &mut self,
        samples: &[f32],
        allow_partials: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), StreamError> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
            return Err(StreamError::NonFinite { index });
        }
        match self.gate.as_mut() {
            Some(gate) => {
                let mut events = std::mem::take(&mut self.gate_events);
                events.clear();
                let pushed = gate.push(samples, &mut events);
                self.position += samples.len() as u64;
                self.apply_gate_events(&events, FinalReason::Endpoint, out);
                self.gate_events = events;
                pushed?;
            }
            None => {
                let start = self.position;
                self.position += samples.len() as u64;
                if self.segment.is_none() && !samples.is_empty() {
                    self.open_segment(start, out);
                }
                self.feed_ungated(samples, out);
            }
        }
        if allow_partials && self.cfg.partials {
            self.maybe_partial(out);
        }
        Ok(())
    }

    /// Finalise the open segment now and keep listening.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        if self.closed {
            return;
        }
        match self.gate.as_mut() {
            Some(gate) => {
                let mut events = Vec::new();
                gate.flush(&mut events);
                self.apply_gate_events(&events, FinalReason::Flush, out);
            }
            None => {
                let end = self.position;
                self.finalize(FinalReason::Flush, Some(end), out);
            }
        }
    }

    /// End of stream: finalise any open segment. Later pushes fail with [`StreamError::Closed`].
    pub fn close(&mut self, out: &mut Vec<Event>) {
        if self.closed {
            return;
        }
        match self.gate.as_mut() {
            Some(gate) => {
                let mut events = Vec::new();
                gate.finish(&mut events);
                self.apply_gate_events(&events, FinalReason::EndOfStream, out);
            }
            None => {
                let end = self.position;
                self.finalize(FinalReason::EndOfStream, Some(end), out);
            }
        }
        self.closed = true;
    }

    fn apply_gate_events(
        &mut self,
        events: &[GateEvent],
        end_reason: FinalReason,
        out: &mut Vec<Event>,
    ) {
        for event in events {
            match event {
                GateEvent::SpeechStart { start_sample } => self.open_segment(*start_sample, out),
                GateEvent::Audio { samples, .. } => {
                    if let Some(seg) = self.segment.as_mut() {
                        seg.audio.extend_from_slice(samples);
                        seg.decoder.push_audio(samples);
                    }
                }
                GateEvent::SegmentSplit { at_sample } => self.split(*at_sample, out),
                GateEvent::SpeechEnd { end_sample } => {
                    self.finalize(end_reason, Some(*end_sample), out)
                }
            }
        }
    }

    /// VAD off: the stream is one segment, cut at the model's span limit exactly where the
    /// offline path cuts a long file (same quietest-point rule), so finals equal offline output.
    fn feed_ungated(&mut self, mut samples: &[f32], out: &mut Vec<Event>) {
        while !samples.is_empty() {
            let Some(seg) = self.segment.as_mut() else {
                return;
            };
            // Feed up to one sample past the span limit, which is what triggers a cut offline.
            let room = (self.max_span + 1).saturating_sub(seg.audio.len());
            let take = room.min(samples.len());
            seg.audio.extend_from_slice(&samples[..take]);
            seg.decoder.push_audio(&samples[..take]);
            samples = &samples[take..];
            if seg.audio.len() > self.max_span {
                let cut = quietest_cut(&seg.audio[..self.max_span], SAMPLE_RATE as usize * 5);
                let at = seg.start + cut as u64;
                self.split(at, out);
            }
        }
    }

    fn open_segment(&mut self, start: u64, out: &mut Vec<Event>) {
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        let decoder = SegmentDecoder::new(
            self.model.clone(),
            self.parts.clone(),
            &self.prefix_cache,
            self.cfg.max_new_tokens,
            self.exec.clone(),
        );
        self.segment = Some(OpenSegment {
            id,
            start,
            decoder,
            commit: CommitTracker::new(self.cfg.stability),
            audio: Vec::new(),
            tokens_at_last_hypothesis: 0,
            last_partial: None,
        });
        out.push(Event::SpeechStarted {
            segment_id: id,
            at: seconds(start),
        });
    }

    fn maybe_partial(&mut self, out: &mut Vec<Event>) {
        let interval = (self.cfg.partial_interval_ms as usize / 40).max(1);
        let Some(seg) = self.segment.as_mut() else {
            return;
        };
        let tokens = seg.decoder.audio_tokens();
        if tokens == 0 || tokens < seg.tokens_at_last_hypothesis + interval {
            return;
        }
        seg.tokens_at_last_hypothesis = tokens;
        let forced = seg.commit.committed().to_vec();
        let hyp = seg.decoder.hypothesis(&forced);
        let model = &self.model;
        let split = seg.commit.observe(&hyp.tokens, |ids| {
            model.tokenizer.decode(ids).unwrap_or_default()
        });
        let current = (split.committed.clone(), split.tentative.clone());
        if seg.last_partial.as_ref() == Some(&current) {
            return;
        }
        seg.last_partial = Some(current);
        out.push(Event::Partial(Partial {
            segment_id: seg.id,
            committed: split.committed,
            tentative: split.tentative,
            start: seconds(seg.start),
            end: seconds(seg.start + seg.decoder.samples() as u64),
        }));
    }

    /// Close the open segment with the final hypothesis over all its audio.
    fn finalize(&mut self, reason: FinalReason, end: Option<u64>, out: &mut Vec<Event>) {
        let Some(mut seg) = self.segment.take() else {
            return;
        };
        seg.decoder.finish_audio();
        let end = end.unwrap_or(seg.start + seg.audio.len() as u64);
        out.push(Event::Final(self.final_of(&mut seg, reason, end)));
        if reason != FinalReason::SpanLimit {
            out.push(Event::SpeechStopped {
                segment_id: seg.id,
                at: seconds(end),
            });
        }
    }

    /// Each token's text (what it adds to the decoded prefix, so the texts concatenate to the
    /// transcript) with its log probability.
    fn token_logprobs(&self, tokens: &[u32], logprobs: &[f32]) -> Vec<TokenLogprob> {
        let mut prefix = String::new();
        let mut out = Vec::with_capacity(tokens.len());
        for (i, (&id, &logprob)) in tokens.iter().zip(logprobs).enumerate() {
            let text = self.model.decode_text(&tokens[..=i]).unwrap_or_default();
            let token = match text.strip_prefix(prefix.as_str()) {
                Some(added) => added.to_owned(),
                // A token that completes a multi-byte character changes the decoded prefix.
                None => self.model.decode_text(&[id]).unwrap_or_default(),
            };
            prefix = text;
            out.push(TokenLogprob { token, logprob });
        }
        out
    }

    fn final_of(&self, seg: &mut OpenSegment<B>, reason: FinalReason, end: u64) -> Final {
        let (tokens, logprobs, text) = if seg.decoder.audio_tokens() == 0 {
            (Vec::new(), Vec::new(), String::new())
        } else {
            // From the audio alone: the committed prefix of the partials is not forced, so
            // pacing and load (which decide what the partials committed) cannot change it.
            let hyp = seg.decoder.final_hypothesis();
            let text = self.model.decode_text(&hyp.tokens).unwrap_or_default();
            let committed = seg.commit.committed_text();
            if !text.trim_start().starts_with(committed) {
                // The whole-segment decode disagrees with the partials' commits; kept visible
                // for operators, as clients that typed committed text see a revision.
                tracing::info!(
                    segment = seg.id,
                    "final revises committed text: {committed:?} → {:?}",
                    text.trim_start()
                );
            }
            let logprobs = self.token_logprobs(&hyp.tokens, &hyp.logprobs);
            (hyp.tokens, logprobs, text)
        };
        Final {
            segment_id: seg.id,
            text,
            token_ids: tokens,
            token_logprobs: logprobs,
            start: seconds(seg.start),
            end: seconds(end),
            reason,
        }
    }

    /// The open segment reached the span limit: it ends at `at` (absolute), the audio after
    /// `at` (already received) starts the next segment. The first piece is recomputed from its
    /// own audio so its last tokens see the end of the piece exactly as offline would.
    fn split(&mut self, at: u64, out: &mut Vec<Event>) {
        let Some(seg) = self.segment.take() else {
            return;
        };
        let cut = ((at.saturating_sub(seg.start)) as usize).min(seg.audio.len());
        let mut piece = OpenSegment {
            id: seg.id,
            start: seg.start,
            decoder: SegmentDecoder::new(
                self.model.clone(),
                self.parts.clone(),
                &self.prefix_cache,
                self.cfg.max_new_tokens,
                self.exec.clone(),
            ),
            commit: seg.commit,
            audio: Vec::new(),
            tokens_at_last_hypothesis: 0,
            last_partial: None,
        };
        piece.decoder.push_audio(&seg.audio[..cut]);
        piece.decoder.finish_audio();
        out.push(Event::Final(self.final_of(
            &mut piece,
            FinalReason::SpanLimit,
            seg.start + cut as u64,
        )));
        // The next segment starts at the cut with the audio already received after it.
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        let mut next = OpenSegment {
            id,
            start: seg.start + cut as u64,
            decoder: SegmentDecoder::new(
                self.model.clone(),
                self.parts.clone(),
                &self.prefix_cache,
                self.cfg.max_new_tokens,
                self.exec.clone(),
            ),
            commit: CommitTracker::new(self.cfg.stability),
            audio: Vec::new(),
            tokens_at_last_hypothesis: 0,
            last_partial: None,
        };
        let tail = &seg.audio[cut..];
        next.audio.extend_from_slice(tail);
        next.decoder.push_audio(tail);
        self.segment = Some(next);
    }
}
