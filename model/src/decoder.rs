//! The Gemma 4 text decoder (`Gemma4TextModel` + tied LM head) with explicit KV caches.
//!
//! Positions are plain token indices. Each cache-owning layer keeps a preallocated cache that
//! can be appended to and truncated back to any earlier position — the streaming engine appends
//! audio as it arrives, decodes a hypothesis on top, then truncates back to the audio. Layers
//! that reuse another layer's K/V (KV sharing) write nothing, so positions whose logits are not
//! needed only run the cache-owning layers (docs/model.md §3.4, §4.7).

use std::ops::Range;
use std::sync::Arc;

use burn::tensor::{Bool, Tensor, TensorData, activation, backend::Backend};

use crate::checkpoint::TensorStore;
use crate::config::{Activation, KvSource, LayerKind, LayerSpec, RopeSpec, TextConfig};
use crate::error::LoadError;
use crate::nn::{self, Linear, Loader, RmsNorm, activate, softcap};

const LM: &str = "model.language_model";

/// Names and shapes of every text tensor the checkpoint must hold: what
/// [`TextDecoder::load`] reads (the activation does not change what it reads).
pub fn expected_tensors(c: &TextConfig) -> Vec<(String, Vec<usize>)> {
    nn::record(|l| TextDecoder::load(l, c, Activation::Silu))
}

/// Stored tensors the text model may carry but never uses (HF ignores them too).
pub fn is_ignored(c: &TextConfig, name: &str) -> bool {
    if name == "lm_head.weight" && c.tie_word_embeddings {
        return true;
    }
    // KV-shared layers may still ship k/v projections and norms.
    let Some(rest) = name.strip_prefix(&format!("{LM}.layers.")) else {
        return false;
    };
    let Some((idx, tail)) = rest.split_once('.') else {
        return false;
    };
    let kv = [
        "self_attn.k_proj.",
        "self_attn.v_proj.",
        "self_attn.k_norm.",
        "self_attn.v_norm.",
    ];
    idx.parse::<usize>()
        .ok()
        .and_then(|i| c.layers.get(i))
        .is_some_and(|l| {
            matches!(l.kv_source, KvSource::Shared(_)) && kv.iter().any(|p| tail.starts_with(p))
        })
}

// ---------------------------------------------------------------------------------------------
// KV cache
// ---------------------------------------------------------------------------------------------

/// Keys and values of one cache-owning layer, `[kv_heads, capacity, head_dim]`, valid up to
/// the owning [`DecoderCache`]'s length. Grows by doubling when full.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    keys: Tensor<B, 3>,
    values: Tensor<B, 3>,
}

impl<B: Backend> KvCache<B> {
    fn new(kv_heads: usize, head_dim: usize, capacity: usize, device: &B::Device) -> Self {
        Self {
            keys: Tensor::zeros([kv_heads, capacity, head_dim], device),
            values: Tensor::zeros([kv_heads, capacity, head_dim], device),
        }
    }

    fn capacity(&self) -> usize {
        self.keys.dims()[1]
    }

    /// Write `k`, `v` (`[kv_heads, t, head_dim]`) at positions `at..at + t`.
    fn write(&mut self, at: usize, k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let [kvh, t, hd] = k.dims();
        if at + t > self.capacity() {
            let cap = (at + t).next_power_of_two().max(2 * self.capacity());
            let device = self.keys.device();
            let grow = |old: &Tensor<B, 3>| {
                let extra = Tensor::zeros([kvh, cap - old.dims()[1], hd], &device);
                Tensor::cat(vec![old.clone(), extra], 1)
            };
            self.keys = grow(&self.keys);
            self.values = grow(&self.values);
        }
        let keys = std::mem::replace(&mut self.keys, Tensor::empty([0, 0, 0], &k.device()));
        self.keys = keys.slice_assign([0..kvh, at..at + t, 0..hd], k);
        let values = std::mem::replace(&mut self.values, Tensor::empty([0, 0, 0], &v.device()));
        self.values = values.slice_assign([0..kvh, at..at + t, 0..hd], v);
    }

