//! The Gemma 4 text decoder (`Gemma4TextModel` + tied LM head) with explicit KV caches.
//!
//! Positions are plain token indices. Each cache-owning layer keeps a preallocated cache that
//! can be appended to and truncated back to any earlier position — the streaming engine appends
//! audio as it arrives, decodes a hypothesis on top, then truncates back to the audio. Layers
//! that reuse another layer's K/V (KV sharing) write nothing, so positions whose logits are not
//! needed only run the cache-owning layers (spec §3.6).

use std::sync::Arc;

use burn::tensor::{Bool, Int, Tensor, TensorData, activation, backend::Backend};

use crate::checkpoint::TensorStore;
use crate::config::{Activation, KvSource, LayerKind, LayerSpec, RopeSpec, TextConfig};
use crate::error::LoadError;
use crate::nn::{Linear, Loader, RmsNorm, activate, softcap};

const LM: &str = "model.language_model";

/// Names and shapes of every text tensor the checkpoint must hold.
pub fn expected_tensors(c: &TextConfig) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    let h = c.hidden_size;
    v.push((format!("{LM}.embed_tokens.weight"), vec![c.vocab_size, h]));
    if !c.tie_word_embeddings {
        v.push(("lm_head.weight".into(), vec![c.vocab_size, h]));
    }
    v.push((format!("{LM}.norm.weight"), vec![h]));
    let ple = c.ple_dim;
    let n = c.num_layers();
    if ple > 0 {
        v.push((
            format!("{LM}.embed_tokens_per_layer.weight"),
            vec![c.ple_vocab_size, n * ple],
        ));
        v.push((
            format!("{LM}.per_layer_model_projection.weight"),
            vec![n * ple, h],
        ));
        v.push((format!("{LM}.per_layer_projection_norm.weight"), vec![ple]));
    }
    for (i, l) in c.layers.iter().enumerate() {
        let p = format!("{LM}.layers.{i}");
        let (nh, hd, kvh) = (c.num_heads, l.head_dim, l.num_kv_heads);
        v.push((format!("{p}.self_attn.q_proj.weight"), vec![nh * hd, h]));
        v.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
        v.push((format!("{p}.self_attn.o_proj.weight"), vec![h, nh * hd]));
        if c.attention_bias {
            v.push((format!("{p}.self_attn.q_proj.bias"), vec![nh * hd]));
            v.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
        }
        if l.kv_source == KvSource::Own {
            v.push((format!("{p}.self_attn.k_proj.weight"), vec![kvh * hd, h]));
            v.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
            if c.attention_bias {
                v.push((format!("{p}.self_attn.k_proj.bias"), vec![kvh * hd]));
            }
            if !l.k_eq_v {
                v.push((format!("{p}.self_attn.v_proj.weight"), vec![kvh * hd, h]));
                if c.attention_bias {
                    v.push((format!("{p}.self_attn.v_proj.bias"), vec![kvh * hd]));
                }
            }
        }
        let im = l.intermediate_size;
        v.push((format!("{p}.mlp.gate_proj.weight"), vec![im, h]));
        v.push((format!("{p}.mlp.up_proj.weight"), vec![im, h]));
        v.push((format!("{p}.mlp.down_proj.weight"), vec![h, im]));
        for norm in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            v.push((format!("{p}.{norm}.weight"), vec![h]));
        }
        v.push((format!("{p}.layer_scalar"), vec![1]));
        if ple > 0 {
            v.push((format!("{p}.per_layer_input_gate.weight"), vec![ple, h]));
            v.push((format!("{p}.per_layer_projection.weight"), vec![h, ple]));
            v.push((format!("{p}.post_per_layer_input_norm.weight"), vec![h]));
        }
    }
    v
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
    layers: Vec<Option<KvCache<B>>>,
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

