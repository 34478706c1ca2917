//! GGUF files in CrispASR's `gemma4e2b` layout (`models/convert-gemma4-e2b-to-gguf.py` and its
//! `crispasr-quantize`): the container, its tensor names and its metadata.
//!
//! Hark reads GGUF with this small reader of its own rather than a crate: what it needs is a
//! bounds-checked parse of the header, the key/value metadata and the tensor table over a
//! memory map (every count, length, offset and size checked, so a damaged file is a typed
//! [`GgufProblem`], never a panic), plus the seven tensor types of [`GgmlType`]; the crates
//! seen (`gguf-rs-lib`, candle's `gguf_file`) either pull a whole ML framework in or read the
//! tensor data eagerly.
//!
//! Format (GGUF v2/v3, little-endian): magic `GGUF`, version u32, tensor count u64, metadata
//! count u64; each metadata entry a string key, a u32 value type and the value; each tensor
//! a string name, u32 dimension count, u64 dimensions (ggml order: `ne[0]` is the innermost,
//! i.e. the Hugging Face shape reversed), u32 ggml type, u64 offset into the data section; the
//! data section starts at the next multiple of `general.alignment` (default 32) after the
//! table, and every offset is a multiple of it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::quant::{GgmlType, ggml_type_name};

/// What is wrong with a GGUF file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufProblem {
    #[error("not a GGUF file (magic {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("truncated: {what} needs {need} bytes at offset {at}, the file has {len}")]
    Truncated {
        what: String,
        at: usize,
        need: usize,
        len: usize,
    },
    #[error("{0}: size or count overflows")]
    Overflow(String),
    #[error("metadata {key}: {detail}")]
    BadMetadata { key: String, detail: String },
    #[error(
        "metadata key {0} is missing (without it Hark needs the model's config.json beside the GGUF file)"
    )]
    MissingKey(String),
    #[error("general.alignment {0} is not a power of two")]
    BadAlignment(u64),
    #[error("tensor {tensor}: type {} is not supported (Hark reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4K)", type_label(*type_id))]
    UnsupportedType { tensor: String, type_id: u32 },
    #[error("tensor {tensor}: {detail}")]
    BadShape { tensor: String, detail: String },
    #[error("tensor {tensor}: data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        tensor: String,
        offset: u64,
        alignment: usize,
    },
    #[error("tensor {tensor}: data {start}..{end} lies outside the file ({len} bytes)")]
    OutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        len: usize,
    },
    #[error("tensor {0} appears twice")]
    DuplicateTensor(String),
}

fn type_label(id: u32) -> String {
    match ggml_type_name(id) {
        Some(name) => format!("{name} ({id})"),
        None => format!("{id} (unknown)"),
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer type as u64 (negative values are `None`).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            Value::Bool(v) => Some(v as u64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => self.as_u64().map(|v| v != 0),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor of the table, checked against the file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensor {
    pub name: String,
    /// Hugging Face order (outermost first): the GGUF dimensions reversed.
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// A parsed GGUF header: metadata and tensor table (the data stays in the caller's bytes).
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    pub alignment: usize,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<GgufTensor>,
}

impl GgufFile {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }
}

const MAX_DIMS: usize = 4;
const MAX_DEPTH: usize = 3;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufProblem> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| GgufProblem::Truncated {
                what: what.to_string(),
                at: self.at,
                need: n,
                len: self.bytes.len(),
            })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufProblem> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufProblem> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufProblem> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// A count of items each at least `min_size` bytes long, checked against the bytes left.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, GgufProblem> {
        let n = self.u64(what)?;
        let need = n.checked_mul(min_size as u64);
        match need {
            Some(need) if need <= self.remaining() as u64 => Ok(n as usize),
            Some(need) => Err(GgufProblem::Truncated {
                what: format!("{what} ({n} items)"),
                at: self.at,
                need: need.min(usize::MAX as u64) as usize,
                len: self.bytes.len(),
            }),
            None => Err(GgufProblem::Overflow(what.to_string())),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, GgufProblem> {
        let n = self.count(1, what)?;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufProblem::BadMetadata {
            key: what.to_string(),
            detail: "string is not UTF-8".into(),
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value, GgufProblem> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(key)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufProblem::BadMetadata {
                        key: key.into(),
                        detail: format!("bool byte {b}"),
                    });
                }
            },
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(GgufProblem::BadMetadata {
                        key: key.into(),
                        detail: "arrays nested too deep".into(),
                    });
                }
                let elem = self.u32(key)?;
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8..=12 => 8,
                    other => {
                        return Err(GgufProblem::BadMetadata {
                            key: key.into(),
                            detail: format!("array of unknown value type {other}"),
                        });
                    }
                };
                let n = self.count(min, key)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(GgufProblem::BadMetadata {
                    key: key.into(),
                    detail: format!("unknown value type {other}"),
                });
            }
        })
    }
}