    fn range(&self, from: usize, to: usize) -> (Tensor<B, 3>, Tensor<B, 3>) {
        (
            self.keys.clone().narrow(1, from, to - from),
            self.values.clone().narrow(1, from, to - from),
        )
    }
}

/// The decoder's state for one sequence: a cache per cache-owning layer and the length.
#[derive(Debug, Clone)]
pub struct DecoderCache<B: Backend> {
    /// The cache of layer `i` is `layers[i]`: the cache-owning layers are the first ones (every
    /// KV-shared layer comes after them, [`TextConfig::first_shared_layer`]).
    layers: Vec<KvCache<B>>,
    len: usize,
}

impl<B: Backend> DecoderCache<B> {
    /// A placeholder holding nothing (for moving a cache out of a struct temporarily).
    pub fn empty() -> Self {
        Self {
            layers: Vec::new(),
            len: 0,
        }
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget every position from `len` on (the data stays allocated for reuse).
    pub fn truncate(&mut self, len: usize) {
        assert!(
            len <= self.len,
            "truncate to {len} beyond length {}",
            self.len
        );
        self.len = len;
    }
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// Where a layer's keys and values come from.
#[derive(Debug, Clone)]
enum Kv<B: Backend> {
    /// The layer projects and caches its own; `v` is `None` when the values are the key
    /// projection (`attention_k_eq_v`).
    Own {
        k: Linear<B>,
        k_norm: RmsNorm<B>,
        v: Option<Linear<B>>,
    },
    /// The layer reads the cache of this earlier layer (KV sharing).
    Shared(usize),
}

#[derive(Debug, Clone)]
struct SelfAttention<B: Backend> {
    spec: LayerSpec,
    num_heads: usize,
    q: Linear<B>,
    q_norm: RmsNorm<B>,
    kv: Kv<B>,
    v_norm: RmsNorm<B>,
    o: Linear<B>,
}

impl<B: Backend> SelfAttention<B> {
    fn load(l: &Loader<B>, c: &TextConfig, spec: &LayerSpec) -> Result<Self, LoadError> {
        let (h, nh, hd, kvh) = (c.hidden_size, c.num_heads, spec.head_dim, spec.num_kv_heads);
        let (bias, eps) = (c.attention_bias, c.rms_norm_eps);
        let kv = match spec.kv_source {
            KvSource::Own => Kv::Own {
                k: Linear::load(l, "k_proj", kvh * hd, h, bias)?,
                k_norm: RmsNorm::load(l, "k_norm", hd, eps)?,
                v: (!spec.k_eq_v)
                    .then(|| Linear::load(l, "v_proj", kvh * hd, h, bias))
                    .transpose()?,
            },
            KvSource::Shared(layer) => Kv::Shared(layer),
        };
        Ok(Self {
            spec: spec.clone(),
            num_heads: nh,
            q: Linear::load(l, "q_proj", nh * hd, h, bias)?,
            q_norm: RmsNorm::load(l, "q_norm", hd, eps)?,
            kv,
            v_norm: RmsNorm::without_weight(eps),
            o: Linear::load(l, "o_proj", h, nh * hd, bias)?,
        })
    }
}

#[derive(Debug, Clone)]
struct Mlp<B: Backend> {
    gate: Linear<B>,
    up: Linear<B>,
    down: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn load(l: &Loader<B>, hidden: usize, intermediate: usize) -> Result<Self, LoadError> {
        Ok(Self {
            gate: Linear::load(l, "gate_proj", intermediate, hidden, false)?,
            up: Linear::load(l, "up_proj", intermediate, hidden, false)?,
            down: Linear::load(l, "down_proj", hidden, intermediate, false)?,
        })
    }

    fn forward(&self, act: Activation, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.down
            .forward(activate(act, self.gate.forward(x.clone())) * self.up.forward(x))
    }
}

/// A layer's share of the per-layer embeddings: gated by the hidden state, projected back.
#[derive(Debug, Clone)]
struct PerLayerInput<B: Backend> {
    gate: Linear<B>,
    projection: Linear<B>,
    norm: RmsNorm<B>,
}

impl<B: Backend> PerLayerInput<B> {
    fn load(l: &Loader<B>, c: &TextConfig) -> Result<Self, LoadError> {
        let (h, ple) = (c.hidden_size, c.ple_dim);
        Ok(Self {
            gate: Linear::load(l, "per_layer_input_gate", ple, h, false)?,
            projection: Linear::load(l, "per_layer_projection", h, ple, false)?,
            norm: RmsNorm::load(l, "post_per_layer_input_norm", h, c.rms_norm_eps)?,
        })
    }

    /// The residual update for hidden state `h` and this layer's input `[rows, ple_dim]`.
    fn forward(&self, act: Activation, h: Tensor<B, 2>, input: Tensor<B, 2>) -> Tensor<B, 2> {
        let g = activate(act, self.gate.forward(h)) * input;
        self.norm.forward(self.projection.forward(g))
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer<B: Backend> {
    act: Activation,
    input_norm: RmsNorm<B>,
    attn: SelfAttention<B>,
    post_attn_norm: RmsNorm<B>,
    pre_ff_norm: RmsNorm<B>,
    mlp: Mlp<B>,
    post_ff_norm: RmsNorm<B>,
    ple: Option<PerLayerInput<B>>,
    layer_scalar: f32,
}

impl<B: Backend> DecoderLayer<B> {
    fn load(
        l: &Loader<B>,
        c: &TextConfig,
        spec: &LayerSpec,
        act: Activation,
    ) -> Result<Self, LoadError> {
        let norm = |name: &str| RmsNorm::load(l, name, c.hidden_size, c.rms_norm_eps);
        Ok(Self {
            act,
            input_norm: norm("input_layernorm")?,
            attn: SelfAttention::load(&l.pp("self_attn"), c, spec)?,
            post_attn_norm: norm("post_attention_layernorm")?,
            pre_ff_norm: norm("pre_feedforward_layernorm")?,
            mlp: Mlp::load(&l.pp("mlp"), c.hidden_size, spec.intermediate_size)?,
            post_ff_norm: norm("post_feedforward_layernorm")?,
            ple: (c.ple_dim > 0)
                .then(|| PerLayerInput::load(l, c))
                .transpose()?,
            // Stored as a one-element vector.
            layer_scalar: l.host("layer_scalar", &[1])?[0],
        })
    }
}

/// Per-layer embeddings: the gathered identity table (memory-mapped) and the context projection.
#[derive(Debug, Clone)]
struct Ple<B: Backend> {
    store: Arc<TensorStore>,
    table: String,
    projection: Linear<B>,
    norm: RmsNorm<B>,
}

impl<B: Backend> Ple<B> {
    fn load(l: &Loader<B>, c: &TextConfig) -> Result<Self, LoadError> {
        let width = c.num_layers() * c.ple_dim;
        Ok(Self {
            store: Arc::clone(l.store),
            table: l.gathered("embed_tokens_per_layer.weight", &[c.ple_vocab_size, width]),
            projection: Linear::load(l, "per_layer_model_projection", width, c.hidden_size, false)?,
            norm: RmsNorm::load(l, "per_layer_projection_norm", c.ple_dim, c.rms_norm_eps)?,
        })
    }
}

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// None: only fill the caches (audio prefill).
    None,
    /// The last position's.
    Last,
    /// The last `n` positions' (speculative verification of a draft).
    Tail(usize),
    /// Every position's.
    All,
}

/// One sequence's share of a (batched) forward pass.
pub struct Request<'a, B: Backend> {
    /// `[t, hidden]` input embeddings for the positions after the cache.
    pub embeds: Tensor<B, 2>,
    /// Ids for the per-layer-embedding lookup (the pad id at multimodal positions).
    pub ple_ids: &'a [u32],
    pub cache: &'a mut DecoderCache<B>,
    pub logits: Logits,
}

/// The rows of one sequence inside a batched layer pass.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Which request.
    req: usize,
    /// First row in the batch.
    row: usize,
    len: usize,
    /// Position of the first row.
    first: usize,
    /// One past the last position the sequence holds after this pass.
    end: usize,
}

/// One decoder pass over a set of rows: the sequence each run of rows belongs to, the rows'
/// positions, every sequence's cache (indexed by `Segment::req`), and the RoPE tables of these
/// positions, built on first use.
struct Pass<'a, B: Backend> {
    segments: Vec<Segment>,
    positions: Vec<usize>,
    caches: Vec<&'a mut DecoderCache<B>>,
    rotary: RotaryCache<B>,
}