#[derive(Debug, Clone)]
struct SelfAttention<B: Backend> {
    q: Linear<B>,
    q_norm: RmsNorm<B>,
    k: Option<Linear<B>>,
    k_norm: Option<RmsNorm<B>>,
    v: Option<Linear<B>>,
    v_norm: RmsNorm<B>,
    o: Linear<B>,
}

#[derive(Debug, Clone)]
struct Mlp<B: Backend> {
    gate: Linear<B>,
    up: Linear<B>,
    down: Linear<B>,
}

#[derive(Debug, Clone)]
struct PerLayerInput<B: Backend> {
    gate: Linear<B>,
    projection: Linear<B>,
    norm: RmsNorm<B>,
}

#[derive(Debug, Clone)]
struct DecoderLayer<B: Backend> {
    spec: LayerSpec,
    input_norm: RmsNorm<B>,
    attn: SelfAttention<B>,
    post_attn_norm: RmsNorm<B>,
    pre_ff_norm: RmsNorm<B>,
    mlp: Mlp<B>,
    post_ff_norm: RmsNorm<B>,
    ple: Option<PerLayerInput<B>>,
    layer_scalar: f32,
}

/// Per-layer embeddings: the gathered identity table (memory-mapped) and the context projection.
#[derive(Debug, Clone)]
struct Ple<B: Backend> {
    store: Arc<TensorStore>,
    table: String,
    projection: Linear<B>,
    norm: RmsNorm<B>,
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

/// cos/sin tables of one RoPE flavour for the positions of one forward pass, `[t, head_dim]`.
struct Rotary<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

/// The decoder.
#[derive(Debug, Clone)]
pub struct TextDecoder<B: Backend> {
    cfg: TextConfig,
    act: Activation,
    embed: Linear<B>,
    lm_head: Option<Linear<B>>,
    embed_scale: f32,
    ple: Option<Ple<B>>,
    layers: Vec<DecoderLayer<B>>,
    norm: RmsNorm<B>,
    device: B::Device,
}

impl<B: Backend> TextDecoder<B> {
    pub fn load(
        l: &Loader<B>,
        store: &Arc<TensorStore>,
        c: &TextConfig,
        act: Activation,
    ) -> Result<Self, LoadError> {
        let h = c.hidden_size;
        let eps = c.rms_norm_eps;
        let embed = Linear::load(l, &format!("{LM}.embed_tokens"), c.vocab_size, h, false)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(Linear::load(l, "lm_head", c.vocab_size, h, false)?)
        };
        let n = c.num_layers();
        let ple = if c.ple_dim > 0 {
            let table = format!("{LM}.embed_tokens_per_layer.weight");
            store.mark_used(&table);
            Some(Ple {
                store: store.clone(),
                table,
                projection: Linear::load(
                    l,
                    &format!("{LM}.per_layer_model_projection"),
                    n * c.ple_dim,
                    h,
                    false,
                )?,
                norm: RmsNorm::load(
                    l,
                    &format!("{LM}.per_layer_projection_norm"),
                    c.ple_dim,
                    eps,
                )?,
            })
        } else {
            None
        };
        let mut layers = Vec::with_capacity(n);
        for (i, spec) in c.layers.iter().enumerate() {
            let p = format!("{LM}.layers.{i}");
            let (nh, hd, kvh) = (c.num_heads, spec.head_dim, spec.num_kv_heads);
            let bias = c.attention_bias;
            let own = spec.kv_source == KvSource::Own;
            let attn = SelfAttention {
                q: Linear::load(l, &format!("{p}.self_attn.q_proj"), nh * hd, h, bias)?,
                q_norm: RmsNorm::load(l, &format!("{p}.self_attn.q_norm"), hd, eps)?,
                k: own
                    .then(|| Linear::load(l, &format!("{p}.self_attn.k_proj"), kvh * hd, h, bias))
                    .transpose()?,
                k_norm: own
                    .then(|| RmsNorm::load(l, &format!("{p}.self_attn.k_norm"), hd, eps))
                    .transpose()?,
                v: (own && !spec.k_eq_v)
                    .then(|| Linear::load(l, &format!("{p}.self_attn.v_proj"), kvh * hd, h, bias))
                    .transpose()?,
                v_norm: RmsNorm::without_weight(eps),
                o: Linear::load(l, &format!("{p}.self_attn.o_proj"), h, nh * hd, bias)?,
            };
            let im = spec.intermediate_size;
            let mlp = Mlp {
                gate: Linear::load(l, &format!("{p}.mlp.gate_proj"), im, h, false)?,
                up: Linear::load(l, &format!("{p}.mlp.up_proj"), im, h, false)?,
                down: Linear::load(l, &format!("{p}.mlp.down_proj"), h, im, false)?,
            };
            let ple_layer = if c.ple_dim > 0 {
                Some(PerLayerInput {
                    gate: Linear::load(
                        l,
                        &format!("{p}.per_layer_input_gate"),
                        c.ple_dim,
                        h,
                        false,
                    )?,
                    projection: Linear::load(
                        l,
                        &format!("{p}.per_layer_projection"),
                        h,
                        c.ple_dim,
                        false,
                    )?,
                    norm: RmsNorm::load(l, &format!("{p}.post_per_layer_input_norm"), h, eps)?,
                })
            } else {
                None
            };
            layers.push(DecoderLayer {
                spec: spec.clone(),
                input_norm: RmsNorm::load(l, &format!("{p}.input_layernorm"), h, eps)?,
                attn,
                post_attn_norm: RmsNorm::load(l, &format!("{p}.post_attention_layernorm"), h, eps)?,
                pre_ff_norm: RmsNorm::load(l, &format!("{p}.pre_feedforward_layernorm"), h, eps)?,
                mlp,
                post_ff_norm: RmsNorm::load(l, &format!("{p}.post_feedforward_layernorm"), h, eps)?,
                ple: ple_layer,
                layer_scalar: l.scalar(&format!("{p}.layer_scalar"))?,
            });
        }
        Ok(Self {
            cfg: c.clone(),
            act,
            embed,
            lm_head,
            // HF computes sqrt(hidden) in f32 and rounds it to the weight dtype; Hark runs the
            // embedding in f32, as HF does at float32.
            embed_scale: (h as f32).sqrt(),
            ple,
            layers,
            norm: RmsNorm::load(l, &format!("{LM}.norm"), h, eps)?,
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
                .map(|l| {
                    (l.kv_source == KvSource::Own)
                        .then(|| KvCache::new(l.num_kv_heads, l.head_dim, capacity, &self.device))
                })
                .collect(),
            len: 0,
        }
    }