/// Parse and check a whole GGUF file held in `bytes`.
pub fn parse(bytes: &[u8]) -> Result<GgufFile, GgufProblem> {
    let mut r = Reader { bytes, at: 0 };
    let magic: [u8; 4] = r.array("magic")?;
    if &magic != b"GGUF" {
        return Err(GgufProblem::BadMagic(magic));
    }
    let version = r.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufProblem::UnsupportedVersion(version));
    }
    // A tensor entry is at least 8 (name) + 4 + 4 + 8 bytes; a metadata entry 8 + 4 + 1.
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.count(13, "metadata count")?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = r.string("metadata key")?;
        let ty = r.u32(&key)?;
        let value = r.value(ty, &key, 0)?;
        metadata.insert(key, value);
    }
    let n_tensors = usize::try_from(n_tensors)
        .ok()
        .filter(|&n| n.checked_mul(24).is_some_and(|b| b <= r.remaining()))
        .ok_or_else(|| GgufProblem::Truncated {
            what: format!("tensor table ({n_tensors} tensors)"),
            at: r.at,
            need: usize::MAX,
            len: bytes.len(),
        })?;
    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(v) => {
            let a = v.as_u64().ok_or_else(|| GgufProblem::BadMetadata {
                key: "general.alignment".into(),
                detail: "not an integer".into(),
            })?;
            if a == 0 || !a.is_power_of_two() || a > 1 << 20 {
                return Err(GgufProblem::BadAlignment(a));
            }
            a as usize
        }
    };
    struct Entry {
        name: String,
        dims: Vec<u64>,
        type_id: u32,
        offset: u64,
    }
    let mut entries = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = r.string("tensor name")?;
        let n_dims = r.u32(&name)? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufProblem::BadShape {
                tensor: name,
                detail: format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            });
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(r.u64(&name)?);
        }
        let type_id = r.u32(&name)?;
        let offset = r.u64(&name)?;
        entries.push(Entry {
            name,
            dims,
            type_id,
            offset,
        });
    }
    let data_start =
        r.at.checked_next_multiple_of(alignment)
            .ok_or_else(|| GgufProblem::Overflow("data section".into()))?;
    let mut tensors = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    for e in entries {
        if !seen.insert(e.name.clone()) {
            return Err(GgufProblem::DuplicateTensor(e.name));
        }
        let ty = GgmlType::from_id(e.type_id).ok_or_else(|| GgufProblem::UnsupportedType {
            tensor: e.name.clone(),
            type_id: e.type_id,
        })?;
        let overflow = || GgufProblem::Overflow(format!("tensor {}", e.name));
        let mut n: u64 = 1;
        for &d in &e.dims {
            n = n.checked_mul(d).ok_or_else(overflow)?;
        }
        if n == 0 {
            return Err(GgufProblem::BadShape {
                tensor: e.name,
                detail: format!("empty shape {:?}", e.dims),
            });
        }
        let cols = usize::try_from(e.dims[0]).map_err(|_| overflow())?;
        if !cols.is_multiple_of(ty.block_len()) {
            return Err(GgufProblem::BadShape {
                tensor: e.name,
                detail: format!(
                    "rows of {cols} values are not whole {} blocks of {}",
                    ty.name(),
                    ty.block_len()
                ),
            });
        }
        let row_bytes = ty.row_bytes(cols).ok_or_else(overflow)?;
        let rows = n / e.dims[0];
        let size = (row_bytes as u64).checked_mul(rows).ok_or_else(overflow)?;
        if !e.offset.is_multiple_of(alignment as u64) {
            return Err(GgufProblem::Misaligned {
                tensor: e.name,
                offset: e.offset,
                alignment,
            });
        }
        let start = (data_start as u64)
            .checked_add(e.offset)
            .ok_or_else(overflow)?;
        let end = start.checked_add(size).ok_or_else(overflow)?;
        if end > bytes.len() as u64 {
            return Err(GgufProblem::OutOfBounds {
                tensor: e.name,
                start,
                end,
                len: bytes.len(),
            });
        }
        let shape = e
            .dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).map_err(|_| overflow()))
            .collect::<Result<Vec<_>, _>>()?;
        tensors.push(GgufTensor {
            name: e.name,
            shape,
            ty,
            start: start as usize,
            end: end as usize,
        });
    }
    Ok(GgufFile {
        version,
        alignment,
        metadata,
        tensors,
    })
}