impl<B: Backend> Pass<'_, B> {
    /// The caches now hold every position of this pass.
    fn advance_caches(&mut self) {
        for seg in &self.segments {
            self.caches[seg.req].len = seg.end;
        }
    }

    /// The pass over only the rows whose logits are read (the KV-shared layers run only on
    /// those), and where those rows are among this pass's rows (`(first row, count)` each).
    fn logit_rows(self, wanted: &[Logits]) -> (Self, Vec<(usize, usize)>) {
        let mut segments = Vec::with_capacity(self.segments.len());
        let mut positions = Vec::new();
        let mut pick = Vec::new();
        let mut row = 0;
        for seg in &self.segments {
            let k = match wanted[seg.req] {
                Logits::None => 0,
                Logits::All => seg.len,
                Logits::Last => 1,
                Logits::Tail(k) => k.clamp(1, seg.len),
            };
            if k == 0 {
                continue;
            }
            pick.push((seg.row + seg.len - k, k));
            segments.push(Segment {
                req: seg.req,
                row,
                len: k,
                first: seg.end - k,
                end: seg.end,
            });
            positions.extend(seg.end - k..seg.end);
            row += k;
        }
        let pass = Pass {
            segments,
            positions,
            caches: self.caches,
            rotary: RotaryCache::default(),
        };
        (pass, pick)
    }
}

