//! The checkpoint's configuration: `config.json` (Hugging Face `Gemma4Config`),
//! `generation_config.json` and the feature-extractor block of `processor_config.json`.
//!
//! The JSON structs mirror the released files field for field; defaults are the ones of the
//! transformers 5.23.0 config classes, so a file that omits a field means what it means there.
//! [`TextConfig`] and [`AudioConfig`] are the resolved forms the model is built from: every
//! per-layer quantity (head size, KV heads, KV source, MLP width, RoPE) is spelled out per layer,
//! so no code downstream needs to know how E2B happens to be shaped.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::ConfigError;

/// A JSON value that is either one id or a list of ids (`eos_token_id`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            OneOrMany::One(id) => vec![*id],
            OneOrMany::Many(ids) => ids.clone(),
        }
    }
}

/// `config.json` of a `Gemma4ForConditionalGeneration` checkpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct Gemma4ConfigJson {
    pub text_config: TextConfigJson,
    #[serde(default)]
    pub audio_config: Option<AudioConfigJson>,
    /// Present on the released checkpoint; Hark never runs the vision tower.
    #[serde(default)]
    pub vision_config: Option<serde_json::Value>,
    #[serde(default)]
    pub boa_token_id: Option<u32>,
    /// The released files spell it `eoa_token_id`; the HF class calls it `eoa_token_index`.
    #[serde(default, alias = "eoa_token_index")]
    pub eoa_token_id: Option<u32>,
    #[serde(default)]
    pub audio_token_id: Option<u32>,
    /// `<|image|>` soft-token placeholder (HF default when absent: 258880).
    #[serde(default = "d_image_token")]
    pub image_token_id: Option<u32>,
    /// `<|video|>` soft-token placeholder (HF default when absent: 258884).
    #[serde(default = "d_video_token")]
    pub video_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<OneOrMany>,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn d_image_token() -> Option<u32> {
    Some(258_880)
}
fn d_video_token() -> Option<u32> {
    Some(258_884)
}
/// `text_config` of `config.json` (HF `Gemma4TextConfig`); a missing field takes the value of
/// [`TextConfigJson::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TextConfigJson {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    /// Flat form of the full-attention head size (older config files).
    pub global_head_dim: Option<usize>,
    pub num_global_key_value_heads: Option<usize>,
    /// Sparse per-layer overrides (newer config files): `{"4": {"head_dim": 512}, ...}`.
    pub per_layer_config: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    pub hidden_activation: String,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub pad_token_id: Option<u32>,
    pub eos_token_id: Option<OneOrMany>,
    pub bos_token_id: Option<u32>,
    pub tie_word_embeddings: bool,
    /// Keyed by layer type (`sliding_attention`, `full_attention`).
    pub rope_parameters: Option<BTreeMap<String, RopeParametersJson>>,
    pub attention_bias: bool,
    pub sliding_window: usize,
    pub layer_types: Option<Vec<LayerType>>,
    pub final_logit_softcapping: Option<f64>,
    pub use_bidirectional_attention: Option<String>,
    pub vocab_size_per_layer_input: usize,
    pub hidden_size_per_layer_input: usize,
    pub attention_k_eq_v: bool,
    pub num_kv_shared_layers: usize,
    pub enable_moe_block: bool,
    pub use_double_wide_mlp: bool,
}

impl Default for TextConfigJson {
    /// The defaults of transformers' `Gemma4TextConfig`.
    fn default() -> Self {
        Self {
            vocab_size: 262_144,
            hidden_size: 2304,
            intermediate_size: 9216,
            num_hidden_layers: 30,
            num_attention_heads: 8,
            num_key_value_heads: 4,
            head_dim: 256,
            global_head_dim: None,
            num_global_key_value_heads: None,
            per_layer_config: None,
            hidden_activation: "gelu_pytorch_tanh".into(),
            max_position_embeddings: 131_072,
            rms_norm_eps: 1e-6,
            pad_token_id: Some(0),
            eos_token_id: None,
            bos_token_id: Some(2),
            tie_word_embeddings: true,
            rope_parameters: None,
            attention_bias: false,
            sliding_window: 512,
            layer_types: None,
            final_logit_softcapping: None,
            use_bidirectional_attention: None,
            vocab_size_per_layer_input: 262_144,
            hidden_size_per_layer_input: 256,
            attention_k_eq_v: false,
            num_kv_shared_layers: 0,
            enable_moe_block: false,
            use_double_wide_mlp: false,
        }
    }
}

