//! One utterance through the model, incrementally.
//!
//! Audio → incremental mel → streaming encoder → audio embeddings appended to the decoder's
//! KV cache as they become final (incremental prefill: only the cache-owning layers run). A
//! hypothesis appends the prompt suffix and decodes on top, then truncates the cache back to
//! the audio. The previous hypothesis serves as a draft: it is verified in the same forward
//! pass as the suffix (greedy speculative check), and only the tokens after the first
//! disagreement are decoded one by one, so an update costs one batched pass plus the changed
//! tail rather than re-decoding the whole transcript.
//!
//! Finals do not depend on how the audio arrived. The encoder and the cache appends run on a
//! fixed grid of [`GRID_FRAMES`] mel frames, whatever the sizes of the pushes, so every tensor
//! shape (hence every rounding) on the way to the audio cache is a function of the audio
//! alone; and [`SegmentDecoder::final_hypothesis`] decodes greedily from that cache one token
//! at a time, with no draft and no forced prefix (partials, which depend on pacing, leave no
//! trace in it: their rows are truncated away).

use std::sync::Arc;

use burn::tensor::activation::log_softmax;
use burn::tensor::{ElementConversion, Tensor, backend::Backend};
use hark_model::SpeechModel;
use hark_model::decoder::{DecoderCache, Logits};
use hark_model::encoder::EncoderState;
use hark_model::features::MelExtractor;
use hark_model::prompt::Prompt;

use crate::batcher::{BatchClient, Phase};

/// Mel frames (10 ms each) the encoder takes per step: 4 audio tokens. The last step of a
/// segment takes what is left.
pub const GRID_FRAMES: usize = 16;

/// How a segment runs its decoder passes.
pub enum DecoderExec<B: Backend> {
    /// On the calling thread.
    Direct,
    /// Through the engine's batcher, together with other streams' passes.
    Batched(BatchClient<B>),
}

impl<B: Backend> Clone for DecoderExec<B> {
    fn clone(&self) -> Self {
        match self {
            DecoderExec::Direct => DecoderExec::Direct,
            DecoderExec::Batched(c) => DecoderExec::Batched(c.clone()),
        }
    }
}

/// A decoded hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Generated tokens, stop id excluded.
    pub tokens: Vec<u32>,
    /// Whether generation ended on a stop id (rather than the token budget).
    pub stopped: bool,
    /// Draft tokens accepted by the speculative check.
    pub accepted: usize,
    /// Tokens decoded one step at a time after the check.
    pub decoded: usize,
    /// Natural-log probability of each of `tokens` (log-softmax of its logits row); filled
    /// for finals only, empty for partials.
    pub logprobs: Vec<f32>,
}

/// The per-stream prompt pieces, tokenized once.
#[derive(Debug, Clone)]
pub struct PromptParts {
    /// Up to and including `<|audio>`.
    pub prefix: Vec<u32>,
    /// From `<audio|>` to the generation prompt.
    pub suffix: Vec<u32>,
}

impl PromptParts {
    pub fn new(prompt: &Prompt) -> Self {
        Self {
            prefix: prompt.prefix().to_vec(),
            suffix: prompt.suffix().to_vec(),
        }
    }
}

/// Incremental model state of one segment.
pub struct SegmentDecoder<B: Backend> {
    model: Arc<SpeechModel<B>>,
    parts: Arc<PromptParts>,
    mel: MelExtractor,
    /// Mel frames not yet given to the encoder (less than one grid step after a push).
    frames: Vec<f32>,
    encoder: EncoderState<B>,
    cache: DecoderCache<B>,
    audio_tokens: usize,
    samples: usize,
    /// The last hypothesis, the draft of the next one.
    draft: Vec<u32>,
    draft_stopped: bool,
    max_new_tokens: usize,
    exec: DecoderExec<B>,
}

