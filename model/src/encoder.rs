//! The audio tower (`Gemma4AudioModel`) and `embed_audio`, written as a streaming encoder.
//!
//! The encoder is causal after its subsampler, so one code path serves both uses: a stream
//! pushes mel frames as they arrive and gets each audio token as soon as it is final (token k
//! needs mel frame 4k+3); an offline clip is the same push of all its frames followed by
//! [`AudioEncoder::finish`], which reproduces HF's end-of-clip zero padding and masking.
//!
//! Per stream the state is: the pending mel frames and conv0 rows of the subsampler, and per
//! conformer layer the keys/values of the last `window − 1` tokens and the last `kernel − 1`
//! GLU outputs of the light conv (docs/model.md §3.2).

use burn::tensor::{
    Bool, Int, Tensor, TensorData, activation, backend::Backend, module::conv2d, ops::ConvOptions,
};

use crate::config::AudioConfig;
use crate::error::LoadError;
use crate::nn::{self, ClippableLinear, Linear, Loader, RmsNorm, activate, clamp_finite, softcap};

const TOWER: &str = "model.audio_tower";

/// Names and shapes of every audio tensor the checkpoint must hold: what
/// [`AudioEncoder::load`] reads.
pub fn expected_tensors(
    c: &AudioConfig,
    n_mels: usize,
    text_hidden: usize,
) -> Vec<(String, Vec<usize>)> {
    nn::record(|l| AudioEncoder::load(l, c, n_mels, text_hidden))
}

/// Frequency bins after the two stride-2 convs (kernel 3, padding 1).
pub fn subsampled_freqs(n_mels: usize) -> usize {
    n_mels.div_ceil(2).div_ceil(2)
}

/// Number of audio tokens of a clip with `valid_frames` valid mel frames (docs/model.md §1.5).
pub fn tokens_for_frames(valid_frames: usize) -> usize {
    valid_frames.div_ceil(4)
}

// ---------------------------------------------------------------------------------------------
// Subsampler
// ---------------------------------------------------------------------------------------------

/// Conv2d (3×3, stride 2, pad 1) → LayerNorm over channels (no bias) → ReLU.
#[derive(Debug, Clone)]
struct ConvBlock<B: Backend> {
    weight: Tensor<B, 4>,
    norm: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> ConvBlock<B> {
    fn load(l: &Loader<B>, c_out: usize, c_in: usize, eps: f64) -> Result<Self, LoadError> {
        Ok(Self {
            weight: l.f32("conv.weight", [c_out, c_in, 3, 3])?,
            norm: l.f32("norm.weight", [c_out])?,
            eps,
        })
    }

    /// `x`: `[1, c_in, 2n + 1, f]`, time already holding its one row of left context and no
    /// padding; frequency is zero-padded here. Returns `[1, c_out, n, ceil(f / 2)]`.
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = conv2d(
            x,
            self.weight.clone(),
            None,
            ConvOptions::new([2, 2], [0, 1], [1, 1], 1),
        );
        // LayerNorm over the channel axis, per (time, freq) position.
        let mean = y.clone().mean_dim(1);
        let centred = y - mean;
        let var = centred.clone().powi_scalar(2).mean_dim(1);
        let normed = centred * (var + self.eps).powf_scalar(-0.5);
        let c = self.norm.dims()[0];
        activation::relu(normed * self.norm.clone().reshape([1, c, 1, 1]))
    }
}

#[derive(Debug, Clone)]
struct Subsampler<B: Backend> {
    layer0: ConvBlock<B>,
    layer1: ConvBlock<B>,
    input_proj: Linear<B>,
    n_mels: usize,
}