/// An entry of `layer_types`: the attention of one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    SlidingAttention,
    FullAttention,
}

impl LayerType {
    /// The name `config.json` uses (the key of `rope_parameters`).
    pub fn name(self) -> &'static str {
        match self {
            LayerType::SlidingAttention => "sliding_attention",
            LayerType::FullAttention => "full_attention",
        }
    }
}

/// One entry of `rope_parameters` (keyed by layer type).
#[derive(Debug, Clone, Deserialize)]
pub struct RopeParametersJson {
    #[serde(default)]
    pub rope_type: RopeType,
    pub rope_theta: f64,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
}

/// The RoPE flavours Hark builds (`rope_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeType {
    #[default]
    Default,
    Linear,
    Proportional,
}

/// `audio_config` of `config.json` (HF `Gemma4AudioConfig`); a missing field takes the value of
/// [`AudioConfigJson::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AudioConfigJson {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub hidden_act: String,
    pub subsampling_conv_channels: Vec<usize>,
    pub conv_kernel_size: usize,
    pub residual_weight: f64,
    pub attention_chunk_size: usize,
    pub attention_context_left: usize,
    pub attention_context_right: usize,
    pub attention_logit_cap: f64,
    pub attention_invalid_logits_value: f64,
    pub use_clipped_linears: bool,
    pub rms_norm_eps: f64,
    pub gradient_clipping: f64,
    pub output_proj_dims: usize,
}

impl Default for AudioConfigJson {
    /// The defaults of transformers' `Gemma4AudioConfig`.
    fn default() -> Self {
        Self {
            hidden_size: 1024,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            hidden_act: "silu".into(),
            subsampling_conv_channels: vec![128, 32],
            conv_kernel_size: 5,
            residual_weight: 0.5,
            attention_chunk_size: 12,
            attention_context_left: 13,
            attention_context_right: 0,
            attention_logit_cap: 50.0,
            attention_invalid_logits_value: -1.0e9,
            use_clipped_linears: true,
            rms_norm_eps: 1e-6,
            gradient_clipping: 1e10,
            output_proj_dims: 1536,
        }
    }
}

/// `generation_config.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationConfigJson {
    #[serde(default)]
    pub eos_token_id: Option<OneOrMany>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub suppress_tokens: Option<Vec<u32>>,
}

/// The feature-extractor block of `processor_config.json` (or `preprocessor_config.json`); a
/// missing field takes the value of [`FeatureExtractorJson::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FeatureExtractorJson {
    pub feature_size: usize,
    pub sampling_rate: u32,
    pub frame_length_ms: f64,
    pub hop_length_ms: f64,
    pub min_frequency: f64,
    pub max_frequency: f64,
    pub mel_floor: f64,
    pub preemphasis: f64,
    pub dither: f64,
    pub input_scale_factor: f64,
    pub fft_overdrive: bool,
    pub per_bin_mean: Option<serde_json::Value>,
    pub per_bin_stddev: Option<serde_json::Value>,
}

impl Default for FeatureExtractorJson {
    /// The defaults of the transformers feature extractor (as in the released E2B files).
    fn default() -> Self {
        Self {
            feature_size: 128,
            sampling_rate: 16_000,
            frame_length_ms: 20.0,
            hop_length_ms: 10.0,
            min_frequency: 0.0,
            max_frequency: 8000.0,
            mel_floor: 1e-3,
            preemphasis: 0.0,
            dither: 0.0,
            input_scale_factor: 1.0,
            fft_overdrive: false,
            per_bin_mean: None,
            per_bin_stddev: None,
        }
    }
}

/// `processor_config.json`: only what the audio path reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProcessorConfigJson {
    #[serde(default)]
    pub feature_extractor: Option<FeatureExtractorJson>,
    #[serde(default)]
    pub audio_seq_length: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// Resolved configuration
// ---------------------------------------------------------------------------------------------

/// Attention type of a decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Causal attention over the last `window` positions (self included).
    Sliding { window: usize },
    /// Causal attention over the whole sequence.
    Full,
}