// ---------------------------------------------------------------------------------------------
// Tensor names
// ---------------------------------------------------------------------------------------------

/// Tensors CrispASR's converter adds for its own front end; Hark computes the mel itself.
pub const FRONT_END_RESOURCES: [&str; 2] = ["audio.mel_window", "audio.mel_filters"];

/// Whole-name pairs `(GGUF, Hugging Face)`.
const GLOBAL_NAMES: [(&str, &str); 13] = [
    (
        "audio.subsample.conv0.weight",
        "model.audio_tower.subsample_conv_projection.layer0.conv.weight",
    ),
    (
        "audio.subsample.norm0.weight",
        "model.audio_tower.subsample_conv_projection.layer0.norm.weight",
    ),
    (
        "audio.subsample.conv1.weight",
        "model.audio_tower.subsample_conv_projection.layer1.conv.weight",
    ),
    (
        "audio.subsample.norm1.weight",
        "model.audio_tower.subsample_conv_projection.layer1.norm.weight",
    ),
    (
        "audio.subsample.input_proj.weight",
        "model.audio_tower.subsample_conv_projection.input_proj_linear.weight",
    ),
    (
        "audio.output_proj.weight",
        "model.audio_tower.output_proj.weight",
    ),
    (
        "audio.output_proj.bias",
        "model.audio_tower.output_proj.bias",
    ),
    (
        "audio.embed_proj.weight",
        "model.embed_audio.embedding_projection.weight",
    ),
    (
        "llm.embed_tokens.weight",
        "model.language_model.embed_tokens.weight",
    ),
    (
        "llm.embed_tokens_per_layer.weight",
        "model.language_model.embed_tokens_per_layer.weight",
    ),
    ("llm.norm.weight", "model.language_model.norm.weight"),
    (
        "llm.per_layer_model_projection.weight",
        "model.language_model.per_layer_model_projection.weight",
    ),
    (
        "llm.per_layer_projection_norm.weight",
        "model.language_model.per_layer_projection_norm.weight",
    ),
];

/// Modules of one conformer layer `(GGUF, Hugging Face, clippable linear)`: a clippable
/// linear's `.weight` is HF's `.linear.weight`, its four clip scalars keep their names.
const AUDIO_LAYER_MODULES: [(&str, &str, bool); 21] = [
    ("ffn1.up", "feed_forward1.ffw_layer_1", true),
    ("ffn1.down", "feed_forward1.ffw_layer_2", true),
    ("ffn1.pre_ln", "feed_forward1.pre_layer_norm", false),
    ("ffn1.post_ln", "feed_forward1.post_layer_norm", false),
    ("ffn2.up", "feed_forward2.ffw_layer_1", true),
    ("ffn2.down", "feed_forward2.ffw_layer_2", true),
    ("ffn2.pre_ln", "feed_forward2.pre_layer_norm", false),
    ("ffn2.post_ln", "feed_forward2.post_layer_norm", false),
    ("attn.q", "self_attn.q_proj", true),
    ("attn.k", "self_attn.k_proj", true),
    ("attn.v", "self_attn.v_proj", true),
    ("attn.o", "self_attn.post", true),
    ("attn.rel_k", "self_attn.relative_k_proj", false),
    ("attn_pre_ln", "norm_pre_attn", false),
    ("attn_post_ln", "norm_post_attn", false),
    ("out_ln", "norm_out", false),
    ("conv.pre_ln", "lconv1d.pre_layer_norm", false),
    ("conv.gate_proj", "lconv1d.linear_start", true),
    ("conv.dw_conv", "lconv1d.depthwise_conv1d", false),
    ("conv.conv_ln", "lconv1d.conv_norm", false),
    ("conv.out_proj", "lconv1d.linear_end", true),
];

/// Modules of one decoder layer `(GGUF, Hugging Face)`.
const LLM_LAYER_MODULES: [(&str, &str); 18] = [
    ("attn.q", "self_attn.q_proj"),
    ("attn.k", "self_attn.k_proj"),
    ("attn.v", "self_attn.v_proj"),
    ("attn.o_proj", "self_attn.o_proj"),
    ("attn.q_norm", "self_attn.q_norm"),
    ("attn.k_norm", "self_attn.k_norm"),
    ("attn_norm", "input_layernorm"),
    ("post_attn_norm", "post_attention_layernorm"),
    ("pre_ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffn_norm", "post_feedforward_layernorm"),
    ("ffn.gate", "mlp.gate_proj"),
    ("ffn.up", "mlp.up_proj"),
    ("ffn.down", "mlp.down_proj"),
    ("ple_gate", "per_layer_input_gate"),
    ("ple_proj", "per_layer_projection"),
    ("post_ple_norm", "post_per_layer_input_norm"),
    ("layer_scalar", "layer_scalar"),
    // Written by no converter seen so far, accepted for symmetry with `attn.o_proj`.
    ("attn.o", "self_attn.o_proj"),
];

