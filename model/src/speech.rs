//! The whole speech path: checkpoint → mel → audio encoder → prompt → decoder → text.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{Tensor, backend::Backend};

use crate::checkpoint::{Checkpoint, TensorStore};
use crate::config::ModelConfig;
use crate::decoder::{self, DecoderCache, Logits, TextDecoder};
use crate::encoder::{self, AudioEncoder};
use crate::error::{LoadError, ModelError};
use crate::features::{self, MelSpec};
use crate::nn::{Loader, to_vec};
use crate::packed_cache::PackedCache;
use crate::prompt::{self, Prompt, Task};
use crate::tokenizer::{TextTokenizer, special};
use crate::weights::{Kernels, Weights};

/// Samples per second of the model's input.
pub const SAMPLE_RATE: u32 = 16_000;

/// A loaded Gemma 4 speech model on one device.
#[derive(Debug)]
pub struct SpeechModel<B: Backend> {
    pub name: String,
    pub config: ModelConfig,
    pub tokenizer: TextTokenizer,
    pub mel: Arc<MelSpec>,
    pub encoder: AudioEncoder<B>,
    pub decoder: TextDecoder<B>,
    pub weights: Weights,
    device: B::Device,
}

/// Options of greedy decoding.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Upper bound on generated tokens (the stop token included).
    pub max_new_tokens: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop id was generated (it is the last element of `ids`).
    StopToken,
    /// The token budget ran out.
    MaxTokens,
}

/// Greedy decoding output.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids, the stop id included when there is one.
    pub ids: Vec<u32>,
    /// Top-1 minus top-2 logit at each step.
    pub margins: Vec<f32>,
    pub stop: StopReason,
    /// Logits at the last prompt position (after the final softcap).
    pub prompt_logits_last: Vec<f32>,
}

/// Wall-clock time spent per stage, in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub features_ms: f64,
    pub encoder_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
}

impl Timings {
    /// Adds another pass's stage times and token counts.
    pub fn add(&mut self, o: &Timings) {
        self.features_ms += o.features_ms;
        self.encoder_ms += o.encoder_ms;
        self.prefill_ms += o.prefill_ms;
        self.decode_ms += o.decode_ms;
        self.prompt_tokens += o.prompt_tokens;
        self.generated_tokens += o.generated_tokens;
    }
}

/// One ≤ 30 s audio span and what the model made of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpanTranscript {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
    pub token_ids: Vec<u32>,
    pub audio_tokens: usize,
    pub stop: StopReason,
}

/// A transcription of a whole clip.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    pub spans: Vec<SpanTranscript>,
    pub timings: Timings,
}

/// Everything `hark dump` writes, on the host.
#[derive(Debug, Clone)]
pub struct DumpTensors {
    pub mel: Vec<f32>,
    pub mel_frames: usize,
    pub subsample: Vec<f32>,
    pub audio_layers: Vec<Vec<f32>>,
    pub audio_tower: Vec<f32>,
    pub audio_embeds: Vec<f32>,
    pub audio_tokens: usize,
    pub prompt_ids: Vec<u32>,
    pub generation: Generation,
}