/// The requests of a batched forward pass, stacked.
struct Batch<'a, B: Backend> {
    pass: Pass<'a, B>,
    /// `[rows, hidden]`: the requests' embeddings, one after another.
    embeds: Tensor<B, 2>,
    /// The rows' ids for the per-layer-embedding lookup.
    ple_ids: Vec<u32>,
    /// Which logits each request wants.
    wanted: Vec<Logits>,
}

/// cos/sin tables of one RoPE flavour for the positions of one forward pass, `[t, head_dim]`.
struct Rotary<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

/// The decoder.
#[derive(Debug, Clone)]
pub struct TextDecoder<B: Backend> {
    cfg: TextConfig,
    embed: Linear<B>,
    lm_head: Option<Linear<B>>,
    embed_scale: f32,
    ple: Option<Ple<B>>,
    layers: Vec<DecoderLayer<B>>,
    norm: RmsNorm<B>,
    device: B::Device,
}

impl<B: Backend> TextDecoder<B> {
    pub fn load(l: &Loader<B>, c: &TextConfig, act: Activation) -> Result<Self, LoadError> {
        let lm = l.pp(LM);
        let h = c.hidden_size;
        let layers = c
            .layers
            .iter()
            .enumerate()
            .map(|(i, spec)| DecoderLayer::load(&lm.pp(format!("layers.{i}")), c, spec, act))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            cfg: c.clone(),
            embed: Linear::load(&lm, "embed_tokens", c.vocab_size, h, false)?,
            lm_head: (!c.tie_word_embeddings)
                .then(|| Linear::load(l, "lm_head", c.vocab_size, h, false))
                .transpose()?,
            // HF computes sqrt(hidden) in f32 and rounds it to the weight dtype; Hark runs the
            // embedding in f32, as HF does at float32.
            embed_scale: (h as f32).sqrt(),
            ple: (c.ple_dim > 0).then(|| Ple::load(&lm, c)).transpose()?,
            layers,
            norm: RmsNorm::load(&lm, "norm", h, c.rms_norm_eps)?,
            device: l.device.clone(),
        })
    }

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// An empty cache with room for `capacity` positions (it grows if needed).
    pub fn new_cache(&self, capacity: usize) -> DecoderCache<B> {
        let capacity = capacity.max(16);
        DecoderCache {
            layers: self
                .cfg
                .layers
                .iter()
                .filter(|l| l.kv_source == KvSource::Own)
                .map(|l| KvCache::new(l.num_kv_heads, l.head_dim, capacity, &self.device))
                .collect(),
            len: 0,
        }
    }

    /// Scaled token embeddings, `[t, hidden]`. Multimodal placeholder ids embed as the pad id
    /// ([`TextConfig::feedback_id`]), so a generated placeholder fed back is looked up as
    /// transformers looks it up.
    pub fn embed_tokens(&self, ids: &[u32]) -> Tensor<B, 2> {
        let ids: Vec<u32> = ids.iter().map(|&i| self.cfg.feedback_id(i)).collect();
        self.embed
            .rows(&ids, &self.device)
            .mul_scalar(self.embed_scale)
    }

    /// Run `embeds` (`[t, hidden]`) at the positions following the cache. `ple_ids` are the
    /// token ids for the per-layer-embedding lookup; multimodal placeholders among them are
    /// looked up as the pad id ([`TextConfig::feedback_id`]), so callers may pass the raw ids.
    pub fn forward(
        &self,
        embeds: Tensor<B, 2>,
        ple_ids: &[u32],
        cache: &mut DecoderCache<B>,
        logits: Logits,
    ) -> Option<Tensor<B, 2>> {
        self.forward_batch(vec![Request {
            embeds,
            ple_ids,
            cache,
            logits,
        }])
        .pop()
        .expect("one result per request")
    }

    /// One forward pass over several sequences, each with its own cache and positions. Every
    /// row-wise operation (projections, MLP, norms, per-layer inputs) runs once on the rows of
    /// all sequences together, so the weights are read once for the whole batch; attention runs
    /// per sequence against its own cache.
    pub fn forward_batch(&self, requests: Vec<Request<'_, B>>) -> Vec<Option<Tensor<B, 2>>> {
        let n = requests.len();
        let Batch {
            mut pass,
            embeds,
            ple_ids,
            wanted,
        } = self.gather(requests);
        let ple = self
            .ple
            .as_ref()
            .map(|p| self.per_layer_inputs(p, embeds.clone(), &ple_ids));
        let first_shared = self.cfg.first_shared_layer();
        let h = self.run_layers(0..first_shared, embeds, ple.as_ref(), &mut pass);
        pass.advance_caches();
        let shared = first_shared < self.layers.len();
        if !shared && wanted.iter().all(|&w| w == Logits::None) {
            return vec![None; n];
        }
        let (mut pass, pick) = pass.logit_rows(&wanted);
        if pass.segments.is_empty() {
            return vec![None; n];
        }
        let mut h = select_rows(h, &pick);
        if shared {
            let ple = ple.map(|p| select_rows(p, &pick));
            h = self.run_layers(first_shared..self.layers.len(), h, ple.as_ref(), &mut pass);
        }
        let out = self.logits(h);
        let mut results = vec![None; n];
        for seg in &pass.segments {
            results[seg.req] = Some(out.clone().narrow(0, seg.row, seg.len));
        }
        results
    }

    /// Stack the requests' rows into one batch.
    fn gather<'a>(&self, requests: Vec<Request<'a, B>>) -> Batch<'a, B> {
        let n = requests.len();
        let mut embeds = Vec::with_capacity(n);
        let mut ple_ids = Vec::new();
        let mut caches = Vec::with_capacity(n);
        let mut wanted = Vec::with_capacity(n);
        let mut segments = Vec::with_capacity(n);
        let mut positions = Vec::new();
        let mut rows = 0;
        for (req, r) in requests.into_iter().enumerate() {
            let [t, _] = r.embeds.dims();
            assert_eq!(t, r.ple_ids.len(), "one PLE id per position");
            assert!(t > 0, "empty forward");
            let start = r.cache.len;
            segments.push(Segment {
                req,
                row: rows,
                len: t,
                first: start,
                end: start + t,
            });
            positions.extend(start..start + t);
            rows += t;
            embeds.push(r.embeds);
            // The per-layer-embedding lookup maps placeholders to the pad id too.
            ple_ids.extend(r.ple_ids.iter().map(|&i| self.cfg.feedback_id(i)));
            caches.push(r.cache);
            wanted.push(r.logits);
        }
        let embeds = if embeds.len() == 1 {
            embeds.pop().expect("one")
        } else {
            Tensor::cat(embeds, 0)
        };
        Batch {
            pass: Pass {
                segments,
                positions,
                caches,
                rotary: RotaryCache::default(),
            },
            embeds,
            ple_ids,
            wanted,
        }
    }

    /// Run `layers` on the pass's rows.
    fn run_layers(
        &self,
        layers: Range<usize>,
        mut h: Tensor<B, 2>,
        ple: Option<&Tensor<B, 3>>,
        pass: &mut Pass<'_, B>,
    ) -> Tensor<B, 2> {
        for i in layers {
            h = self.layers[i].forward(h, ple.map(|p| layer_slice(p, i)), pass, i);
        }
        h
    }

    /// Final norm, LM head and soft cap.
    fn logits(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = self.norm.forward(h);
        let out = self.lm_head.as_ref().unwrap_or(&self.embed).forward(h);
        match self.cfg.final_logit_softcap {
            Some(cap) => softcap(out, cap),
            None => out,
        }
    }

    /// `[t, layers, ple_dim]`: (context projection + identity rows) / √2.
    fn per_layer_inputs(&self, p: &Ple<B>, embeds: Tensor<B, 2>, ids: &[u32]) -> Tensor<B, 3> {
        let t = ids.len();
        let (n, dim) = (self.layers.len(), self.cfg.ple_dim);
        let width = n * dim;
        let mut identity = vec![0.0f32; t * width];
        let scale = (dim as f32).sqrt();
        for (row, &id) in identity.chunks_mut(width).zip(ids) {
            p.store
                .row_f32(&p.table, id as usize, row)
                .expect("PLE ids are checked against the table at load");
            row.iter_mut().for_each(|v| *v *= scale);
        }
        let identity =
            Tensor::<B, 3>::from_data(TensorData::new(identity, [t, n, dim]), &self.device);
        let hidden = self.cfg.hidden_size as f64;
        let context = p
            .projection
            .forward(embeds)
            .mul_scalar(hidden.powf(-0.5))
            .reshape([t, n, dim]);
        let context = p.norm.forward(context);
        (context + identity).mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
    }
}