/// How a RoPE table is built (`rope_parameters[layer_type]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    pub theta: f64,
    /// Number of rotated frequency pairs; pairs beyond it pass through (proportional RoPE).
    pub rotated_pairs: usize,
    /// Denominator of the frequency exponent (the head size for default and proportional RoPE).
    pub exponent_dim: usize,
    /// Linear position scaling (`factor`), 1.0 when absent.
    pub factor: f64,
}

impl RopeSpec {
    /// Inverse frequencies, one per rotated pair of a head of `head_dim` (zeros for pass-through).
    pub fn inv_freq(&self, head_dim: usize) -> Vec<f64> {
        (0..head_dim / 2)
            .map(|j| {
                if j < self.rotated_pairs {
                    let exponent = (2 * j) as f64 / self.exponent_dim as f64;
                    1.0 / self.theta.powf(exponent) / self.factor
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Where a decoder layer's keys and values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSource {
    /// The layer projects and caches its own K/V.
    Own,
    /// The layer reuses the K/V cached by an earlier layer of the same kind (KV sharing).
    Shared(usize),
}

/// Everything about one decoder layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub kind: LayerKind,
    pub head_dim: usize,
    pub num_kv_heads: usize,
    pub kv_source: KvSource,
    /// `attention_k_eq_v` on this layer: values are the key projection (before its norm).
    pub k_eq_v: bool,
    pub intermediate_size: usize,
    pub rope: RopeSpec,
}

/// The text decoder, resolved per layer.
#[derive(Debug, Clone)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub layers: Vec<LayerSpec>,
    pub rms_norm_eps: f64,
    pub final_logit_softcap: Option<f64>,
    pub ple_dim: usize,
    pub ple_vocab_size: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub pad_token_id: u32,
    pub max_position_embeddings: usize,
    /// The multimodal soft-token placeholders (`image_token_id`, `video_token_id`,
    /// `audio_token_id` of `config.json`); see [`TextConfig::feedback_id`].
    pub placeholder_ids: Vec<u32>,
}

impl TextConfig {
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The id the decoder actually looks up for token `id`, in the token embedding and in the
    /// per-layer-embedding table alike: multimodal placeholders become the pad id, every other
    /// id is itself. transformers does this to every input id (`Gemma4Model.forward`, its
    /// `multimodal_mask`), so it applies to prompt placeholders and equally to a placeholder
    /// that greedy decoding *generated* and feeds back (docs/model.md §5.4).
    pub fn feedback_id(&self, id: u32) -> u32 {
        if self.placeholder_ids.contains(&id) {
            self.pad_token_id
        } else {
            id
        }
    }

    /// Index of the first layer that reuses another layer's K/V (all later layers do too),
    /// or the number of layers when none does.
    pub fn first_shared_layer(&self) -> usize {
        self.layers
            .iter()
            .position(|l| matches!(l.kv_source, KvSource::Shared(_)))
            .unwrap_or(self.layers.len())
    }
}

/// The audio encoder, resolved.
#[derive(Debug, Clone)]
pub struct AudioConfig {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub conv_channels: [usize; 2],
    pub conv_kernel_size: usize,
    pub residual_weight: f64,
    pub chunk_size: usize,
    /// Keys a query may see: itself and `max_past - 1` earlier frames (HF: `dist < max_past`).
    pub max_past: usize,
    /// Rows of the relative-position table (`context_size // 2 + 1`).
    pub rel_positions: usize,
    /// `context_size // 2 - max_past`: the table row of distance d is `max_past - d`, which reads
    /// the sinusoid of position `d + rel_offset` (0 for E2B).
    pub rel_offset: isize,
    pub logit_cap: f64,
    pub invalid_logit: f64,
    pub use_clipped_linears: bool,
    pub rms_norm_eps: f64,
    pub gradient_clipping: f64,
    pub output_dim: usize,
    pub activation: Activation,
}

/// Activation functions the configs may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    GeluTanh,
    Gelu,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Result<Self, ConfigError> {
        Ok(match name {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "gelu" => Activation::Gelu,
            "relu" => Activation::Relu,
            other => return Err(ConfigError::Unsupported(format!("activation `{other}`"))),
        })
    }
}

/// The multimodal token ids the audio path needs.
#[derive(Debug, Clone)]
pub struct AudioTokens {
    /// `<|audio>`: opens an audio span.
    pub begin: u32,
    /// `<|audio|>`: one placeholder per audio soft token.
    pub placeholder: u32,
    /// `<audio|>`: closes an audio span.
    pub end: u32,
}

/// Everything resolved from the checkpoint's JSON files.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub text: TextConfig,
    pub audio: AudioConfig,
    pub text_activation: Activation,
    pub audio_tokens: AudioTokens,
    /// Stop ids: `generation_config.json` if present, else `config.json`.
    pub stop_token_ids: Vec<u32>,
    pub suppress_token_ids: Vec<u32>,
    pub features: FeatureExtractorJson,
    /// Cap on audio soft tokens per span (`audio_seq_length`, 750 for E2B).
    pub max_audio_tokens: usize,
    pub has_vision_tower: bool,
}