impl<B: Backend> SegmentDecoder<B> {
    /// A segment whose decoder cache starts as a copy of `prefix_cache` (the prompt prefix,
    /// prefilled once per stream).
    pub fn new(
        model: Arc<SpeechModel<B>>,
        parts: Arc<PromptParts>,
        prefix_cache: &DecoderCache<B>,
        max_new_tokens: usize,
        exec: DecoderExec<B>,
    ) -> Self {
        let mel = MelExtractor::new(model.mel.clone());
        let encoder = model.encoder.new_state(false);
        Self {
            mel,
            frames: Vec::new(),
            encoder,
            cache: prefix_cache.clone(),
            audio_tokens: 0,
            samples: 0,
            draft: Vec::new(),
            draft_stopped: false,
            max_new_tokens,
            model,
            parts,
            exec,
        }
    }

    /// One decoder pass on this segment's cache, direct or batched.
    fn forward(
        &mut self,
        embeds: Tensor<B, 2>,
        ids: &[u32],
        logits: Logits,
    ) -> Option<Tensor<B, 2>> {
        match &self.exec {
            DecoderExec::Direct => self
                .model
                .decoder
                .forward(embeds, ids, &mut self.cache, logits),
            DecoderExec::Batched(client) => client.forward(embeds, ids, &mut self.cache, logits),
        }
    }

    /// Announce a run of decoder passes to the batcher (none when direct).
    fn phase(&self) -> Option<Phase> {
        match &self.exec {
            DecoderExec::Direct => None,
            DecoderExec::Batched(client) => Some(client.phase()),
        }
    }

    /// Prefill the prompt prefix into a fresh cache (done once per stream).
    pub fn prefill_prefix(model: &SpeechModel<B>, parts: &PromptParts) -> DecoderCache<B> {
        let mut cache = model.decoder.new_cache(parts.prefix.len() + 256);
        let embeds = model.decoder.embed_tokens(&parts.prefix);
        model
            .decoder
            .forward(embeds, &parts.prefix, &mut cache, Logits::None);
        cache
    }

    /// Audio tokens appended to the cache so far.
    pub fn audio_tokens(&self) -> usize {
        self.audio_tokens
    }

    /// Samples received so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Feed samples; returns the number of audio tokens that became final and were appended.
    pub fn push_audio(&mut self, samples: &[f32]) -> usize {
        self.samples += samples.len();
        self.mel.push(samples, &mut self.frames);
        let step = GRID_FRAMES * self.model.mel.n_mels;
        let whole = self.frames.len() / step * step;
        if whole == 0 {
            return 0;
        }
        let ready: Vec<f32> = self.frames.drain(..whole).collect();
        ready.chunks(step).map(|block| self.encode(block)).sum()
    }

    /// End of the segment's audio: the frames left over from the grid, then the encoder's
    /// last tokens, computed as offline.
    pub fn finish_audio(&mut self) -> usize {
        let rest = std::mem::take(&mut self.frames);
        let mut appended = 0;
        if !rest.is_empty() {
            appended += self.encode(&rest);
        }
        let embeds = self.model.encoder.finish(&mut self.encoder);
        appended + self.append(embeds)
    }

    /// One encoder step and the cache append of the tokens it finalised.
    fn encode(&mut self, frames: &[f32]) -> usize {
        let embeds = self.model.encoder.push(&mut self.encoder, frames);
        self.append(embeds)
    }

    fn append(&mut self, embeds: Tensor<B, 2>) -> usize {
        let [n, _] = embeds.dims();
        if n == 0 {
            return 0;
        }
        let pad = self.model.config.text.pad_token_id;
        let _phase = self.phase();
        self.forward(embeds, &vec![pad; n], Logits::None);
        self.audio_tokens += n;
        n
    }

    /// The final hypothesis over the audio so far: greedy from the audio cache, one token per
    /// pass, neither draft nor forced prefix, so it depends on the audio alone.
    pub fn final_hypothesis(&mut self) -> Hypothesis {
        self.draft.clear();
        self.draft_stopped = false;
        self.decode(&[], true)
    }