impl<B: Backend> Rotary<B> {
    fn new(spec: &RopeSpec, head_dim: usize, positions: &[usize], device: &B::Device) -> Self {
        let inv: Vec<f32> = spec.inv_freq(head_dim).iter().map(|&f| f as f32).collect();
        let half = head_dim / 2;
        let t = positions.len();
        let mut cos = vec![0.0f32; t * head_dim];
        let mut sin = vec![0.0f32; t * head_dim];
        for (r, &pos) in positions.iter().enumerate() {
            for (j, &freq) in inv.iter().enumerate() {
                // HF multiplies in f32, then takes cos/sin of the f32 angle.
                let angle = (pos as f32 * freq) as f64;
                let (s, c) = angle.sin_cos();
                for col in [j, j + half] {
                    cos[r * head_dim + col] = c as f32;
                    sin[r * head_dim + col] = s as f32;
                }
            }
        }
        Rotary {
            cos: Tensor::from_data(TensorData::new(cos, [t, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [t, head_dim]), device),
        }
    }
}

/// Rows `pick` (`(first, count)` ranges along the first axis) of `x`, in order.
fn select_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    pick: &[(usize, usize)],
) -> Tensor<B, D> {
    if pick.len() == 1 && pick[0] == (0, x.dims()[0]) {
        return x;
    }
    let parts: Vec<_> = pick
        .iter()
        .map(|&(from, k)| x.clone().narrow(0, from, k))
        .collect();
    if parts.len() == 1 {
        parts.into_iter().next().expect("one")
    } else {
        Tensor::cat(parts, 0)
    }
}