impl ModelConfig {
    /// Resolve the JSON files of a checkpoint.
    pub fn resolve(
        config: &Gemma4ConfigJson,
        generation: Option<&GenerationConfigJson>,
        processor: Option<&ProcessorConfigJson>,
    ) -> Result<Self, ConfigError> {
        let mut text = resolve_text(&config.text_config, config.tie_word_embeddings)?;
        let audio_json = config.audio_config.as_ref().ok_or_else(|| {
            ConfigError::Invalid("config.json has no audio_config: not a speech model".into())
        })?;
        let audio = resolve_audio(audio_json)?;
        let audio_tokens = AudioTokens {
            begin: config.boa_token_id.ok_or_else(|| missing("boa_token_id"))?,
            placeholder: config
                .audio_token_id
                .ok_or_else(|| missing("audio_token_id"))?,
            end: config
                .eoa_token_id
                .ok_or_else(|| missing("eoa_token_id (or eoa_token_index)"))?,
        };
        for (name, id) in [
            ("boa_token_id", audio_tokens.begin),
            ("audio_token_id", audio_tokens.placeholder),
            ("eoa_token_id", audio_tokens.end),
        ] {
            if id as usize >= text.vocab_size {
                return Err(ConfigError::Invalid(format!(
                    "{name} {id} is outside the vocabulary ({})",
                    text.vocab_size
                )));
            }
        }
        text.placeholder_ids = [config.image_token_id, config.video_token_id]
            .into_iter()
            .flatten()
            .chain([audio_tokens.placeholder])
            .collect();
        let mut stop_token_ids = generation
            .and_then(|g| g.eos_token_id.as_ref())
            .or(config.eos_token_id.as_ref())
            .or(config.text_config.eos_token_id.as_ref())
            .map(OneOrMany::to_vec)
            .unwrap_or_default();
        stop_token_ids.dedup();
        if stop_token_ids.is_empty() {
            return Err(missing(
                "eos_token_id (generation_config.json or config.json)",
            ));
        }
        let suppress_token_ids = generation
            .and_then(|g| g.suppress_tokens.clone())
            .unwrap_or_default();
        let features = processor
            .and_then(|p| p.feature_extractor.clone())
            .unwrap_or_default();
        validate_features(&features)?;
        let max_audio_tokens = processor.and_then(|p| p.audio_seq_length).unwrap_or(750);
        let text_activation = Activation::parse(&config.text_config.hidden_activation)?;
        Ok(Self {
            text,
            audio,
            text_activation,
            audio_tokens,
            stop_token_ids,
            suppress_token_ids,
            features,
            max_audio_tokens,
            has_vision_tower: config.vision_config.is_some(),
        })
    }
}

fn missing(what: &str) -> ConfigError {
    ConfigError::Invalid(format!("config.json lacks {what}"))
}

fn validate_features(fe: &FeatureExtractorJson) -> Result<(), ConfigError> {
    let unsupported = |what: String| {
        Err(ConfigError::Unsupported(format!(
            "feature extractor: {what}"
        )))
    };
    if fe.sampling_rate != 16_000 {
        return unsupported(format!("sampling_rate {}", fe.sampling_rate));
    }
    if fe.preemphasis != 0.0 || fe.dither != 0.0 || fe.input_scale_factor != 1.0 || fe.fft_overdrive
    {
        return unsupported("pre-emphasis, dither, input scaling or fft overdrive".into());
    }
    if fe.per_bin_mean.as_ref().is_some_and(|v| !v.is_null())
        || fe.per_bin_stddev.as_ref().is_some_and(|v| !v.is_null())
    {
        return unsupported("per-bin normalisation".into());
    }
    if fe.feature_size == 0 || fe.max_frequency <= fe.min_frequency {
        return Err(ConfigError::Invalid(
            "feature extractor: empty mel range".into(),
        ));
    }
    Ok(())
}