impl<B: Backend> Subsampler<B> {
    fn load(l: &Loader<B>, c: &AudioConfig, n_mels: usize) -> Result<Self, LoadError> {
        let [c0, c1] = c.conv_channels;
        let flat = subsampled_freqs(n_mels) * c1;
        Ok(Self {
            layer0: ConvBlock::load(&l.pp("layer0"), c0, 1, c.rms_norm_eps)?,
            layer1: ConvBlock::load(&l.pp("layer1"), c1, c0, c.rms_norm_eps)?,
            input_proj: Linear::load(l, "input_proj_linear", c.hidden_size, flat, false)?,
            n_mels,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Conformer block
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct FeedForward<B: Backend> {
    pre_norm: RmsNorm<B>,
    up: ClippableLinear<B>,
    down: ClippableLinear<B>,
    post_norm: RmsNorm<B>,
}

#[derive(Debug, Clone)]
struct Attention<B: Backend> {
    q: ClippableLinear<B>,
    k: ClippableLinear<B>,
    v: ClippableLinear<B>,
    post: ClippableLinear<B>,
    /// `head_dim^-½ / ln 2 · softplus(per_dim_scale)`, shape `[1, 1, head_dim]`.
    q_scale: Tensor<B, 3>,
    /// Relative-position keys by distance d = 0..window, `[heads, head_dim, window]`
    /// (zero columns for distances the HF table does not reach).
    rel_keys: Tensor<B, 3>,
}

#[derive(Debug, Clone)]
struct LightConv<B: Backend> {
    pre_norm: RmsNorm<B>,
    start: ClippableLinear<B>,
    /// Depthwise taps, `[kernel, 1, hidden]` (tap j multiplies input t − (kernel − 1) + j).
    taps: Vec<Tensor<B, 2>>,
    conv_norm: RmsNorm<B>,
    end: ClippableLinear<B>,
}

#[derive(Debug, Clone)]
struct ConformerLayer<B: Backend> {
    ffw1: FeedForward<B>,
    norm_pre_attn: RmsNorm<B>,
    attn: Attention<B>,
    norm_post_attn: RmsNorm<B>,
    lconv: LightConv<B>,
    ffw2: FeedForward<B>,
    norm_out: RmsNorm<B>,
}

/// Per-layer streaming state.
#[derive(Debug, Clone)]
struct LayerState<B: Backend> {
    /// Scaled keys and values of the last `window − 1` tokens, `[n, heads, head_dim]`.
    keys: Option<Tensor<B, 3>>,
    values: Option<Tensor<B, 3>>,
    /// The last `kernel − 1` GLU outputs, `[kernel − 1, hidden]` (zeros at stream start).
    conv: Tensor<B, 2>,
}

/// Intermediate outputs, kept only when asked for (`hark dump`).
#[derive(Debug, Clone)]
pub struct EncoderTrace<B: Backend> {
    pub subsample: Vec<Tensor<B, 2>>,
    pub layers: Vec<Vec<Tensor<B, 2>>>,
    pub tower: Vec<Tensor<B, 2>>,
}

impl<B: Backend> EncoderTrace<B> {
    fn new(layers: usize) -> Self {
        Self {
            subsample: Vec::new(),
            layers: vec![Vec::new(); layers],
            tower: Vec::new(),
        }
    }
}

/// Streaming state of one audio stream.
#[derive(Debug, Clone)]
pub struct EncoderState<B: Backend> {
    /// Mel frames not yet fully consumed, row-major; the first is frame `frames_start`
    /// (−1 stands for the zero frame before the stream).
    frames: Vec<f32>,
    frames_start: isize,
    frames_total: usize,
    /// conv0 rows not yet fully consumed, `[1, c0, n, f0]`; the first is row `rows_start`.
    rows: Option<Tensor<B, 4>>,
    rows_start: isize,
    rows_total: usize,
    tokens_total: usize,
    layers: Vec<LayerState<B>>,
    trace: Option<EncoderTrace<B>>,
    finished: bool,
}

impl<B: Backend> EncoderState<B> {
    /// Tokens emitted so far.
    pub fn tokens_emitted(&self) -> usize {
        self.tokens_total
    }

    /// Mel frames received so far.
    pub fn frames_received(&self) -> usize {
        self.frames_total
    }

    /// Take the intermediate outputs recorded so far (if the state was made with tracing).
    pub fn take_trace(&mut self) -> Option<EncoderTrace<B>> {
        self.trace.take()
    }
}

/// The audio tower plus `embed_audio`.
#[derive(Debug, Clone)]
pub struct AudioEncoder<B: Backend> {
    cfg: AudioConfig,
    sub: Subsampler<B>,
    layers: Vec<ConformerLayer<B>>,
    output_proj: Linear<B>,
    embed_norm: RmsNorm<B>,
    embed_proj: Linear<B>,
    device: B::Device,
}

impl<B: Backend> AudioEncoder<B> {
    pub fn load(
        l: &Loader<B>,
        c: &AudioConfig,
        n_mels: usize,
        text_hidden: usize,
    ) -> Result<Self, LoadError> {
        let tower = l.pp(TOWER);
        let layers = (0..c.num_layers)
            .map(|i| ConformerLayer::load(&tower.pp(format!("layers.{i}")), c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            cfg: c.clone(),
            sub: Subsampler::load(&tower.pp("subsample_conv_projection"), c, n_mels)?,
            layers,
            output_proj: Linear::load(&tower, "output_proj", c.output_dim, c.hidden_size, true)?,
            embed_norm: RmsNorm::without_weight(c.rms_norm_eps),
            embed_proj: Linear::load(
                &l.pp("model.embed_audio"),
                "embedding_projection",
                text_hidden,
                c.output_dim,
                false,
            )?,
            device: l.device.clone(),
        })
    }

    pub fn config(&self) -> &AudioConfig {
        &self.cfg
    }

    /// A fresh stream: the state of an offline clip's start (zero padding, empty caches).
    pub fn new_state(&self, trace: bool) -> EncoderState<B> {
        let d = self.cfg.hidden_size;
        let conv_ctx = self.cfg.conv_kernel_size - 1;
        EncoderState {
            frames: vec![0.0; self.sub.n_mels],
            frames_start: -1,
            frames_total: 0,
            rows: None,
            rows_start: -1,
            rows_total: 0,
            tokens_total: 0,
            layers: (0..self.layers.len())
                .map(|_| LayerState {
                    keys: None,
                    values: None,
                    conv: Tensor::zeros([conv_ctx, d], &self.device),
                })
                .collect(),
            trace: trace.then(|| EncoderTrace::new(self.layers.len())),
            finished: false,
        }
    }

    /// Push mel frames (`n_mels` values each); returns the embeddings of the audio tokens that
    /// became final, `[n, text_hidden]` (n may be 0).
    pub fn push(&self, state: &mut EncoderState<B>, frames: &[f32]) -> Tensor<B, 2> {
        assert!(!state.finished, "push after finish");
        let n_mels = self.sub.n_mels;
        assert_eq!(frames.len() % n_mels, 0, "whole frames only");
        state.frames.extend_from_slice(frames);
        state.frames_total += frames.len() / n_mels;
        // conv0 row j needs frames 2j−1, 2j, 2j+1.
        let rows_ready = state.frames_total / 2;
        self.advance(state, rows_ready, false)
    }

    /// End of stream: emit the remaining tokens exactly as the offline model computes the last
    /// tokens of a clip (frames past the end are zero, conv0 rows past the valid ones are zero).
    pub fn finish(&self, state: &mut EncoderState<B>) -> Tensor<B, 2> {
        assert!(!state.finished, "finish twice");
        let valid_frames = state.frames_total;
        let valid_rows = valid_frames.div_ceil(2);
        // Pad with zero frames so every valid conv0 row has its right neighbour.
        let have = state.frames_start + (state.frames.len() / self.sub.n_mels) as isize;
        let need = 2 * valid_rows as isize;
        if need > have {
            state.frames.resize(
                state.frames.len() + (need - have) as usize * self.sub.n_mels,
                0.0,
            );
        }
        let out = self.advance(state, valid_rows, true);
        state.finished = true;
        out
    }

    fn advance(&self, state: &mut EncoderState<B>, rows_ready: usize, last: bool) -> Tensor<B, 2> {
        let n_mels = self.sub.n_mels;
        // --- conv0 rows [rows_total, rows_ready)
        if rows_ready > state.rows_total {
            let j0 = state.rows_total;
            let n = rows_ready - j0;
            let first = 2 * j0 as isize - 1;
            let offset = (first - state.frames_start) as usize * n_mels;
            let input: Vec<f32> = state.frames[offset..offset + (2 * n + 1) * n_mels].to_vec();
            let x = Tensor::<B, 4>::from_data(
                TensorData::new(input, [1, 1, 2 * n + 1, n_mels]),
                &self.device,
            );
            let rows = self.sub.layer0.forward(x);
            state.rows = Some(match state.rows.take() {
                Some(prev) => Tensor::cat(vec![prev, rows], 2),
                // Row −1: the zero row before the stream.
                None => {
                    let [_, c0, _, f0] = rows.dims();
                    Tensor::cat(vec![Tensor::zeros([1, c0, 1, f0], &self.device), rows], 2)
                }
            });
            state.rows_total = rows_ready;
            // Keep frames from 2·rows_ready − 1 on.
            let keep_from = 2 * rows_ready as isize - 1;
            let drop = ((keep_from - state.frames_start) as usize * n_mels).min(state.frames.len());
            state.frames.drain(..drop);
            state.frames_start = keep_from;
        }
        // --- conv1 rows (tokens) [tokens_total, tokens_ready)
        let tokens_ready = if last {
            state.rows_total.div_ceil(2)
        } else {
            state.rows_total / 2
        };
        if tokens_ready <= state.tokens_total {
            return Tensor::zeros([0, self.embed_proj.out_features()], &self.device);
        }
        let k0 = state.tokens_total;
        let n = tokens_ready - k0;
        let rows = state
            .rows
            .clone()
            .expect("conv0 rows exist once tokens are ready");
        let [_, c0, have, f0] = rows.dims();
        let first = 2 * k0 as isize - 1;
        let start = (first - state.rows_start) as usize;
        let want = 2 * n + 1;
        let rows_in = if start + want <= have {
            rows.clone().narrow(2, start, want)
        } else {
            // Only at the end: rows past the valid ones are zero (HF re-masks conv1's input).
            let avail = have - start;
            Tensor::cat(
                vec![
                    rows.clone().narrow(2, start, avail),
                    Tensor::zeros([1, c0, want - avail, f0], &self.device),
                ],
                2,
            )
        };
        let y = self.sub.layer1.forward(rows_in); // [1, c1, n, f1]
        let [_, c1, _, f1] = y.dims();
        // Freq-major, channel-minor flatten: index f·c1 + c.
        let flat = y.permute([0, 2, 3, 1]).reshape([n, f1 * c1]);
        let mut h = self.sub.input_proj.forward(flat);
        state.tokens_total = tokens_ready;
        let keep_from = 2 * tokens_ready as isize - 1;
        let drop = (keep_from - state.rows_start).max(0) as usize;
        if drop > 0 {
            let keep = have.saturating_sub(drop);
            state.rows = Some(if keep > 0 {
                rows.narrow(2, drop.min(have), keep)
            } else {
                Tensor::zeros([1, c0, 0, f0], &self.device)
            });
            state.rows_start = keep_from;
        }
        if let Some(t) = state.trace.as_mut() {
            t.subsample.push(h.clone());
        }
        for (i, (layer, ls)) in self.layers.iter().zip(state.layers.iter_mut()).enumerate() {
            h = layer.forward(&self.cfg, h, ls);
            if let Some(t) = state.trace.as_mut() {
                t.layers[i].push(h.clone());
            }
        }
        let tower = self.output_proj.forward(h);
        if let Some(t) = state.trace.as_mut() {
            t.tower.push(tower.clone());
        }
        self.embed_proj.forward(self.embed_norm.forward(tower))
    }

    /// Offline: every audio token of a clip's valid mel frames, `[tokens, text_hidden]`.
    pub fn encode(&self, frames: &[f32]) -> Tensor<B, 2> {
        let mut state = self.new_state(false);
        let a = self.push(&mut state, frames);
        let b = self.finish(&mut state);
        Tensor::cat(vec![a, b], 0)
    }
}

impl<B: Backend> ConformerLayer<B> {
    fn load(l: &Loader<B>, c: &AudioConfig) -> Result<Self, LoadError> {
        let norm = |name: &str| RmsNorm::load(l, name, c.hidden_size, c.rms_norm_eps);
        Ok(Self {
            ffw1: FeedForward::load(&l.pp("feed_forward1"), c)?,
            norm_pre_attn: norm("norm_pre_attn")?,
            attn: Attention::load(&l.pp("self_attn"), c)?,
            norm_post_attn: norm("norm_post_attn")?,
            lconv: LightConv::load(&l.pp("lconv1d"), c)?,
            ffw2: FeedForward::load(&l.pp("feed_forward2"), c)?,
            norm_out: norm("norm_out")?,
        })
    }
}

impl<B: Backend> FeedForward<B> {
    fn load(l: &Loader<B>, c: &AudioConfig) -> Result<Self, LoadError> {
        let (d, clip) = (c.hidden_size, c.use_clipped_linears);
        Ok(Self {
            pre_norm: RmsNorm::load(l, "pre_layer_norm", d, c.rms_norm_eps)?,
            up: ClippableLinear::load(l, "ffw_layer_1", 4 * d, d, clip)?,
            down: ClippableLinear::load(l, "ffw_layer_2", d, 4 * d, clip)?,
            post_norm: RmsNorm::load(l, "post_layer_norm", d, c.rms_norm_eps)?,
        })
    }
}

impl<B: Backend> Attention<B> {
    fn load(l: &Loader<B>, c: &AudioConfig) -> Result<Self, LoadError> {
        let (d, hd, clip) = (c.hidden_size, c.head_dim, c.use_clipped_linears);
        // Query scale: head_dim^-½ / ln 2 · softplus(per_dim_scale).
        let base = (hd as f64).powf(-0.5) / std::f64::consts::LN_2;
        let q_scale: Vec<f32> = l
            .host("per_dim_scale", &[hd])?
            .iter()
            .map(|&s| (base * (1.0 + (s as f64).exp()).ln()) as f32)
            .collect();
        let q_scale = Tensor::<B, 1>::from_data(TensorData::new(q_scale, [hd]), &l.device)
            .reshape([1, 1, hd]);
        let rel_proj = Linear::load(l, "relative_k_proj", d, d, false)?;
        // Computed from the weights, so not while only recording names.
        let rel_keys = if l.is_recording() {
            Tensor::empty([0, 0, 0], &l.device)
        } else {
            relative_keys(c, &rel_proj, &l.device)
        };
        Ok(Self {
            q: ClippableLinear::load(l, "q_proj", d, d, clip)?,
            k: ClippableLinear::load(l, "k_proj", d, d, clip)?,
            v: ClippableLinear::load(l, "v_proj", d, d, clip)?,
            post: ClippableLinear::load(l, "post", d, d, clip)?,
            q_scale,
            rel_keys,
        })
    }
}

/// Relative-position keys, `[heads, head_dim, window]`: relative_k_proj(sinusoid(position))
/// for position = offset + d.
fn relative_keys<B: Backend>(
    c: &AudioConfig,
    rel_proj: &Linear<B>,
    device: &B::Device,
) -> Tensor<B, 3> {
    let d = c.hidden_size;
    let window = c.max_past;
    let half = d / 2;
    let increment = (10_000f64).ln() / (half.max(2) - 1) as f64;
    let mut table = vec![0.0f32; window * d];
    let mut valid = vec![true; window];
    for dist in 0..window {
        let pos = c.rel_offset + dist as isize;
        if pos < 0 || pos as usize >= c.rel_positions {
            valid[dist] = false;
            continue;
        }
        for j in 0..half {
            let inv = (-(j as f64) * increment).exp() as f32;
            let angle = (pos as f32 * inv) as f64;
            table[dist * d + j] = angle.sin() as f32;
            table[dist * d + half + j] = angle.cos() as f32;
        }
    }
    let table = Tensor::<B, 2>::from_data(TensorData::new(table, [window, d]), device);
    let mask: Vec<f32> = valid.iter().map(|&v| if v { 1.0 } else { 0.0 }).collect();
    let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [window, 1]), device);
    let rel = rel_proj.forward(table) * mask; // [window, d]
    rel.reshape([window, c.num_heads, c.head_dim])
        .permute([1, 2, 0])
}

impl<B: Backend> LightConv<B> {
    fn load(l: &Loader<B>, c: &AudioConfig) -> Result<Self, LoadError> {
        let (d, k, clip) = (c.hidden_size, c.conv_kernel_size, c.use_clipped_linears);
        let w = l.host("depthwise_conv1d.weight", &[d, 1, k])?;
        let taps = (0..k)
            .map(|j| {
                let tap: Vec<f32> = (0..d).map(|ch| w[ch * k + j]).collect();
                Tensor::<B, 2>::from_data(TensorData::new(tap, [1, d]), &l.device)
            })
            .collect();
        Ok(Self {
            pre_norm: RmsNorm::load(l, "pre_layer_norm", d, c.rms_norm_eps)?,
            start: ClippableLinear::load(l, "linear_start", 2 * d, d, clip)?,
            taps,
            conv_norm: RmsNorm::load(l, "conv_norm", d, c.rms_norm_eps)?,
            end: ClippableLinear::load(l, "linear_end", d, d, clip)?,
        })
    }
}

impl<B: Backend> ConformerLayer<B> {
    fn forward(&self, c: &AudioConfig, x: Tensor<B, 2>, state: &mut LayerState<B>) -> Tensor<B, 2> {
        let gc = c.gradient_clipping.min(f32::MAX as f64) as f32;
        let x = self.ffw1.forward(c, x);
        let a = self.norm_pre_attn.forward(clamp_finite(x.clone(), -gc, gc));
        let a = self.attn.forward(c, a, state);
        let a = self.norm_post_attn.forward(clamp_finite(a, -gc, gc));
        let x = x + a;
        let x = self.lconv.forward(c, x, state);
        let x = self.ffw2.forward(c, x);
        self.norm_out.forward(clamp_finite(x, -gc, gc))
    }
}

impl<B: Backend> FeedForward<B> {
    fn forward(&self, c: &AudioConfig, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let gc = c.gradient_clipping.min(f32::MAX as f64) as f32;
        let y = self.pre_norm.forward(clamp_finite(x.clone(), -gc, gc));
        let y = self
            .down
            .forward(activate(c.activation, self.up.forward(y)));
        let y = self.post_norm.forward(clamp_finite(y, -gc, gc));
        x + y.mul_scalar(c.residual_weight)
    }
}

impl<B: Backend> Attention<B> {
    /// Causal sliding-window attention with relative-position bias: query t sees keys
    /// t − window + 1 … t (docs/model.md §2.4; chunking in HF is an implementation detail).
    fn forward(&self, c: &AudioConfig, x: Tensor<B, 2>, state: &mut LayerState<B>) -> Tensor<B, 2> {
        let [t, d] = x.dims();
        let (h, hd, w) = (c.num_heads, c.head_dim, c.max_past);
        let device = x.device();
        let k_scale = ((1.0 + std::f64::consts::E).ln() / std::f64::consts::LN_2) as f32;
        let q = self.q.forward(x.clone()).reshape([t, h, hd]) * self.q_scale.clone();
        let k = self
            .k
            .forward(x.clone())
            .reshape([t, h, hd])
            .mul_scalar(k_scale);
        let v = self.v.forward(x).reshape([t, h, hd]);
        let cached = state.keys.as_ref().map_or(0, |k| k.dims()[0]);
        let (keys, values) = match (state.keys.take(), state.values.take()) {
            (Some(pk), Some(pv)) => (Tensor::cat(vec![pk, k], 0), Tensor::cat(vec![pv, v], 0)),
            _ => (k, v),
        };
        // Window of query i: key-timeline index cached + i − dist, dist = 0..w.
        let mut index = Vec::with_capacity(t * w);
        let mut invalid = Vec::with_capacity(t * w);
        for i in 0..t {
            for dist in 0..w {
                let s = (cached + i) as isize - dist as isize;
                index.push(s.max(0) as i64);
                invalid.push(s < 0);
            }
        }
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [t * w]), &device);
        let kwin = keys
            .clone()
            .select(0, index.clone())
            .reshape([t, w, h, hd])
            .permute([0, 2, 1, 3]);
        let vwin = values
            .clone()
            .select(0, index)
            .reshape([t, w, h, hd])
            .permute([0, 2, 1, 3]);
        // Content term: q_t · k_s, [t, h, w].
        let ac = (q.clone().unsqueeze_dim::<4>(2) * kwin)
            .sum_dim(3)
            .reshape([t, h, w]);
        // Position term: q_t · R[dist], [t, h, w].
        let bd = q
            .swap_dims(0, 1)
            .matmul(self.rel_keys.clone())
            .swap_dims(0, 1);
        let logits = softcap(ac + bd, c.logit_cap);
        let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(invalid, [t, w]), &device)
            .reshape([t, 1, w])
            .expand([t, h, w]);
        let logits = logits.mask_fill(mask, c.invalid_logit);
        let probs = activation::softmax(logits, 2);
        let out = (probs.unsqueeze_dim::<4>(3) * vwin)
            .sum_dim(2)
            .reshape([t, d]);
        // Keep the last w − 1 keys/values for the next push.
        let total = cached + t;
        // (None when the window is the query alone: `attention_context_left` 2.)
        let keep = (w - 1).min(total);
        state.keys = (keep > 0).then(|| keys.narrow(0, total - keep, keep));
        state.values = (keep > 0).then(|| values.narrow(0, total - keep, keep));
        self.post.forward(out)
    }
}

impl<B: Backend> LightConv<B> {
    fn forward(&self, c: &AudioConfig, x: Tensor<B, 2>, state: &mut LayerState<B>) -> Tensor<B, 2> {
        let gc = c.gradient_clipping.min(f32::MAX as f64) as f32;
        let [t, d] = x.dims();
        let y = self.start.forward(self.pre_norm.forward(x.clone()));
        let glu = y.clone().narrow(1, 0, d) * activation::sigmoid(y.narrow(1, d, d));
        let k = self.taps.len();
        let conv = if k == 1 {
            // A one-tap conv (`conv_kernel_size` 1) has no past to keep.
            glu * self.taps[0].clone()
        } else {
            let input = Tensor::cat(vec![state.conv.clone(), glu], 0); // [k − 1 + t, d]
            let mut conv = input.clone().narrow(0, 0, t) * self.taps[0].clone();
            for (j, tap) in self.taps.iter().enumerate().skip(1) {
                conv = conv + input.clone().narrow(0, j, t) * tap.clone();
            }
            state.conv = input.narrow(0, t, k - 1);
            conv
        };
        let y = self.conv_norm.forward(clamp_finite(conv, -gc, gc));
        let y = self.end.forward(activate(c.activation, y));
        x + y
    }
}