impl<B: Backend> SpeechModel<B> {
    /// Check the checkpoint's tensors against its config (one report listing every problem),
    /// then build the model on `device`.
    pub fn load(
        ckpt: Checkpoint,
        device: &B::Device,
        weights: impl Into<Weights>,
    ) -> Result<Self, LoadError> {
        let weights = weights.into();
        check_tensors(&ckpt)?;
        let Checkpoint {
            name,
            config,
            tokenizer,
            tensors,
        } = ckpt;
        let store = Arc::new(tensors);
        let n_mels = config.features.feature_size;
        let cache = packed_cache(&store, weights);
        let mut loader = Loader::<B>::new(&store, device.clone(), weights);
        loader.cache = cache.as_ref();
        let encoder = AudioEncoder::load(&loader, &config.audio, n_mels, config.text.hidden_size)?;
        let decoder = TextDecoder::load(&loader, &config.text, config.text_activation)?;
        if let Some(cache) = &cache {
            cache.save();
        }
        let mel = Arc::new(MelSpec::new(&config.features));
        Ok(Self {
            name,
            config,
            tokenizer,
            mel,
            encoder,
            decoder,
            weights,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The prompt for `audio_tokens` audio tokens.
    pub fn prompt(&self, task: &Task, audio_tokens: usize) -> Result<Prompt, ModelError> {
        prompt::build(&self.tokenizer, &self.config, task, audio_tokens)
    }

    /// Prompt embeddings with the audio embeddings (`[audio_len, hidden]`) at the placeholders.
    pub fn prompt_embeddings(&self, prompt: &Prompt, audio: Tensor<B, 2>) -> Tensor<B, 2> {
        let text = self
            .decoder
            .embed_tokens(&prompt.ple_ids(self.config.text.pad_token_id));
        let [n, _] = text.dims();
        let (at, len) = (prompt.audio_at, prompt.audio_len);
        let mut parts = vec![text.clone().narrow(0, 0, at)];
        if len > 0 {
            parts.push(audio);
        }
        if at + len < n {
            parts.push(text.narrow(0, at + len, n - at - len));
        }
        Tensor::cat(parts, 0)
    }

    /// Greedy decoding from a prompt whose audio embeddings are given.
    pub fn generate(
        &self,
        prompt: &Prompt,
        audio: Tensor<B, 2>,
        opts: &GenerateOptions,
    ) -> Result<(Generation, Timings), ModelError> {
        let [n_audio, _] = audio.dims();
        if n_audio != prompt.audio_len {
            return Err(ModelError::Invalid(format!(
                "{n_audio} audio embeddings for {} placeholders",
                prompt.audio_len
            )));
        }
        let max_pos = self.config.text.max_position_embeddings;
        if prompt.ids.len() + opts.max_new_tokens > max_pos {
            return Err(ModelError::TooLong {
                len: prompt.ids.len() + opts.max_new_tokens,
                max: max_pos,
            });
        }
        let mut timings = Timings {
            prompt_tokens: prompt.ids.len(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut cache = self
            .decoder
            .new_cache(prompt.ids.len() + opts.max_new_tokens);
        let embeds = self.prompt_embeddings(prompt, audio);
        let logits = self
            .decoder
            .forward(
                embeds,
                &prompt.ple_ids(self.config.text.pad_token_id),
                &mut cache,
                Logits::Last,
            )
            .expect("logits requested");
        let prompt_logits_last = to_vec(logits);
        timings.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let generation = self.decode_greedy(&mut cache, prompt_logits_last, opts.max_new_tokens);
        timings.decode_ms = t1.elapsed().as_secs_f64() * 1e3;
        timings.generated_tokens = generation.ids.len();
        Ok((generation, timings))
    }

    /// Greedy steps from the logits of the last cached position.
    pub fn decode_greedy(
        &self,
        cache: &mut DecoderCache<B>,
        first_logits: Vec<f32>,
        max_new_tokens: usize,
    ) -> Generation {
        let mut ids = Vec::new();
        let mut margins = Vec::new();
        let mut logits = first_logits.clone();
        let mut stop = StopReason::MaxTokens;
        while ids.len() < max_new_tokens {
            let (next, margin) = self.pick(&logits);
            ids.push(next);
            margins.push(margin);
            if self.config.stop_token_ids.contains(&next) {
                stop = StopReason::StopToken;
                break;
            }
            if ids.len() == max_new_tokens {
                break;
            }
            let embeds = self.decoder.embed_tokens(&[next]);
            let out = self
                .decoder
                .forward(embeds, &[next], cache, Logits::Last)
                .expect("logits requested");
            logits = to_vec(out);
        }
        Generation {
            ids,
            margins,
            stop,
            prompt_logits_last: first_logits,
        }
    }

    /// Argmax (suppressed ids excluded) and the top-2 margin.
    pub fn pick(&self, logits: &[f32]) -> (u32, f32) {
        let (mut best, mut second) = ((0usize, f32::NEG_INFINITY), f32::NEG_INFINITY);
        for (i, &v) in logits.iter().enumerate() {
            if self.config.suppress_token_ids.contains(&(i as u32)) {
                continue;
            }
            if v > best.1 {
                second = best.1;
                best = (i, v);
            } else if v > second {
                second = v;
            }
        }
        (best.0 as u32, best.1 - second)
    }

    /// Greedy choice for each row of `logits` (`[rows, vocab]`), computed on the device so
    /// only the ids travel to the host; suppressed ids are never chosen.
    pub fn argmax_rows(&self, logits: Tensor<B, 2>) -> Vec<u32> {
        let [rows, vocab] = logits.dims();
        let logits = if self.config.suppress_token_ids.is_empty() {
            logits
        } else {
            let mut mask = vec![false; vocab];
            for &id in &self.config.suppress_token_ids {
                if let Some(m) = mask.get_mut(id as usize) {
                    *m = true;
                }
            }
            let mask = Tensor::<B, 1, burn::tensor::Bool>::from_data(
                burn::tensor::TensorData::new(mask, [vocab]),
                &self.device,
            )
            .reshape([1, vocab])
            .expand([rows, vocab]);
            logits.mask_fill(mask, f32::NEG_INFINITY)
        };
        logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .expect("argmax ids are integers")
            .into_iter()
            .map(|i| i as u32)
            .collect()
    }

    /// Whether `id` ends generation.
    pub fn is_stop(&self, id: u32) -> bool {
        self.config.stop_token_ids.contains(&id)
    }

    /// Text of generated ids: stop ids and special tokens dropped, a thought block (if the
    /// model ever opens one) removed.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String, ModelError> {
        let open = self.tokenizer.token_id(special::CHANNEL_OPEN);
        let close = self.tokenizer.token_id(special::CHANNEL_CLOSE);
        let mut kept = Vec::with_capacity(ids.len());
        let mut in_thought = false;
        for &id in ids {
            if Some(id) == open {
                in_thought = true;
            } else if Some(id) == close {
                in_thought = false;
            } else if !in_thought && !self.config.stop_token_ids.contains(&id) {
                kept.push(id);
            }
        }
        Ok(self.tokenizer.decode(&kept)?.trim().to_string())
    }

    /// Transcribe (or translate) a clip of 16 kHz mono samples. Audio longer than the model's
    /// span limit (30 s for E2B) is split at quiet points; nothing is dropped.
    pub fn transcribe(
        &self,
        samples: &[f32],
        task: &Task,
        opts: &GenerateOptions,
    ) -> Result<Transcript, ModelError> {
        if samples.is_empty() {
            return Err(ModelError::EmptyAudio);
        }
        let max_span = self.max_span_samples();
        let spans = split_spans(samples, max_span, SAMPLE_RATE as usize * 5);
        let mut out = Vec::new();
        let mut timings = Timings::default();
        for range in spans {
            let clip = &samples[range.clone()];
            let t0 = Instant::now();
            let frames = features::log_mel(&self.mel, clip);
            let features_ms = t0.elapsed().as_secs_f64() * 1e3;
            let n_frames = frames.len() / self.mel.n_mels;
            if n_frames == 0 {
                if out.is_empty() && range.end == samples.len() {
                    return Err(ModelError::TooShort {
                        samples: samples.len(),
                    });
                }
                continue; // a sliver of < 10 ms at the very end of a long clip
            }
            let t1 = Instant::now();
            let audio = self.encoder.encode(&frames);
            let encoder_ms = t1.elapsed().as_secs_f64() * 1e3;
            let n_audio = audio.dims()[0];
            let prompt = self.prompt(task, n_audio)?;
            let (generation, mut t) = self.generate(&prompt, audio, opts)?;
            t.features_ms = features_ms;
            t.encoder_ms = encoder_ms;
            timings.add(&t);
            out.push(SpanTranscript {
                start_s: range.start as f64 / SAMPLE_RATE as f64,
                end_s: range.end as f64 / SAMPLE_RATE as f64,
                text: self.decode_text(&generation.ids)?,
                token_ids: generation.ids,
                audio_tokens: n_audio,
                stop: generation.stop,
            });
        }
        let text = joined_text(&out);
        Ok(Transcript {
            text,
            spans: out,
            timings,
        })
    }

    /// Longest span, in samples, whose token count stays within `audio_seq_length`.
    pub fn max_span_samples(&self) -> usize {
        // tokens(N) = ceil(valid_frames(N) / 4) ≤ cap ⇔ valid_frames ≤ 4·cap.
        let frames = 4 * self.config.max_audio_tokens;
        // valid_frames(N) = floor((N + pad − len − 1) / hop) + 1 ≤ frames ⇔ N ≤ frames·hop + len − pad.
        let m = &self.mel;
        let n = frames * m.hop_length + m.frame_length - m.left_pad();
        // HF truncates at 30 s; never go beyond the model's limit either way.
        n.min(30 * SAMPLE_RATE as usize)
    }

    /// All stages of `hark dump` for one clip (which must fit one span).
    pub fn dump(
        &self,
        samples: &[f32],
        task: &Task,
        max_new_tokens: usize,
    ) -> Result<DumpTensors, ModelError> {
        if samples.is_empty() {
            return Err(ModelError::EmptyAudio);
        }
        if samples.len() > self.max_span_samples() {
            return Err(ModelError::Invalid(format!(
                "dump takes one span of at most {} samples; got {}",
                self.max_span_samples(),
                samples.len()
            )));
        }
        let frames = features::log_mel(&self.mel, samples);
        let mel_frames = frames.len() / self.mel.n_mels;
        if mel_frames == 0 {
            return Err(ModelError::TooShort {
                samples: samples.len(),
            });
        }
        let mut state = self.encoder.new_state(true);
        let a = self.encoder.push(&mut state, &frames);
        let b = self.encoder.finish(&mut state);
        let audio = Tensor::cat(vec![a, b], 0);
        let trace = state.take_trace().expect("traced state");
        let cat = |parts: Vec<Tensor<B, 2>>| to_vec(Tensor::cat(parts, 0));
        let audio_tokens = audio.dims()[0];
        let prompt = self.prompt(task, audio_tokens)?;
        let (generation, _) =
            self.generate(&prompt, audio.clone(), &GenerateOptions { max_new_tokens })?;
        Ok(DumpTensors {
            mel: frames,
            mel_frames,
            subsample: cat(trace.subsample),
            audio_layers: trace.layers.into_iter().map(cat).collect(),
            audio_tower: cat(trace.tower),
            audio_embeds: to_vec(audio),
            audio_tokens,
            prompt_ids: prompt.ids,
            generation,
        })
    }
}

/// Check a checkpoint's tensors against its config: one report listing every missing,
/// unexpected and wrongly shaped tensor (the vision tower and unused KV-shared projections are
/// expected extras).
pub fn check_tensors(ckpt: &Checkpoint) -> Result<(), LoadError> {
    let config = &ckpt.config;
    let mut expected = encoder::expected_tensors(
        &config.audio,
        config.features.feature_size,
        config.text.hidden_size,
    );
    expected.extend(decoder::expected_tensors(&config.text));
    let report = ckpt.tensors.validate(&expected, |name| {
        name.starts_with("model.vision_tower.")
            || name.starts_with("model.embed_vision.")
            || decoder::is_ignored(&config.text, name)
    });
    if report.is_clean() {
        Ok(())
    } else {
        Err(LoadError::Weights(report))
    }
}

/// Split `[0, len)` into spans of at most `max` samples, each cut at [`quietest_cut`].
pub fn split_spans(samples: &[f32], max: usize, search: usize) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut start = 0;
    while samples.len() - start > max {
        let cut = start + quietest_cut(&samples[start..start + max], search);
        spans.push(start..cut);
        start = cut;
    }
    spans.push(start..samples.len());
    spans
}

/// Where to end a span that has reached its limit (`span.len()` samples): the centre of the
/// quietest 20 ms window among the last `search` samples (never in the first half). Offline
/// splitting and the streaming engine share it, so both cut long audio at the same sample.
pub fn quietest_cut(span: &[f32], search: usize) -> usize {
    const WINDOW: usize = 320;
    let limit = span.len();
    let lo = limit.saturating_sub(search).max(limit / 2);
    let mut best = (f64::INFINITY, limit);
    let mut pos = lo;
    while pos + WINDOW <= limit {
        let energy: f64 = span[pos..pos + WINDOW]
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum();
        // `<=` prefers the latest quietest point, keeping spans long.
        if energy <= best.0 {
            best = (energy, pos + WINDOW / 2);
        }
        pos += WINDOW / 2;
    }
    best.1
}

/// Models at least this large keep their packed weights on disk between starts (packing takes
/// tens of seconds there; for small ones it is quicker than reading a cache).
const PACKED_CACHE_MIN_PARAMETERS: usize = 100_000_000;

/// The packed-weight cache for a checkpoint read from files, when the CPU kernels hold the
/// weights and the model is large enough to be worth it.
fn packed_cache(store: &TensorStore, weights: Weights) -> Option<PackedCache> {
    if weights.kernels != Kernels::Host || store.parameters() < PACKED_CACHE_MIN_PARAMETERS {
        return None;
    }
    let identity = store.identity()?;
    let dir = PackedCache::default_dir()?;
    Some(PackedCache::open(
        &dir,
        &format!("{identity}; {}", weights.dtype),
    ))
}

/// The spans' texts joined by single spaces, empty spans skipped.
pub fn joined_text(spans: &[SpanTranscript]) -> String {
    spans
        .iter()
        .map(|s| s.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::split_spans;

    #[test]
    fn long_audio_is_split_at_quiet_points_without_loss() {
        // 70 s of "speech" (noise bursts) with a silent gap at 27 s and 53 s.
        let rate = 16_000;
        let mut x: Vec<f32> = (0..70 * rate)
            .map(|i| ((i * 7919 % 997) as f32 / 997.0 - 0.5) * 0.5)
            .collect();
        for gap in [27 * rate, 53 * rate] {
            x[gap..gap + rate / 5].fill(0.0);
        }
        let spans = split_spans(&x, 30 * rate, 5 * rate);
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].start, 0);
        assert_eq!(spans.last().unwrap().end, x.len());
        for w in spans.windows(2) {
            assert_eq!(w[0].end, w[1].start, "contiguous, nothing lost or repeated");
        }
        for s in &spans {
            assert!(s.len() <= 30 * rate);
        }
        assert!(
            (27 * rate..27 * rate + rate / 5).contains(&spans[0].end),
            "{:?}",
            spans
        );
        assert!(
            (53 * rate..53 * rate + rate / 5).contains(&spans[1].end),
            "{:?}",
            spans
        );
    }
}