fn resolve_text(t: &TextConfigJson, top_tie: Option<bool>) -> Result<TextConfig, ConfigError> {
    check_text_supported(t)?;
    let types = layer_types(t)?;
    let overrides = layer_overrides(t, &types)?;
    let n = types.len();
    let first_shared = n.checked_sub(t.num_kv_shared_layers).ok_or_else(|| {
        ConfigError::Invalid("num_kv_shared_layers exceeds num_hidden_layers".into())
    })?;
    let rope_params = default_rope_parameters(t.rope_parameters.as_ref());
    let layers = (0..n)
        .map(|i| resolve_layer(t, &types, i, &overrides[i], first_shared, &rope_params))
        .collect::<Result<Vec<_>, _>>()?;
    check_kv_sharing(&layers)?;
    if t.hidden_size_per_layer_input > 0 && t.vocab_size_per_layer_input < t.vocab_size {
        return Err(ConfigError::Unsupported(format!(
            "per-layer embeddings for {} of {} tokens",
            t.vocab_size_per_layer_input, t.vocab_size
        )));
    }
    Ok(TextConfig {
        vocab_size: t.vocab_size,
        hidden_size: t.hidden_size,
        num_heads: t.num_attention_heads,
        layers,
        rms_norm_eps: t.rms_norm_eps,
        final_logit_softcap: t.final_logit_softcapping,
        ple_dim: t.hidden_size_per_layer_input,
        ple_vocab_size: t.vocab_size_per_layer_input,
        tie_word_embeddings: top_tie.unwrap_or(t.tie_word_embeddings),
        attention_bias: t.attention_bias,
        pad_token_id: t.pad_token_id.unwrap_or(0),
        max_position_embeddings: t.max_position_embeddings,
        // Filled in by `ModelConfig::resolve` from the top-level ids.
        placeholder_ids: Vec::new(),
    })
}

/// Refuse decoder variants Hark does not implement, and empty dimensions.
fn check_text_supported(t: &TextConfigJson) -> Result<(), ConfigError> {
    if t.enable_moe_block {
        return Err(ConfigError::Unsupported(
            "mixture-of-experts decoder blocks".into(),
        ));
    }
    if t.use_bidirectional_attention.as_deref() == Some("all") {
        return Err(ConfigError::Unsupported(
            "bidirectional text attention".into(),
        ));
    }
    if t.num_hidden_layers == 0
        || t.hidden_size == 0
        || t.num_attention_heads == 0
        || t.vocab_size == 0
    {
        return Err(ConfigError::Invalid(
            "text_config has a zero dimension".into(),
        ));
    }
    Ok(())
}

/// The attention type of every layer. HF: default pattern of five sliding layers then one
/// full; the last layer is always full.
fn layer_types(t: &TextConfigJson) -> Result<Vec<LayerType>, ConfigError> {
    let n = t.num_hidden_layers;
    let mut types: Vec<LayerType> = match &t.layer_types {
        Some(types) => types.clone(),
        None => (0..n)
            .map(|i| {
                if (i + 1) % 6 != 0 {
                    LayerType::SlidingAttention
                } else {
                    LayerType::FullAttention
                }
            })
            .collect(),
    };
    if types.len() != n {
        return Err(ConfigError::Invalid(format!(
            "layer_types has {} entries for {n} layers",
            types.len()
        )));
    }
    if let Some(last) = types.last_mut() {
        *last = LayerType::FullAttention;
    }
    Ok(types)
}

/// What one layer changes from the `text_config` defaults.
#[derive(Debug, Clone, Default)]
struct LayerOverride {
    head_dim: Option<usize>,
    num_kv_heads: Option<usize>,
    sliding_window: Option<usize>,
    intermediate_size: Option<usize>,
}