    /// Scaled token embeddings, `[t, hidden]`. Multimodal placeholder ids embed as the pad id
    /// ([`TextConfig::feedback_id`]), so a generated placeholder fed back is looked up as
    /// transformers looks it up.
    pub fn embed_tokens(&self, ids: &[u32]) -> Tensor<B, 2> {
        let ids: Vec<i64> = ids
            .iter()
            .map(|&i| self.cfg.feedback_id(i) as i64)
            .collect();
        let n = ids.len();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), &self.device);
        self.embed.rows(index).mul_scalar(self.embed_scale)
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
        let mut embeds = Vec::with_capacity(n);
        let mut ids = Vec::new();
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
            ids.extend(r.ple_ids.iter().map(|&i| self.cfg.feedback_id(i)));
            caches.push(r.cache);
            wanted.push(r.logits);
        }
        let h = if embeds.len() == 1 {
            embeds.pop().expect("one")
        } else {
            Tensor::cat(embeds, 0)
        };
        let ple = self
            .ple
            .as_ref()
            .map(|p| self.per_layer_inputs(p, h.clone(), &ids));
        let first_shared = self.cfg.first_shared_layer();
        let mut h = h;
        let mut rot = RotaryCache::default();
        for i in 0..first_shared {
            let ple_i = ple.as_ref().map(|p| layer_slice(p, i));
            h = self.layers[i].forward(
                self,
                h,
                &segments,
                &positions,
                ple_i,
                &mut caches,
                i,
                &mut rot,
            );
        }
        for seg in &segments {
            caches[seg.req].len = seg.end;
        }
        let shared = first_shared < self.layers.len();
        if !shared && wanted.iter().all(|&w| w == Logits::None) {
            return vec![None; n];
        }
        // Rows whose logits are read; KV-shared layers run only on those.
        let keep = |seg: &Segment| match wanted[seg.req] {
            Logits::None => 0,
            Logits::All => seg.len,
            Logits::Last => 1,
            Logits::Tail(k) => k.clamp(1, seg.len),
        };
        let mut kept_segments = Vec::with_capacity(n);
        let mut kept_positions = Vec::new();
        let mut pick = Vec::new();
        let mut row = 0;
        for seg in &segments {
            let k = keep(seg);
            if k == 0 {
                continue;
            }
            pick.push((seg.row + seg.len - k, k));
            kept_segments.push(Segment {
                req: seg.req,
                row,
                len: k,
                first: seg.end - k,
                end: seg.end,
            });
            kept_positions.extend(seg.end - k..seg.end);
            row += k;
        }
        if kept_segments.is_empty() {
            return vec![None; n];
        }
        let select = |x: Tensor<B, 2>| -> Tensor<B, 2> {
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
        };
        let mut h = if shared { select(h) } else { h };
        if shared {
            let ple = ple.map(|p| {
                let parts: Vec<_> = pick
                    .iter()
                    .map(|&(from, k)| p.clone().narrow(0, from, k))
                    .collect();
                Tensor::cat(parts, 0)
            });
            let mut rot = RotaryCache::default();
            for i in first_shared..self.layers.len() {
                let ple_i = ple.as_ref().map(|p| layer_slice(p, i));
                h = self.layers[i].forward(
                    self,
                    h,
                    &kept_segments,
                    &kept_positions,
                    ple_i,
                    &mut caches,
                    i,
                    &mut rot,
                );
            }
        } else {
            // Every layer already ran on every row: keep the rows whose logits are read.
            h = select(h);
        }
        let h = self.norm.forward(h);
        let out = self.lm_head.as_ref().unwrap_or(&self.embed).forward(h);
        let out = match self.cfg.final_logit_softcap {
            Some(cap) => softcap(out, cap),
            None => out,
        };
        let mut results = vec![None; n];
        for seg in &kept_segments {
            results[seg.req] = Some(out.clone().narrow(0, seg.row, seg.len));
        }
        results
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

    fn rotary(&self, spec: &RopeSpec, head_dim: usize, positions: &[usize]) -> Rotary<B> {
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
            cos: Tensor::from_data(TensorData::new(cos, [t, head_dim]), &self.device),
            sin: Tensor::from_data(TensorData::new(sin, [t, head_dim]), &self.device),
        }
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
        dec: &TextDecoder<B>,
        spec: &RopeSpec,
        head_dim: usize,
        positions: &[usize],
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        if let Some((_, _, r)) = self
            .tables
            .iter()
            .find(|(s, d, _)| s == spec && *d == head_dim)
        {
            return (r.cos.clone(), r.sin.clone());
        }
        let r = dec.rotary(spec, head_dim, positions);
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
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        dec: &TextDecoder<B>,
        h: Tensor<B, 2>,
        segments: &[Segment],
        positions: &[usize],
        ple: Option<Tensor<B, 2>>,
        caches: &mut [&mut DecoderCache<B>],
        index: usize,
        rot: &mut RotaryCache<B>,
    ) -> Tensor<B, 2> {
        let a = self.input_norm.forward(h.clone());
        let a = self.attention(dec, a, segments, positions, caches, index, rot);
        let h = h + self.post_attn_norm.forward(a);
        let m = self.pre_ff_norm.forward(h.clone());
        let m = self
            .mlp
            .down
            .forward(activate(dec.act, self.mlp.gate.forward(m.clone())) * self.mlp.up.forward(m));
        let mut h = h + self.post_ff_norm.forward(m);
        if let (Some(p), Some(input)) = (&self.ple, ple) {
            let g = activate(dec.act, p.gate.forward(h.clone())) * input;
            h = h + p.norm.forward(p.projection.forward(g));
        }
        h.mul_scalar(self.layer_scalar)
    }

    /// Projections and RoPE on all rows at once; then, per sequence, the cache write and the
    /// attention over that sequence's own keys.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        dec: &TextDecoder<B>,
        x: Tensor<B, 2>,
        segments: &[Segment],
        positions: &[usize],
        caches: &mut [&mut DecoderCache<B>],
        index: usize,
        rot: &mut RotaryCache<B>,
    ) -> Tensor<B, 2> {
        let spec = &self.spec;
        let rows = positions.len();
        let (nh, hd, kvh) = (dec.cfg.num_heads, spec.head_dim, spec.num_kv_heads);
        let (cos, sin) = rot.get(dec, &spec.rope, hd, positions);
        let a = &self.attn;
        let q = a
            .q_norm
            .forward(a.q.forward(x.clone()).reshape([rows, nh, hd]));
        let q = apply_rope(q, &cos, &sin);
        let own_kv = match spec.kv_source {
            KvSource::Own => {
                let k_proj =
                    a.k.as_ref()
                        .expect("own-KV layers have k_proj")
                        .forward(x.clone())
                        .reshape([rows, kvh, hd]);
                let v_raw = match &a.v {
                    Some(v) => v.forward(x).reshape([rows, kvh, hd]),
                    None => k_proj.clone(),
                };
                let k = a
                    .k_norm
                    .as_ref()
                    .expect("own-KV layers have k_norm")
                    .forward(k_proj);
                Some((apply_rope(k, &cos, &sin), a.v_norm.forward(v_raw)))
            }
            KvSource::Shared(_) => None,
        };
        let source = match spec.kv_source {
            KvSource::Own => index,
            KvSource::Shared(p) => p,
        };
        let mut outs = Vec::with_capacity(segments.len());
        for seg in segments {
            let cache = &mut *caches[seg.req];
            if let Some((k, v)) = &own_kv {
                let layer_cache = cache.layers[index]
                    .as_mut()
                    .expect("own-KV layers have a cache");
                let k = k.clone().narrow(0, seg.row, seg.len).swap_dims(0, 1);
                let v = v.clone().narrow(0, seg.row, seg.len).swap_dims(0, 1);
                layer_cache.write(seg.first, k, v);
            }
            let q = q.clone().narrow(0, seg.row, seg.len);
            outs.push(self.attend(dec, q, seg, &*cache, source));
        }
        let out = if outs.len() == 1 {
            outs.pop().expect("one")
        } else {
            Tensor::cat(outs, 0)
        };
        a.o.forward(out)
    }

    /// Attention of one sequence's queries (`[t, heads, head_dim]`, positions
    /// `seg.first..seg.first + t`) over its cached keys up to `seg.end`.
    fn attend(
        &self,
        dec: &TextDecoder<B>,
        q: Tensor<B, 3>,
        seg: &Segment,
        cache: &DecoderCache<B>,
        source: usize,
    ) -> Tensor<B, 2> {
        let spec = &self.spec;
        let t = seg.len;
        let (nh, hd, kvh) = (dec.cfg.num_heads, spec.head_dim, spec.num_kv_heads);
        let end = seg.end;
        // Keys visible to the earliest query.
        let from = match spec.kind {
            LayerKind::Sliding { window } => (seg.first + 1).saturating_sub(window),
            LayerKind::Full => 0,
        };
        let (keys, values) = cache.layers[source]
            .as_ref()
            .expect("source layer owns a cache")
            .range(from, end);
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
            let mask =
                Tensor::<B, 2, Bool>::from_data(TensorData::new(masked, [t, span]), &dec.device)
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