fn layer_slice<B: Backend>(ple: &Tensor<B, 3>, i: usize) -> Tensor<B, 2> {
    let [t, _, dim] = ple.dims();
    ple.clone().narrow(1, i, 1).reshape([t, dim])
}

/// RoPE tables of the current pass, built once per (flavour, head size).
#[derive(Default)]
struct RotaryCache<B: Backend> {
    tables: Vec<(RopeSpec, usize, Rotary<B>)>,
}

impl<B: Backend> RotaryCache<B> {
    fn get(
        &mut self,
        spec: &RopeSpec,
        head_dim: usize,
        positions: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        if let Some((_, _, r)) = self
            .tables
            .iter()
            .find(|(s, d, _)| s == spec && *d == head_dim)
        {
            return (r.cos.clone(), r.sin.clone());
        }
        let r = Rotary::new(spec, head_dim, positions, device);
        let out = (r.cos.clone(), r.sin.clone());
        self.tables.push((spec.clone(), head_dim, r));
        out
    }
}

/// Rotate-half RoPE on `[t, heads, head_dim]`.
fn apply_rope<B: Backend>(x: Tensor<B, 3>, cos: &Tensor<B, 2>, sin: &Tensor<B, 2>) -> Tensor<B, 3> {
    let [t, _, hd] = x.dims();
    let half = hd / 2;
    let x1 = x.clone().narrow(2, 0, half);
    let x2 = x.clone().narrow(2, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 2);
    let cos = cos.clone().reshape([t, 1, hd]);
    let sin = sin.clone().reshape([t, 1, hd]);
    x * cos + rotated * sin
}