/// Per-layer overrides: explicit `per_layer_config`, else the flat `global_*` fields on full
/// layers.
fn layer_overrides(
    t: &TextConfigJson,
    types: &[LayerType],
) -> Result<Vec<LayerOverride>, ConfigError> {
    let n = types.len();
    let mut overrides = vec![LayerOverride::default(); n];
    let Some(map) = &t.per_layer_config else {
        for (ov, _) in overrides
            .iter_mut()
            .zip(types)
            .filter(|(_, ty)| **ty == LayerType::FullAttention)
        {
            ov.head_dim = Some(t.global_head_dim.unwrap_or(512));
            if t.attention_k_eq_v {
                ov.num_kv_heads = t.num_global_key_value_heads;
            }
        }
        return Ok(overrides);
    };
    for (key, fields) in map {
        let i: usize = key.parse().map_err(|_| {
            ConfigError::Invalid(format!("per_layer_config key `{key}` is not a layer index"))
        })?;
        if i >= n {
            return Err(ConfigError::Invalid(format!(
                "per_layer_config names layer {i} of {n}"
            )));
        }
        let ov = &mut overrides[i];
        for (field, value) in fields {
            let value = value.as_u64().map(|v| v as usize).ok_or_else(|| {
                ConfigError::Invalid(format!("per_layer_config[{i}].{field} is not an integer"))
            });
            let slot = match field.as_str() {
                "head_dim" => &mut ov.head_dim,
                "num_key_value_heads" => &mut ov.num_kv_heads,
                "sliding_window" => &mut ov.sliding_window,
                "intermediate_size" => &mut ov.intermediate_size,
                other => {
                    return Err(ConfigError::Unsupported(format!(
                        "per_layer_config override `{other}` (layer {i})"
                    )));
                }
            };
            *slot = Some(value?);
        }
    }
    Ok(overrides)
}

/// Layer `i`, spelled out.
fn resolve_layer(
    t: &TextConfigJson,
    types: &[LayerType],
    i: usize,
    ov: &LayerOverride,
    first_shared: usize,
    rope_params: &BTreeMap<String, RopeParametersJson>,
) -> Result<LayerSpec, ConfigError> {
    let ty = types[i];
    let head_dim = ov.head_dim.unwrap_or(t.head_dim);
    let num_kv_heads = ov.num_kv_heads.unwrap_or(t.num_key_value_heads);
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(ConfigError::Invalid(format!(
            "layer {i}: head_dim {head_dim} must be even"
        )));
    }
    if num_kv_heads == 0 || !t.num_attention_heads.is_multiple_of(num_kv_heads) {
        return Err(ConfigError::Invalid(format!(
            "layer {i}: {} query heads cannot be grouped over {num_kv_heads} KV heads",
            t.num_attention_heads
        )));
    }
    let kind = match ty {
        LayerType::SlidingAttention => LayerKind::Sliding {
            window: ov.sliding_window.unwrap_or(t.sliding_window),
        },
        LayerType::FullAttention => LayerKind::Full,
    };
    let shared = i >= first_shared;
    let kv_source = if shared {
        // HF: the last non-shared layer of the same type provides the K/V.
        let producer = (0..first_shared)
            .rev()
            .find(|&j| types[j] == ty)
            .ok_or_else(|| {
                let ty = ty.name();
                ConfigError::Invalid(format!(
                    "layer {i} ({ty}) shares K/V but no earlier {ty} layer owns any"
                ))
            })?;
        KvSource::Shared(producer)
    } else {
        KvSource::Own
    };
    let mut intermediate_size = ov.intermediate_size.unwrap_or(t.intermediate_size);
    if t.use_double_wide_mlp && shared {
        intermediate_size *= 2;
    }
    let rope_json = rope_params.get(ty.name()).ok_or_else(|| {
        ConfigError::Invalid(format!("rope_parameters has no entry for `{}`", ty.name()))
    })?;
    Ok(LayerSpec {
        kind,
        head_dim,
        num_kv_heads,
        kv_source,
        k_eq_v: t.attention_k_eq_v && kind == LayerKind::Full,
        intermediate_size,
        rope: resolve_rope(rope_json, head_dim)?,
    })
}