const CLIP_SCALARS: [&str; 4] = ["input_min", "input_max", "output_min", "output_max"];

/// The Hugging Face name of a GGUF tensor of the `gemma4e2b` layout, or `None` for a name
/// the layout does not have (the caller keeps it under its GGUF name, so tensor validation
/// reports it as unexpected).
pub fn hf_name(gguf: &str) -> Option<String> {
    if let Some((_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == gguf) {
        return Some((*hf).to_string());
    }
    if gguf == "lm_head.weight" {
        return Some(gguf.to_string());
    }
    let layer = |prefix: &str| -> Option<(usize, &str)> {
        let rest = gguf.strip_prefix(prefix)?;
        let (index, rest) = rest.split_once('.')?;
        let i: usize = index.parse().ok()?;
        (i.to_string() == index).then_some((i, rest))
    };
    if let Some((i, rest)) = layer("audio.layers.") {
        for (g, hf, clippable) in AUDIO_LAYER_MODULES {
            let Some(leaf) = rest.strip_prefix(g).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let p = format!("model.audio_tower.layers.{i}.{hf}");
            return match leaf {
                "weight" if clippable => Some(format!("{p}.linear.weight")),
                "weight" | "bias" => Some(format!("{p}.{leaf}")),
                _ if clippable && CLIP_SCALARS.contains(&leaf) => Some(format!("{p}.{leaf}")),
                _ => None,
            };
        }
        if rest == "attn.per_dim_scale" {
            return Some(format!(
                "model.audio_tower.layers.{i}.self_attn.per_dim_scale"
            ));
        }
        return None;
    }
    if let Some((i, rest)) = layer("llm.layers.") {
        let p = format!("model.language_model.layers.{i}");
        for (g, hf) in LLM_LAYER_MODULES {
            if rest == g && g == "layer_scalar" {
                return Some(format!("{p}.{hf}"));
            }
            let Some(leaf) = rest.strip_prefix(g).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            return match leaf {
                "weight" | "bias" => Some(format!("{p}.{hf}.{leaf}")),
                _ => None,
            };
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Metadata → config.json
// ---------------------------------------------------------------------------------------------

/// The `general.architecture` CrispASR writes for Gemma 4 E2B/E4B.
pub const ARCHITECTURE: &str = "gemma4e2b";

/// Metadata keys Hark cannot do without when it builds the configuration from the GGUF.
pub const REQUIRED_KEYS: [&str; 14] = [
    "gemma4e2b.audio.hidden_size",
    "gemma4e2b.audio.num_layers",
    "gemma4e2b.audio.num_heads",
    "gemma4e2b.llm.hidden_size",
    "gemma4e2b.llm.num_layers",
    "gemma4e2b.llm.num_heads",
    "gemma4e2b.llm.num_kv_heads",
    "gemma4e2b.llm.head_dim",
    "gemma4e2b.llm.global_head_dim",
    "gemma4e2b.llm.intermediate_size",
    "gemma4e2b.llm.vocab_size",
    "gemma4e2b.llm.hidden_size_per_layer_input",
    "gemma4e2b.llm.num_kv_shared_layers",
    "gemma4e2b.llm.layer_full_mask",
];

/// Token ids the GGUF does not record, found in the tokenizer by their strings.
#[derive(Debug, Clone)]
pub struct TokenIds {
    pub pad: u32,
    pub bos: u32,
    pub boa: u32,
    pub audio: u32,
    pub eoa: u32,
    /// `<eos>` and `<turn|>`: the stop ids of the released generation config that the
    /// tokenizer knows.
    pub stop: Vec<u32>,
}

/// Build a `config.json` (as JSON) from CrispASR metadata, the tensor shapes (HF names) and
/// the token ids. `Err` names the first missing or malformed key.
///
/// What the metadata lacks is filled as follows: the audio subsampler's channels from the
/// conv weights' shapes, `use_clipped_linears` from the presence of clip scalars,
/// `tie_word_embeddings` from the absence of `lm_head.weight`, RoPE types as Gemma 4 has
/// them (default on sliding layers, proportional on full ones); everything else takes the
/// transformers defaults, which are E2B's values.
pub fn config_json(
    file: &GgufFile,
    shapes: &HashMap<String, Vec<usize>>,
    ids: &TokenIds,
) -> Result<serde_json::Value, GgufProblem> {
    let get = |key: &str| file.get(key);
    let bad = |key: &str, detail: &str| GgufProblem::BadMetadata {
        key: key.to_string(),
        detail: detail.to_string(),
    };
    let int = |key: &str| -> Result<u64, GgufProblem> {
        get(key)
            .ok_or_else(|| GgufProblem::MissingKey(key.to_string()))?
            .as_u64()
            .ok_or_else(|| bad(key, "not a non-negative integer"))
    };
    let opt_int = |key: &str, default: u64| -> Result<u64, GgufProblem> {
        if get(key).is_some() {
            int(key)
        } else {
            Ok(default)
        }
    };
    let float = |key: &str, default: f64| -> Result<f64, GgufProblem> {
        match get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| bad(key, "not a number")),
        }
    };
    let flag = |key: &str| -> Result<bool, GgufProblem> {
        match get(key) {
            None => Ok(false),
            Some(v) => v.as_bool().ok_or_else(|| bad(key, "not a bool")),
        }
    };
    for key in REQUIRED_KEYS {
        if get(key).is_none() {
            return Err(GgufProblem::MissingKey(key.to_string()));
        }
    }
    let n_layers = int("gemma4e2b.llm.num_layers")? as usize;
    let mask_key = "gemma4e2b.llm.layer_full_mask";
    let mask = match get(mask_key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().map(|x| x != 0))
            .collect::<Option<Vec<bool>>>()
            .ok_or_else(|| bad(mask_key, "not a list of integers"))?,
        _ => return Err(bad(mask_key, "not an array")),
    };
    if mask.len() != n_layers {
        return Err(bad(
            mask_key,
            &format!("{} entries for {n_layers} layers", mask.len()),
        ));
    }
    let layer_types: Vec<&str> = mask
        .iter()
        .map(|&full| {
            if full {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    let sub = "model.audio_tower.subsample_conv_projection";
    let channels = |layer: usize| -> Result<usize, GgufProblem> {
        let name = format!("{sub}.layer{layer}.conv.weight");
        shapes
            .get(&name)
            .and_then(|s| s.first().copied())
            .ok_or_else(|| GgufProblem::BadShape {
                tensor: format!("audio.subsample.conv{layer}.weight"),
                detail: "missing (it gives the subsampler's channel count)".into(),
            })
    };
    let clipped = shapes.keys().any(|n| n.ends_with(".input_min"));
    let vocab = int("gemma4e2b.llm.vocab_size")?;
    let text = serde_json::json!({
        "vocab_size": vocab,
        "vocab_size_per_layer_input": vocab,
        "hidden_size": int("gemma4e2b.llm.hidden_size")?,
        "intermediate_size": int("gemma4e2b.llm.intermediate_size")?,
        "num_hidden_layers": n_layers,
        "num_attention_heads": int("gemma4e2b.llm.num_heads")?,
        "num_key_value_heads": int("gemma4e2b.llm.num_kv_heads")?,
        "head_dim": int("gemma4e2b.llm.head_dim")?,
        "global_head_dim": int("gemma4e2b.llm.global_head_dim")?,
        "max_position_embeddings": opt_int("gemma4e2b.llm.max_position_embeddings", 131_072)?,
        "sliding_window": opt_int("gemma4e2b.llm.sliding_window", 512)?,
        "final_logit_softcapping": float("gemma4e2b.llm.final_logit_softcapping", 30.0)?,
        "rms_norm_eps": float("gemma4e2b.llm.rms_norm_eps", 1e-6)?,
        "hidden_size_per_layer_input": int("gemma4e2b.llm.hidden_size_per_layer_input")?,
        "num_kv_shared_layers": int("gemma4e2b.llm.num_kv_shared_layers")?,
        "use_double_wide_mlp": flag("gemma4e2b.llm.use_double_wide_mlp")?,
        "attention_k_eq_v": flag("gemma4e2b.llm.attention_k_eq_v")?,
        "layer_types": layer_types,
        "rope_parameters": {
            "sliding_attention": {
                "rope_type": "default",
                "rope_theta": float("gemma4e2b.llm.rope_theta", 10_000.0)?,
            },
            "full_attention": {
                "rope_type": "proportional",
                "rope_theta": float("gemma4e2b.llm.rope_theta_full", 1_000_000.0)?,
                "partial_rotary_factor": float("gemma4e2b.llm.partial_rotary_factor", 0.25)?,
            },
        },
        "tie_word_embeddings": !shapes.contains_key("lm_head.weight"),
        "pad_token_id": ids.pad,
        "bos_token_id": ids.bos,
        "eos_token_id": ids.stop,
    });
    let audio = serde_json::json!({
        "hidden_size": int("gemma4e2b.audio.hidden_size")?,
        "num_hidden_layers": int("gemma4e2b.audio.num_layers")?,
        "num_attention_heads": int("gemma4e2b.audio.num_heads")?,
        "conv_kernel_size": opt_int("gemma4e2b.audio.conv_kernel_size", 5)?,
        "attention_chunk_size": opt_int("gemma4e2b.audio.chunk_size", 12)?,
        "attention_context_left": opt_int("gemma4e2b.audio.context_left", 13)?,
        "attention_context_right": 0,
        "output_proj_dims": opt_int("gemma4e2b.audio.output_proj_dims", 1536)?,
        "residual_weight": float("gemma4e2b.audio.residual_weight", 0.5)?,
        "attention_logit_cap": float("gemma4e2b.audio.attention_logit_cap", 50.0)?,
        "subsampling_conv_channels": [channels(0)?, channels(1)?],
        "use_clipped_linears": clipped,
    });
    Ok(serde_json::json!({
        "model_type": "gemma4",
        "text_config": text,
        "audio_config": audio,
        "boa_token_id": ids.boa,
        "audio_token_id": ids.audio,
        "eoa_token_id": ids.eoa,
        "eos_token_id": ids.stop,
        "tie_word_embeddings": !shapes.contains_key("lm_head.weight"),
    }))
}

/// Where the GGUF metadata and a `config.json` beside it disagree on a dimension.
pub fn check_against_config(
    file: &GgufFile,
    config: &crate::config::ModelConfig,
) -> Result<(), GgufProblem> {
    let pairs = [
        ("gemma4e2b.llm.hidden_size", config.text.hidden_size),
        ("gemma4e2b.llm.num_layers", config.text.num_layers()),
        ("gemma4e2b.llm.vocab_size", config.text.vocab_size),
        ("gemma4e2b.llm.num_heads", config.text.num_heads),
        (
            "gemma4e2b.llm.hidden_size_per_layer_input",
            config.text.ple_dim,
        ),
        ("gemma4e2b.audio.hidden_size", config.audio.hidden_size),
        ("gemma4e2b.audio.num_layers", config.audio.num_layers),
        ("gemma4e2b.audio.num_heads", config.audio.num_heads),
    ];
    for (key, want) in pairs {
        if let Some(v) = file.get(key)
            && v.as_u64() != Some(want as u64)
        {
            return Err(GgufProblem::BadMetadata {
                key: key.into(),
                detail: format!("{v:?} but config.json beside the file says {want}"),
            });
        }
    }
    Ok(())
}

/// Check a `tokenizer.json` vocabulary against the GGUF's `tokenizer.ggml.tokens`: every
/// token the GGUF lists must have the same string at the same id in the tokenizer. (CrispASR
/// writes the `model.vocab` of tokenizer.json, leaving ids it lacks as empty strings, so the
/// tokenizer may have more tokens — its added tokens — but not fewer.) `Err` describes the
/// first difference.
pub fn check_token_list(
    file: &GgufFile,
    vocab_len: usize,
    token: impl Fn(u32) -> Option<String>,
) -> Result<(), String> {
    let Some(Value::Array(tokens)) = file.get("tokenizer.ggml.tokens") else {
        return Ok(());
    };
    if tokens.len() > vocab_len {
        return Err(format!(
            "the GGUF lists {} tokens, tokenizer.json only {vocab_len}",
            tokens.len()
        ));
    }
    for (id, t) in tokens.iter().enumerate() {
        let want = t.as_str().unwrap_or_default();
        if want.is_empty() {
            continue;
        }
        let have = token(id as u32);
        if have.as_deref() != Some(want) {
            return Err(format!(
                "token {id} is {want:?} in the GGUF but {have:?} in tokenizer.json"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CrispASR's converter (`map_tensor_name`), as a sequence of substring replacements
    /// applied in order: the oracle the inverse table is checked against.
    fn crispasr_name(hf: &str) -> String {
        const STEPS: &[(&str, &str)] = &[
            ("model.audio_tower.layers.", "audio.layers."),
            ("model.audio_tower.output_proj.", "audio.output_proj."),
            (
                "model.audio_tower.subsample_conv_projection.",
                "audio.subsample.",
            ),
            (".linear.weight", ".weight"),
            (".feed_forward1.", ".ffn1."),
            (".feed_forward2.", ".ffn2."),
            (".ffw_layer_1.", ".up."),
            (".ffw_layer_2.", ".down."),
            (".pre_layer_norm.", ".pre_ln."),
            (".post_layer_norm.", ".post_ln."),
            (".lconv1d.", ".conv."),
            (".depthwise_conv1d.", ".dw_conv."),
            (".linear_start.", ".gate_proj."),
            (".linear_end.", ".out_proj."),
            (".conv_norm.", ".conv_ln."),
            (".norm_pre_attn.", ".attn_pre_ln."),
            (".norm_post_attn.", ".attn_post_ln."),
            (".norm_out.", ".out_ln."),
            (".self_attn.", ".attn."),
            (".q_proj.", ".q."),
            (".k_proj.", ".k."),
            (".v_proj.", ".v."),
            (".post.", ".o."),
            (".relative_k_proj.", ".rel_k."),
            (".input_proj_linear.", ".input_proj."),
            (".layer0.conv.", ".conv0."),
            (".layer0.norm.", ".norm0."),
            (".layer1.conv.", ".conv1."),
            (".layer1.norm.", ".norm1."),
            (
                "model.embed_audio.embedding_projection.",
                "audio.embed_proj.",
            ),
            ("model.language_model.", "llm."),
            (".self_attn.", ".attn."),
            (".input_layernorm.", ".attn_norm."),
            (".post_attention_layernorm.", ".post_attn_norm."),
            (".pre_feedforward_layernorm.", ".pre_ffn_norm."),
            (".post_feedforward_layernorm.", ".post_ffn_norm."),
            (".post_per_layer_input_norm.", ".post_ple_norm."),
            (".per_layer_input_gate.", ".ple_gate."),
            (".per_layer_projection.", ".ple_proj."),
            (".mlp.gate_proj.", ".ffn.gate."),
            (".mlp.up_proj.", ".ffn.up."),
            (".mlp.down_proj.", ".ffn.down."),
            (".pre_feedforward_layernorm_2.", ".pre_ffn_norm_2."),
            (".post_feedforward_layernorm_1.", ".post_ffn_norm_1."),
            (".post_feedforward_layernorm_2.", ".post_ffn_norm_2."),
            (".attn.v_norm.", ".attn.v_norm."),
        ];
        let mut name = hf.to_string();
        for (from, to) in STEPS.iter().copied() {
            name = name.replace(from, to);
        }
        name
    }

    #[test]
    fn every_e2b_tensor_round_trips_through_crispasr_names() {
        let json: crate::config::Gemma4ConfigJson = serde_json::from_value(serde_json::json!({
            "text_config": {
                "vocab_size": 262144, "hidden_size": 1536, "intermediate_size": 6144,
                "num_hidden_layers": 35, "num_attention_heads": 8, "num_key_value_heads": 1,
                "head_dim": 256, "global_head_dim": 512,
                "layer_types": (0..35).map(|i| if i % 5 == 4 { "full_attention" } else { "sliding_attention" }).collect::<Vec<_>>(),
                "num_kv_shared_layers": 20, "use_double_wide_mlp": true, "attention_bias": true,
                "hidden_size_per_layer_input": 256, "tie_word_embeddings": false
            },
            "audio_config": {},
            "boa_token_id": 256000, "audio_token_id": 258881, "eoa_token_id": 258883,
            "eos_token_id": [1, 106]
        }))
        .unwrap();
        let c = crate::config::ModelConfig::resolve(&json, None, None).unwrap();
        let mut names = crate::encoder::expected_tensors(&c.audio, 128, c.text.hidden_size);
        names.extend(crate::decoder::expected_tensors(&c.text));
        assert!(names.len() > 900, "{}", names.len());
        let mut gguf_names = HashSet::new();
        for (hf, _) in &names {
            let g = crispasr_name(hf);
            assert!(gguf_names.insert(g.clone()), "{g} is not unique");
            assert_eq!(hf_name(&g).as_deref(), Some(hf.as_str()), "{hf} -> {g}");
        }
        assert_eq!(
            hf_name("llm.layers.3.attn.q.weight").unwrap(),
            "model.language_model.layers.3.self_attn.q_proj.weight"
        );
        assert_eq!(
            hf_name("audio.layers.0.attn.o.output_max").unwrap(),
            "model.audio_tower.layers.0.self_attn.post.output_max"
        );
        for odd in [
            "llm.layers.01.attn.q.weight",
            "audio.layers.x.ffn1.up.weight",
            "llm.layers.2.attn.q.scale",
            "audio.mel_filters",
            "token_embd.weight",
        ] {
            assert_eq!(hf_name(odd), None, "{odd}");
        }
    }

    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b
    }

    fn string(b: &mut Vec<u8>, s: &str) {
        b.extend_from_slice(&(s.len() as u64).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    }

    fn tensor(b: &mut Vec<u8>, name: &str, dims: &[u64], ty: u32, offset: u64) {
        string(b, name);
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
    }

    fn pad(b: &mut Vec<u8>) {
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
    }

    #[test]
    fn a_small_file_parses_with_reversed_shapes() {
        let mut b = header(2, 1);
        string(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        string(&mut b, "gemma4e2b");
        tensor(&mut b, "a", &[64, 2], 8, 0); // Q8_0: 2 rows × 2 blocks × 34 bytes = 136
        tensor(&mut b, "b", &[3], 0, 160);
        pad(&mut b);
        b.resize(b.len() + 160 + 12, 0);
        let f = parse(&b).unwrap();
        assert_eq!(f.architecture(), Some("gemma4e2b"));
        assert_eq!(f.tensors[0].shape, vec![2, 64]);
        assert_eq!(f.tensors[0].end - f.tensors[0].start, 136);
        assert_eq!(f.tensors[1].shape, vec![3]);
    }

    #[test]
    fn damaged_files_are_typed_problems() {
        let good = {
            let mut b = header(1, 0);
            tensor(&mut b, "a", &[32, 2], 0, 0);
            pad(&mut b);
            b.resize(b.len() + 256, 0);
            b
        };
        assert!(parse(&good).is_ok());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(parse(&bad), Err(GgufProblem::BadMagic(_))));
        for cut in [3, 10, 30, 50, good.len() - 1] {
            assert!(
                matches!(
                    parse(&good[..cut]),
                    Err(GgufProblem::Truncated { .. }) | Err(GgufProblem::OutOfBounds { .. })
                ),
                "cut at {cut}: {:?}",
                parse(&good[..cut])
            );
        }
        let with = |dims: &[u64], ty: u32, offset: u64| {
            let mut b = header(1, 0);
            tensor(&mut b, "a", dims, ty, offset);
            pad(&mut b);
            b.resize(b.len() + 256, 0);
            parse(&b)
        };
        assert!(matches!(
            with(&[32, 2], 14, 0),
            Err(GgufProblem::UnsupportedType { type_id: 14, .. })
        ));
        assert!(matches!(
            with(&[32, 2], 999, 0),
            Err(GgufProblem::UnsupportedType { .. })
        ));
        assert!(matches!(
            with(&[32, 2], 0, 4),
            Err(GgufProblem::Misaligned { .. })
        ));
        assert!(matches!(
            with(&[u64::MAX, 2], 0, 0),
            Err(GgufProblem::Overflow(_))
        ));
        assert!(matches!(
            with(&[1 << 40, 1 << 40], 0, 0),
            Err(GgufProblem::Overflow(_)) | Err(GgufProblem::OutOfBounds { .. })
        ));
        assert!(matches!(
            with(&[32, 2], 0, u64::MAX - 31),
            Err(GgufProblem::Overflow(_)) | Err(GgufProblem::Misaligned { .. })
        ));
        assert!(matches!(
            with(&[48, 2], 8, 0),
            Err(GgufProblem::BadShape { .. })
        ));
        assert!(matches!(
            with(&[32, 64], 0, 0),
            Err(GgufProblem::OutOfBounds { .. })
        ));
        assert!(matches!(with(&[], 0, 0), Err(GgufProblem::BadShape { .. })));
        assert!(matches!(
            with(&[1, 1, 1, 1, 1], 0, 0),
            Err(GgufProblem::BadShape { .. })
        ));
        // Counts far beyond the file are refused before anything is allocated.
        let mut b = header(u64::MAX, 0);
        b.resize(64, 0);
        assert!(matches!(parse(&b), Err(GgufProblem::Truncated { .. })));
        let mut b = header(0, u64::MAX / 2);
        b.resize(64, 0);
        assert!(matches!(
            parse(&b),
            Err(GgufProblem::Truncated { .. }) | Err(GgufProblem::Overflow(_))
        ));
        let mut b = header(0, 1);
        string(&mut b, "k");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&b),
            Err(GgufProblem::Overflow(_)) | Err(GgufProblem::Truncated { .. })
        ));
        let mut v1 = good.clone();
        v1[4] = 1;
        assert_eq!(parse(&v1).unwrap_err(), GgufProblem::UnsupportedVersion(1));
    }
}