impl<B: Backend> DecoderLayer<B> {
    /// `ple`: this layer's per-layer input, `[rows, ple_dim]`.
    fn forward(
        &self,
        h: Tensor<B, 2>,
        ple: Option<Tensor<B, 2>>,
        pass: &mut Pass<'_, B>,
        index: usize,
    ) -> Tensor<B, 2> {
        let a = self.input_norm.forward(h.clone());
        let a = self.attn.forward(a, pass, index);
        let h = h + self.post_attn_norm.forward(a);
        let m = self.pre_ff_norm.forward(h.clone());
        let m = self.mlp.forward(self.act, m);
        let mut h = h + self.post_ff_norm.forward(m);
        if let (Some(p), Some(input)) = (&self.ple, ple) {
            let update = p.forward(self.act, h.clone(), input);
            h = h + update;
        }
        h.mul_scalar(self.layer_scalar)
    }
}

impl<B: Backend> SelfAttention<B> {
    /// Projections and RoPE on all rows at once; then, per sequence, the cache write and the
    /// attention over that sequence's own keys. `index` is this layer's.
    fn forward(&self, x: Tensor<B, 2>, pass: &mut Pass<'_, B>, index: usize) -> Tensor<B, 2> {
        let spec = &self.spec;
        let rows = pass.positions.len();
        let (nh, hd, kvh) = (self.num_heads, spec.head_dim, spec.num_kv_heads);
        let (cos, sin) = pass
            .rotary
            .get(&spec.rope, hd, &pass.positions, &x.device());
        let q = self
            .q_norm
            .forward(self.q.forward(x.clone()).reshape([rows, nh, hd]));
        let q = apply_rope(q, &cos, &sin);
        // This layer's new keys and values (none when it reads another layer's), and the layer
        // whose cache it reads.
        let (own_kv, source) = match &self.kv {
            Kv::Own { k, k_norm, v } => {
                let k_proj = k.forward(x.clone()).reshape([rows, kvh, hd]);
                let v_raw = match v {
                    Some(v) => v.forward(x).reshape([rows, kvh, hd]),
                    None => k_proj.clone(),
                };
                let k = k_norm.forward(k_proj);
                let kv = (apply_rope(k, &cos, &sin), self.v_norm.forward(v_raw));
                (Some(kv), index)
            }
            Kv::Shared(layer) => (None, *layer),
        };
        let mut outs = Vec::with_capacity(pass.segments.len());
        for seg in &pass.segments {
            let cache = &mut *pass.caches[seg.req];
            if let Some((k, v)) = &own_kv {
                let k = k.clone().narrow(0, seg.row, seg.len).swap_dims(0, 1);
                let v = v.clone().narrow(0, seg.row, seg.len).swap_dims(0, 1);
                cache.layers[index].write(seg.first, k, v);
            }
            let q = q.clone().narrow(0, seg.row, seg.len);
            outs.push(self.attend(q, seg, &*cache, source));
        }
        let out = if outs.len() == 1 {
            outs.pop().expect("one")
        } else {
            Tensor::cat(outs, 0)
        };
        self.o.forward(out)
    }