/// A consumer must see K/V of the same shape as its producer's.
fn check_kv_sharing(layers: &[LayerSpec]) -> Result<(), ConfigError> {
    for (i, l) in layers.iter().enumerate() {
        if let KvSource::Shared(p) = l.kv_source {
            let prod = &layers[p];
            if prod.head_dim != l.head_dim || prod.num_kv_heads != l.num_kv_heads {
                return Err(ConfigError::Invalid(format!(
                    "layer {i} shares K/V of layer {p} but their head shapes differ"
                )));
            }
        }
    }
    Ok(())
}

fn default_rope_parameters(
    given: Option<&BTreeMap<String, RopeParametersJson>>,
) -> BTreeMap<String, RopeParametersJson> {
    match given {
        Some(map) => map.clone(),
        None => BTreeMap::from([
            (
                LayerType::SlidingAttention.name().to_string(),
                RopeParametersJson {
                    rope_type: RopeType::Default,
                    rope_theta: 10_000.0,
                    partial_rotary_factor: None,
                    factor: None,
                },
            ),
            (
                LayerType::FullAttention.name().to_string(),
                RopeParametersJson {
                    rope_type: RopeType::Proportional,
                    rope_theta: 1_000_000.0,
                    partial_rotary_factor: Some(0.25),
                    factor: None,
                },
            ),
        ]),
    }
}

fn resolve_rope(r: &RopeParametersJson, head_dim: usize) -> Result<RopeSpec, ConfigError> {
    let factor = r.factor.unwrap_or(1.0);
    if r.rope_theta.is_nan() || r.rope_theta <= 0.0 || factor.is_nan() || factor <= 0.0 {
        return Err(ConfigError::Invalid(
            "rope_theta and factor must be positive".into(),
        ));
    }
    let rotated_pairs = match r.rope_type {
        RopeType::Default | RopeType::Linear => head_dim / 2,
        // HF `_compute_proportional_rope_parameters`: int(partial_rotary_factor * head_dim // 2).
        RopeType::Proportional => {
            let p = r.partial_rotary_factor.unwrap_or(1.0);
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError::Invalid(format!("partial_rotary_factor {p}")));
            }
            ((p * head_dim as f64) / 2.0).floor() as usize
        }
    };
    let factor = if r.rope_type == RopeType::Default {
        1.0
    } else {
        factor
    };
    Ok(RopeSpec {
        theta: r.rope_theta,
        rotated_pairs,
        exponent_dim: head_dim,
        factor,
    })
}