    /// Decode a hypothesis over the audio so far. `forced` tokens (the committed prefix) are
    /// taken as given; the rest of the previous hypothesis is verified in one pass.
    pub fn hypothesis(&mut self, forced: &[u32]) -> Hypothesis {
        self.decode(forced, false)
    }

    /// [`Self::hypothesis`], with the tokens' log probabilities when `with_logprobs`.
    fn decode(&mut self, forced: &[u32], with_logprobs: bool) -> Hypothesis {
        let model = self.model.clone();
        let _phase = self.phase();
        let audio_end = self.cache.len();
        let parts = self.parts.clone();
        let suffix = &parts.suffix;
        // Draft: the forced tokens, then whatever of the previous hypothesis extends them.
        let mut draft = forced.to_vec();
        if self.draft.starts_with(forced) {
            draft.extend_from_slice(&self.draft[forced.len()..]);
        }
        let draft_stopped = self.draft_stopped && draft.len() == self.draft.len();
        let budget = self.max_new_tokens.max(forced.len() + 1);
        draft.truncate(budget);
        // One pass: suffix + draft (+ its stop id, so a finished draft is confirmed as such).
        let stop_id = model.config.stop_token_ids[0];
        let mut input: Vec<u32> = suffix.clone();
        input.extend_from_slice(&draft);
        let verify_stop = draft_stopped && draft.len() < budget;
        if verify_stop {
            input.push(stop_id);
        }
        let rows = input.len() - suffix.len() + 1;
        let embeds = model.decoder.embed_tokens(&input);
        let logits = self
            .forward(embeds, &input, Logits::Tail(rows))
            .expect("logits requested");
        let predicted = model.argmax_rows(logits.clone());
        let log_probs = with_logprobs.then(|| log_softmax(logits, 1));
        // predicted[i] is the model's choice for draft position i (i = draft.len(): after it).
        let mut accepted = 0;
        while accepted < draft.len()
            && (accepted < forced.len() || predicted[accepted] == draft[accepted])
        {
            accepted += 1;
        }
        let mut tokens = draft[..accepted].to_vec();
        let mut next = predicted[accepted];
        let mut logprobs = Vec::new();
        let mut next_logprob = 0.0;
        if let Some(lp) = &log_probs {
            logprobs = (0..accepted).map(|i| logprob_at(lp, i, draft[i])).collect();
            next_logprob = logprob_at(lp, accepted, next);
        }
        let mut stopped = false;
        let mut decoded = 0;
        if accepted == draft.len() && verify_stop && model.is_stop(next) {
            stopped = true;
        } else {
            // Drop the cache beyond the accepted tokens and go on greedily from `next`.
            self.cache.truncate(audio_end + suffix.len() + accepted);
            // Same budget rule as offline greedy decoding: a stop id counts only when it comes
            // within the budget.
            while tokens.len() < budget {
                if model.is_stop(next) {
                    stopped = true;
                    break;
                }
                tokens.push(next);
                if with_logprobs {
                    logprobs.push(next_logprob);
                }
                if tokens.len() == budget {
                    break;
                }
                let embeds = model.decoder.embed_tokens(&[next]);
                let logits = self
                    .forward(embeds, &[next], Logits::Last)
                    .expect("logits requested");
                next = model.argmax_rows(logits.clone())[0];
                if with_logprobs {
                    next_logprob = logprob_at(&log_softmax(logits, 1), 0, next);
                }
                decoded += 1;
            }
        }
        self.cache.truncate(audio_end);
        self.draft = tokens.clone();
        self.draft_stopped = stopped;
        Hypothesis {
            tokens,
            stopped,
            accepted,
            decoded,
            logprobs,
        }
    }
}

/// Entry `[row, id]` of a log-softmax'd logits tensor.
fn logprob_at<B: Backend>(log_probs: &Tensor<B, 2>, row: usize, id: u32) -> f32 {
    let id = id as usize;
    log_probs
        .clone()
        .slice([row..row + 1, id..id + 1])
        .into_scalar()
        .elem::<f32>()
}