    /// Attention of one sequence's queries (`[t, heads, head_dim]`, positions
    /// `seg.first..seg.first + t`) over its cached keys up to `seg.end`.
    fn attend(
        &self,
        q: Tensor<B, 3>,
        seg: &Segment,
        cache: &DecoderCache<B>,
        source: usize,
    ) -> Tensor<B, 2> {
        let spec = &self.spec;
        let t = seg.len;
        let (nh, hd, kvh) = (self.num_heads, spec.head_dim, spec.num_kv_heads);
        let device = q.device();
        let end = seg.end;
        // Keys visible to the earliest query.
        let from = match spec.kind {
            LayerKind::Sliding { window } => (seg.first + 1).saturating_sub(window),
            LayerKind::Full => 0,
        };
        let (keys, values) = cache.layers[source].range(from, end);
        let span = end - from;
        let groups = nh / kvh;
        // Group the query heads of each KV head along the row axis: [kvh, groups·t, hd].
        let q = q
            .reshape([t, kvh, groups, hd])
            .permute([1, 2, 0, 3])
            .reshape([kvh, groups * t, hd]);
        let scores = q.matmul(keys.swap_dims(1, 2)); // [kvh, groups·t, span]
        let mut masked = Vec::with_capacity(t * span);
        let mut any = false;
        for p in seg.first..seg.first + t {
            for s in from..end {
                let allowed = s <= p
                    && match spec.kind {
                        LayerKind::Sliding { window } => s + window > p,
                        LayerKind::Full => true,
                    };
                any |= !allowed;
                masked.push(!allowed);
            }
        }
        let scores = if any {
            let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(masked, [t, span]), &device)
                .reshape([1, 1, t, span])
                .expand([kvh, groups, t, span])
                .reshape([kvh, groups * t, span]);
            scores.mask_fill(mask, f32::NEG_INFINITY)
        } else {
            scores
        };
        let probs = activation::softmax(scores, 2);
        let out = probs.matmul(values); // [kvh, groups·t, hd]
        out.reshape([kvh, groups, t, hd])
            .permute([2, 0, 1, 3])
            .reshape([t, nh * hd])
    }
}