fn resolve_audio(a: &AudioConfigJson) -> Result<AudioConfig, ConfigError> {
    if a.hidden_size == 0
        || a.num_attention_heads == 0
        || !a.hidden_size.is_multiple_of(a.num_attention_heads)
    {
        return Err(ConfigError::Invalid(format!(
            "audio hidden_size {} is not divisible by {} heads",
            a.hidden_size, a.num_attention_heads
        )));
    }
    if a.attention_context_right != 0 {
        return Err(ConfigError::Unsupported(
            "audio attention with right context (the released encoder is causal)".into(),
        ));
    }
    if a.attention_context_left < 2 || a.attention_chunk_size == 0 {
        return Err(ConfigError::Invalid(
            "audio attention window must cover at least one past frame".into(),
        ));
    }
    if a.subsampling_conv_channels.len() != 2 || a.subsampling_conv_channels.contains(&0) {
        return Err(ConfigError::Unsupported(format!(
            "subsampling_conv_channels {:?} (two conv layers expected)",
            a.subsampling_conv_channels
        )));
    }
    if a.conv_kernel_size == 0 {
        return Err(ConfigError::Invalid("audio conv_kernel_size is 0".into()));
    }
    let max_past = a.attention_context_left - 1;
    let context_size = a.attention_chunk_size + max_past + a.attention_context_right;
    let rel_positions = context_size / 2 + 1;
    Ok(AudioConfig {
        hidden_size: a.hidden_size,
        num_layers: a.num_hidden_layers,
        num_heads: a.num_attention_heads,
        head_dim: a.hidden_size / a.num_attention_heads,
        conv_channels: [
            a.subsampling_conv_channels[0],
            a.subsampling_conv_channels[1],
        ],
        conv_kernel_size: a.conv_kernel_size,
        residual_weight: a.residual_weight,
        chunk_size: a.attention_chunk_size,
        max_past,
        rel_positions,
        rel_offset: (context_size / 2) as isize - max_past as isize,
        logit_cap: a.attention_logit_cap,
        invalid_logit: a.attention_invalid_logits_value,
        use_clipped_linears: a.use_clipped_linears,
        rms_norm_eps: a.rms_norm_eps,
        gradient_clipping: a.gradient_clipping,
        output_dim: a.output_proj_dims,
        activation: Activation::parse(&a.hidden_act)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e2b_text_json() -> serde_json::Value {
        serde_json::json!({
            "vocab_size": 262144, "hidden_size": 1536, "intermediate_size": 6144,
            "num_hidden_layers": 35, "num_attention_heads": 8, "num_key_value_heads": 1,
            "head_dim": 256, "global_head_dim": 512, "sliding_window": 512,
            "layer_types": (0..35).map(|i| if i % 5 == 4 { "full_attention" } else { "sliding_attention" }).collect::<Vec<_>>(),
            "num_kv_shared_layers": 20, "use_double_wide_mlp": true,
            "hidden_size_per_layer_input": 256, "final_logit_softcapping": 30.0,
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1000000.0}
            }
        })
    }

    #[test]
    fn e2b_layout_resolves_like_the_spec() {
        let json: TextConfigJson = serde_json::from_value(e2b_text_json()).unwrap();
        let t = resolve_text(&json, None).unwrap();
        assert_eq!(t.first_shared_layer(), 15);
        let full: Vec<usize> = (0..35)
            .filter(|&i| t.layers[i].kind == LayerKind::Full)
            .collect();
        assert_eq!(full, vec![4, 9, 14, 19, 24, 29, 34]);
        for i in 15..35 {
            let want = if t.layers[i].kind == LayerKind::Full {
                14
            } else {
                13
            };
            assert_eq!(t.layers[i].kv_source, KvSource::Shared(want), "layer {i}");
            assert_eq!(t.layers[i].intermediate_size, 12288);
        }
        assert_eq!(t.layers[14].intermediate_size, 6144);
        assert_eq!(t.layers[4].head_dim, 512);
        assert_eq!(t.layers[4].rope.rotated_pairs, 64);
        assert_eq!(t.layers[3].rope.rotated_pairs, 128);
        let inv = t.layers[4].rope.inv_freq(512);
        assert_eq!(inv.len(), 256);
        assert!((inv[1] - 1e6f64.powf(-2.0 / 512.0)).abs() < 1e-15);
        assert_eq!(inv[64], 0.0);
    }

    #[test]
    fn per_layer_config_form_equals_flat_form() {
        let mut v = e2b_text_json();
        let obj = v.as_object_mut().unwrap();
        obj.remove("global_head_dim");
        let per_layer: serde_json::Map<String, serde_json::Value> = (0..35)
            .filter(|i| i % 5 == 4)
            .map(|i| (i.to_string(), serde_json::json!({"head_dim": 512})))
            .collect();
        obj.insert("per_layer_config".into(), per_layer.into());
        let a = resolve_text(&serde_json::from_value(e2b_text_json()).unwrap(), None).unwrap();
        let b = resolve_text(&serde_json::from_value(v).unwrap(), None).unwrap();
        assert_eq!(a.layers, b.layers);
    }

    #[test]
    fn unknown_override_and_moe_are_refused() {
        let mut v = e2b_text_json();
        v["per_layer_config"] = serde_json::json!({"4": {"skip": ["mlp"]}});
        let err = resolve_text(&serde_json::from_value(v).unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("skip"), "{err}");
        let mut v = e2b_text_json();
        v["enable_moe_block"] = true.into();
        assert!(resolve_text(&serde_json::from_value(v).unwrap(), None).is_err());
    }

    #[test]
    fn audio_relative_offset_follows_hf_rel_shift() {
        let e2b: AudioConfigJson = serde_json::from_str("{}").unwrap();
        let a = resolve_audio(&e2b).unwrap();
        assert_eq!((a.max_past, a.rel_positions, a.rel_offset), (12, 13, 0));
        let varied: AudioConfigJson = serde_json::from_value(
            serde_json::json!({"attention_chunk_size": 8, "attention_context_left": 6}),
        )
        .unwrap();
        let a = resolve_audio(&varied).unwrap();
        // context 8 + 5 = 13 -> 7 table rows (positions 6..0); distance d reads position d + 1.
        assert_eq!((a.max_past, a.rel_positions, a.rel_offset), (5, 7, 1));
    }
}
