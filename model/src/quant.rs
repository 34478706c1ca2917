//! Natively quantized weights as the released checkpoints store them, and their exact f32
//! dequantization.
//!
//! Two families are read:
//!
//! * **ggml block types** (GGUF files): `Q8_0` (32 × i8 and an f16 scale), `Q4_0`/`Q4_1`
//!   (32 × 4 bit, f16 scale, and an f16 minimum for `Q4_1`) and `Q4_K` (super-blocks of 256 in
//!   eight sub-blocks of 32, each with a 6-bit scale and 6-bit minimum under two f16 factors).
//!   The dequantization follows ggml's `dequantize_row_*` (and gguf-py's `quants.py`, which the
//!   fixture generator uses as the reference) operation for operation in f32, so it is exact.
//! * **GPTQ / AutoRound W4A16** (safetensors): `qweight` i32 `[in/8, out]` holding eight 4-bit
//!   values per word along the input axis (input `8r + k` of column `c` in bits `4k..4k+4` of
//!   `qweight[r][c]`), `qzeros` i32 `[groups, out/8]` packed the same way along the output
//!   axis, `scales` `[groups, out]`, optional `g_idx` i32 `[in]` (the group of each input).
//!   `w[c][i] = scale[g][c] · (q − zero[g][c])` where the stored zero is `zero − 1` in the
//!   original GPTQ ("v1") convention and `zero` itself in gptqmodel's "v2" one.
//!
//! For the packed CPU kernels every format maps onto the two block shapes of 32 weights along
//! a row that `hark-kernels` multiplies ([`BlockQ8`], ggml `Q8_0`, and [`BlockQ4`], ggml `Q4_1`):
//! `Q8_0` is one already; `Q4_0`, `Q4_1` and symmetric GPTQ with f16 scales convert without
//! loss; `Q4_K` becomes one `Q4` block per sub-block with `d = f16(d·sc)`, `m = f16(−dmin·m)`,
//! which rounds the two products to f16 (relative error ≤ 2⁻¹¹ of each).

use half::{bf16, f16};
pub use hark_kernels::{BlockQ4, BlockQ8, QK};
/// Weights per `Q4_K` super-block.
pub const QK_K: usize = 256;

/// Element or block type of a GGUF tensor that Hark reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
}

impl GgmlType {
    /// The ggml type id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4K => 12,
            GgmlType::BF16 => 30,
        }
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4K => "Q4_K",
        }
    }

    /// Elements per block (1 for the float types).
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => QK,
            GgmlType::Q4K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 2 + QK / 2,
            GgmlType::Q4_1 => 4 + QK / 2,
            GgmlType::Q8_0 => 2 + QK,
            GgmlType::Q4K => 4 + 12 + QK_K / 2,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes of a row of `cols` elements; `None` when `cols` is not a whole number of blocks
    /// or the size overflows.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        if !cols.is_multiple_of(self.block_len()) {
            return None;
        }
        (cols / self.block_len()).checked_mul(self.block_bytes())
    }
}

/// Name of a ggml type id Hark does not read, for error messages.
pub fn ggml_type_name(id: u32) -> Option<&'static str> {
    const NAMES: [&str; 42] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
        "NVFP4",
        "?",
    ];
    NAMES.get(id as usize).copied().filter(|n| *n != "?")
}

fn f16_at(raw: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([raw[at], raw[at + 1]]).to_f32()
}

/// 6-bit scale and minimum of sub-block `j` of a `Q4_K` super-block (ggml `get_scale_min_k4`).
fn q4k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Dequantize whole blocks: `raw` holds exactly `out.len() / block_len` blocks of type `t`.
///
/// Panics if the lengths disagree (callers size both from the validated tensor shape).
pub fn dequantize(t: GgmlType, raw: &[u8], out: &mut [f32]) {
    let n_blocks = out.len() / t.block_len();
    assert_eq!(out.len(), n_blocks * t.block_len(), "whole blocks");
    assert_eq!(raw.len(), n_blocks * t.block_bytes(), "{} bytes", t.name());
    let bb = t.block_bytes();
    match t {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (y, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(bb)) {
                let d = f16_at(b, 0);
                for (o, &q) in y.iter_mut().zip(&b[2..]) {
                    *o = d * (q as i8) as f32;
                }
            }
        }
        GgmlType::Q4_0 => {
            for (y, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(bb)) {
                let d = f16_at(b, 0);
                let qs = &b[2..];
                for l in 0..QK / 2 {
                    y[l] = d * ((qs[l] & 15) as i32 - 8) as f32;
                    y[l + QK / 2] = d * ((qs[l] >> 4) as i32 - 8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (y, b) in out.chunks_exact_mut(QK).zip(raw.chunks_exact(bb)) {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                let qs = &b[4..];
                for l in 0..QK / 2 {
                    y[l] = d * (qs[l] & 15) as f32 + m;
                    y[l + QK / 2] = d * (qs[l] >> 4) as f32 + m;
                }
            }
        }
        GgmlType::Q4K => {
            for (y, b) in out.chunks_exact_mut(QK_K).zip(raw.chunks_exact(bb)) {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let qs = &b[16..];
                for j in 0..QK_K / QK {
                    let (sc, m) = q4k_scale_min(j, scales);
                    let d1 = d * sc as f32;
                    let m1 = dmin * m as f32;
                    let q = &qs[QK * (j / 2)..QK * (j / 2 + 1)];
                    let shift = 4 * (j % 2);
                    for (l, o) in y[QK * j..QK * (j + 1)].iter_mut().enumerate() {
                        *o = d1 * ((q[l] >> shift) & 15) as f32 - m1;
                    }
                }
            }
        }
    }
}

/// The 32 weights of a [`BlockQ8`] as f32.
pub fn dequantize_q8(b: &BlockQ8, out: &mut [f32]) {
    let d = b.d.to_f32();
    for (o, &q) in out.iter_mut().zip(&b.qs) {
        *o = d * q as f32;
    }
}

/// The 32 weights of a [`BlockQ4`] as f32.
pub fn dequantize_q4(b: &BlockQ4, out: &mut [f32]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    for l in 0..QK / 2 {
        out[l] = d * (b.qs[l] & 15) as f32 + m;
        out[l + QK / 2] = d * (b.qs[l] >> 4) as f32 + m;
    }
}

/// A weight matrix `[rows, cols]` as packed 32-weight blocks, row-major, `cols / 32` per row.
#[derive(Debug, Clone, PartialEq)]
pub enum PackedBlocks {
    Q8(Vec<BlockQ8>),
    Q4(Vec<BlockQ4>),
}

/// Why blocks could not be repacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepackError {
    #[error("a {0} scale does not fit in f16")]
    ScaleOverflow(&'static str),
    #[error("{0} has no 32-weight block form")]
    NoBlockForm(&'static str),
}

fn to_f16(x: f32, what: &'static str) -> Result<f16, RepackError> {
    let h = f16::from_f32(x);
    if h.is_finite() {
        Ok(h)
    } else {
        Err(RepackError::ScaleOverflow(what))
    }
}

/// Repack ggml blocks (`raw`, whole rows) as [`PackedBlocks`]; float types have no block form.
pub fn repack_ggml(t: GgmlType, raw: &[u8]) -> Result<PackedBlocks, RepackError> {
    let bb = t.block_bytes();
    match t {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Err(RepackError::NoBlockForm(t.name())),
        GgmlType::Q8_0 => Ok(PackedBlocks::Q8(
            raw.chunks_exact(bb)
                .map(|b| {
                    let mut qs = [0i8; QK];
                    for (q, &v) in qs.iter_mut().zip(&b[2..]) {
                        *q = v as i8;
                    }
                    BlockQ8 {
                        d: f16::from_le_bytes([b[0], b[1]]),
                        qs,
                    }
                })
                .collect(),
        )),
        GgmlType::Q4_0 => raw
            .chunks_exact(bb)
            .map(|b| {
                let d = f16::from_le_bytes([b[0], b[1]]);
                Ok(BlockQ4 {
                    d,
                    // −8·d is exact in f16 unless it overflows.
                    m: to_f16(-8.0 * d.to_f32(), "Q4_0")?,
                    qs: b[2..].try_into().expect("16 bytes"),
                })
            })
            .collect::<Result<_, _>>()
            .map(PackedBlocks::Q4),
        GgmlType::Q4_1 => Ok(PackedBlocks::Q4(
            raw.chunks_exact(bb)
                .map(|b| BlockQ4 {
                    d: f16::from_le_bytes([b[0], b[1]]),
                    m: f16::from_le_bytes([b[2], b[3]]),
                    qs: b[4..].try_into().expect("16 bytes"),
                })
                .collect(),
        )),
        GgmlType::Q4K => {
            let mut out = Vec::with_capacity(raw.len() / bb * (QK_K / QK));
            for b in raw.chunks_exact(bb) {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let qs = &b[16..];
                for j in 0..QK_K / QK {
                    let (sc, m) = q4k_scale_min(j, scales);
                    let src = &qs[QK * (j / 2)..QK * (j / 2 + 1)];
                    let shift = 4 * (j % 2);
                    let mut packed = [0u8; QK / 2];
                    for (l, p) in packed.iter_mut().enumerate() {
                        let lo = (src[l] >> shift) & 15;
                        let hi = (src[l + QK / 2] >> shift) & 15;
                        *p = lo | (hi << 4);
                    }
                    out.push(BlockQ4 {
                        d: to_f16(d * sc as f32, "Q4_K")?,
                        m: to_f16(-(dmin * m as f32), "Q4_K")?,
                        qs: packed,
                    });
                }
            }
            Ok(PackedBlocks::Q4(out))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPTQ / AutoRound
// ---------------------------------------------------------------------------------------------

/// Element type of GPTQ `scales`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleType {
    F16,
    BF16,
    F32,
}

impl ScaleType {
    pub fn size(self) -> usize {
        match self {
            ScaleType::F32 => 4,
            _ => 2,
        }
    }
}

/// One GPTQ-packed 4-bit linear weight `[rows = out, cols = in]`, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub struct Gptq4<'a> {
    pub rows: usize,
    pub cols: usize,
    pub group_size: usize,
    /// i32 little-endian `[cols / 8, rows]`.
    pub qweight: &'a [u8],
    /// i32 little-endian `[groups, rows / 8]`.
    pub qzeros: &'a [u8],
    /// `[groups, rows]`.
    pub scales: &'a [u8],
    pub scale_type: ScaleType,
    /// Group of each input column; `None` means `i / group_size`.
    pub g_idx: Option<&'a [u32]>,
    /// Added to the stored zero: 1 for GPTQ v1 checkpoints, 0 for v2.
    pub zero_offset: i32,
}

fn i32_at(raw: &[u8], index: usize) -> u32 {
    let at = 4 * index;
    u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]])
}

impl Gptq4<'_> {
    pub fn groups(&self) -> usize {
        self.cols.div_ceil(self.group_size)
    }

    fn group(&self, col: usize) -> usize {
        match self.g_idx {
            Some(g) => g[col] as usize,
            None => col / self.group_size,
        }
    }

    fn scale(&self, group: usize, row: usize) -> f32 {
        let i = group * self.rows + row;
        let s = self.scales;
        match self.scale_type {
            ScaleType::F16 => f16::from_le_bytes([s[2 * i], s[2 * i + 1]]).to_f32(),
            ScaleType::BF16 => bf16::from_le_bytes([s[2 * i], s[2 * i + 1]]).to_f32(),
            ScaleType::F32 => {
                f32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]])
            }
        }
    }

    /// The zero point (after the v1 offset) of `row` in `group`.
    pub fn zero(&self, group: usize, row: usize) -> i32 {
        let word = i32_at(self.qzeros, group * (self.rows / 8) + row / 8);
        ((word >> (4 * (row % 8))) & 15) as i32 + self.zero_offset
    }

    fn q(&self, row: usize, col: usize) -> i32 {
        let word = i32_at(self.qweight, (col / 8) * self.rows + row);
        ((word >> (4 * (col % 8))) & 15) as i32
    }

    /// Row `row` (one output feature) as f32: `scale · (q − zero)`.
    pub fn row(&self, row: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols);
        for (col, o) in out.iter_mut().enumerate() {
            let g = self.group(col);
            *o = self.scale(g, row) * (self.q(row, col) - self.zero(g, row)) as f32;
        }
    }

    /// The whole matrix `[rows, cols]` as f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.row(r, row);
        }
        out
    }

    /// Whether every column's group is `col / group_size` (no activation-order permutation).
    pub fn trivial_groups(&self) -> bool {
        match self.g_idx {
            None => true,
            Some(g) => g
                .iter()
                .enumerate()
                .all(|(i, &gi)| gi as usize == i / self.group_size),
        }
    }

    /// As `Q4` blocks of 32 along each row: `d = scale`, `m = −scale · zero`, `q` unchanged.
    /// Lossless for f16 scales (`zero · scale` with zero 8 is exact). Needs trivial groups
    /// and a group size that is a multiple of 32.
    pub fn repack(&self) -> Result<PackedBlocks, RepackError> {
        if !self.trivial_groups()
            || !self.group_size.is_multiple_of(QK)
            || !self.cols.is_multiple_of(QK)
        {
            return Err(RepackError::NoBlockForm("activation-ordered GPTQ"));
        }
        let per_row = self.cols / QK;
        let mut out = Vec::with_capacity(self.rows * per_row);
        for r in 0..self.rows {
            for b in 0..per_row {
                let g = self.group(b * QK);
                let s = self.scale(g, r);
                let z = self.zero(g, r);
                let mut qs = [0u8; QK / 2];
                for (l, p) in qs.iter_mut().enumerate() {
                    let lo = self.q(r, b * QK + l) as u8;
                    let hi = self.q(r, b * QK + l + QK / 2) as u8;
                    *p = lo | (hi << 4);
                }
                out.push(BlockQ4 {
                    d: to_f16(s, "GPTQ")?,
                    m: to_f16(-s * z as f32, "GPTQ")?,
                    qs,
                });
            }
        }
        Ok(PackedBlocks::Q4(out))
    }
}

/// The `quantization_config` of a W4A16 GPTQ or AutoRound checkpoint, as Hark accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptqConfig {
    /// `gptq` or `auto-round`.
    pub method: String,
    pub group_size: usize,
    /// Added to the stored zero points: 1 for the original GPTQ packing (`checkpoint_format`
    /// `gptq`; AutoRound `packing_format` `auto_round:auto_gptq`/`auto_round:gptq`), which
    /// stores `zero − 1`; 0 for gptqmodel's `gptq_v2` (`auto_round:gptqmodel`).
    pub zero_offset: i32,
    /// Activation order: `g_idx` may permute the groups (honoured when dequantizing).
    pub desc_act: bool,
}

impl GptqConfig {
    /// Read `quantization_config` from a parsed `config.json`: `Ok(None)` when there is none;
    /// an error for anything but 4-bit, symmetric, integer GPTQ/AutoRound with a group size
    /// that is a positive multiple of 32 (128 in the released checkpoints).
    pub fn from_config_json(
        config: &serde_json::Value,
    ) -> Result<Option<Self>, crate::error::ConfigError> {
        use crate::error::ConfigError;
        let Some(q) = config.get("quantization_config") else {
            return Ok(None);
        };
        let unsupported = |what: String| Err(ConfigError::Unsupported(what));
        let text = |key: &str| q.get(key).and_then(|v| v.as_str());
        let method = text("quant_method")
            .ok_or_else(|| ConfigError::Invalid("quantization_config lacks quant_method".into()))?
            .to_ascii_lowercase();
        let zero_offset = match method.as_str() {
            "gptq" => match text("checkpoint_format").unwrap_or("gptq") {
                "gptq" => 1,
                "gptq_v2" => 0,
                other => return unsupported(format!("GPTQ checkpoint_format `{other}`")),
            },
            "auto-round" | "auto_round" | "autoround" => {
                let packing = text("packing_format").unwrap_or("auto_round:auto_gptq");
                if packing.contains("gptqmodel") {
                    0
                } else if packing.contains("gptq") {
                    1
                } else if packing == "auto_round" {
                    0
                } else {
                    return unsupported(format!("AutoRound packing_format `{packing}`"));
                }
            }
            other => {
                return unsupported(format!(
                    "quantization method `{other}` (Hark reads GPTQ and AutoRound W4A16, and GGUF files)"
                ));
            }
        };
        let int = |key: &str| q.get(key).and_then(|v| v.as_i64());
        match int("bits") {
            Some(4) => {}
            Some(b) => return unsupported(format!("{b}-bit {method} weights (4-bit only)")),
            None => {
                return Err(ConfigError::Invalid(
                    "quantization_config lacks bits".into(),
                ));
            }
        }
        let group_size = match int("group_size") {
            Some(g) if g > 0 && g % 32 == 0 => g as usize,
            Some(g) => {
                return unsupported(format!(
                    "{method} group_size {g} (a positive multiple of 32 is needed)"
                ));
            }
            None => {
                return Err(ConfigError::Invalid(
                    "quantization_config lacks group_size".into(),
                ));
            }
        };
        if q.get("sym").and_then(|v| v.as_bool()) == Some(false) {
            return unsupported(format!("asymmetric {method} weights (sym: false)"));
        }
        if let Some(dt) = text("data_type")
            && dt != "int"
        {
            return unsupported(format!("{method} data_type `{dt}`"));
        }
        if let Some(act) = int("act_bits")
            && act < 16
        {
            return unsupported(format!("{act}-bit activations (W4A16 only)"));
        }
        Ok(Some(Self {
            method,
            group_size,
            zero_offset,
            desc_act: q.get("desc_act").and_then(|v| v.as_bool()).unwrap_or(false),
        }))
    }

    /// The stored zero nibble every symmetric 4-bit group must hold (8 − offset).
    pub fn stored_zero(&self) -> u32 {
        (8 - self.zero_offset) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic byte stream (xorshift), so the tests need no RNG crate.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Blocks with sane f16 scale fields (random bits would make infinities and NaNs).
    fn blocks(t: GgmlType, n: usize, seed: u64) -> Vec<u8> {
        let mut raw = bytes(n * t.block_bytes(), seed);
        let scale_fields: &[usize] = match t {
            GgmlType::Q8_0 | GgmlType::Q4_0 => &[0],
            GgmlType::Q4_1 | GgmlType::Q4K => &[0, 2],
            _ => &[],
        };
        for (i, b) in raw.chunks_exact_mut(t.block_bytes()).enumerate() {
            for (k, &at) in scale_fields.iter().enumerate() {
                let v = f16::from_f32(
                    0.01 * (1 + (i + k) % 7) as f32
                        * if k == 1 && t == GgmlType::Q4_1 {
                            -1.0
                        } else {
                            1.0
                        },
                );
                b[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        raw
    }

    fn unpack(p: &PackedBlocks) -> Vec<f32> {
        let mut out = Vec::new();
        let mut tmp = [0f32; QK];
        match p {
            PackedBlocks::Q8(b) => b.iter().for_each(|b| {
                dequantize_q8(b, &mut tmp);
                out.extend_from_slice(&tmp)
            }),
            PackedBlocks::Q4(b) => b.iter().for_each(|b| {
                dequantize_q4(b, &mut tmp);
                out.extend_from_slice(&tmp)
            }),
        }
        out
    }

    #[test]
    fn q4_k_scale_unpacking_matches_the_bit_layout() {
        // Sub-blocks 0..4: low 6 bits of bytes 0..4 (scales) and 4..8 (mins); 4..8: the
        // nibbles of bytes 8..12 with the top two bits of bytes 0..8 as bits 4 and 5.
        let s = [
            0xC1, 0x42, 0x03, 0x84, 0x45, 0x06, 0xC7, 0x08, 0x9A, 0xBC, 0xDE, 0xF0,
        ];
        assert_eq!(q4k_scale_min(0, &s), (0x01, 0x05));
        assert_eq!(q4k_scale_min(3, &s), (0x04, 0x08));
        assert_eq!(q4k_scale_min(4, &s), (0x0A | (3 << 4), 0x09 | (1 << 4)));
        assert_eq!(q4k_scale_min(6, &s), (0x0E, 0x0D | (3 << 4)));
    }

    #[test]
    fn lossless_repacks_reproduce_the_dequantization_exactly() {
        for t in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let raw = blocks(t, 24, 7 + t.id() as u64);
            let mut want = vec![0.0; 24 * QK];
            dequantize(t, &raw, &mut want);
            assert_eq!(unpack(&repack_ggml(t, &raw).unwrap()), want, "{}", t.name());
        }
    }

    #[test]
    fn q4_k_repack_error_is_the_f16_rounding_of_the_scales() {
        let raw = blocks(GgmlType::Q4K, 12, 99);
        let mut want = vec![0.0; 12 * QK_K];
        dequantize(GgmlType::Q4K, &raw, &mut want);
        let got = unpack(&repack_ggml(GgmlType::Q4K, &raw).unwrap());
        // Per value: d·sc and dmin·m are each rounded once to f16 (relative error ≤ 2⁻¹¹), so
        // |Δ| ≤ 2⁻¹¹·(d·sc·q + dmin·m) (+ the f32 rounding of the products).
        let bb = GgmlType::Q4K.block_bytes();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let b = &raw[(i / QK_K) * bb..(i / QK_K + 1) * bb];
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (sc, m) = q4k_scale_min((i % QK_K) / QK, &b[4..16]);
            let bound = 2f32.powi(-11) * (d * sc as f32 * 15.0 + dmin * m as f32) + 1e-6;
            assert!((g - w).abs() <= bound, "{g} vs {w} (bound {bound})");
        }
    }

    /// Pack `q(r, c)`, `z(g, r)` and `s(g, r)` per the documented GPTQ layout.
    fn gptq_parts(
        rows: usize,
        cols: usize,
        gs: usize,
        q: impl Fn(usize, usize) -> u32,
        z: impl Fn(usize, usize) -> u32,
        s: impl Fn(usize, usize) -> f32,
    ) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut qweight = vec![0u32; cols / 8 * rows];
        for r in 0..rows {
            for c in 0..cols {
                qweight[(c / 8) * rows + r] |= q(r, c) << (4 * (c % 8));
            }
        }
        let groups = cols / gs;
        let mut qzeros = vec![0u32; groups * rows / 8];
        let mut scales = Vec::new();
        for g in 0..groups {
            for r in 0..rows {
                qzeros[g * rows / 8 + r / 8] |= z(g, r) << (4 * (r % 8));
                scales.extend_from_slice(&f16::from_f32(s(g, r)).to_le_bytes());
            }
        }
        let le = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        (le(&qweight), le(&qzeros), scales)
    }

    #[test]
    fn gptq_dequantizes_per_the_documented_packing() {
        // rows = 16 outputs, cols = 64 inputs, group 32: every field at a known position.
        let (rows, cols, gs) = (16usize, 64usize, 32usize);
        let groups = cols / gs;
        let q = |r: usize, c: usize| ((r * 7 + c * 3) % 16) as u32;
        let z = |g: usize, r: usize| ((g + r) % 16) as u32;
        let s = |g: usize, r: usize| 0.01 * (1 + g * rows + r) as f32;
        let (qw, qz, scales) = gptq_parts(rows, cols, gs, q, z, s);
        for offset in [0, 1] {
            let m = Gptq4 {
                rows,
                cols,
                group_size: gs,
                qweight: &qw,
                qzeros: &qz,
                scales: &scales,
                scale_type: ScaleType::F16,
                g_idx: None,
                zero_offset: offset,
            };
            let w = m.dequantize();
            for r in 0..rows {
                for c in 0..cols {
                    let g = c / gs;
                    let want = f16::from_f32(s(g, r)).to_f32()
                        * (q(r, c) as i32 - z(g, r) as i32 - offset) as f32;
                    assert_eq!(w[r * cols + c], want, "({r}, {c})");
                }
            }
            // An activation-order permutation of the groups is honoured when dequantizing.
            let g_idx: Vec<u32> = (0..cols).map(|c| ((c / 8) % groups) as u32).collect();
            let perm = Gptq4 {
                g_idx: Some(&g_idx),
                ..m
            };
            let wp = perm.dequantize();
            let (r, c) = (3, 9);
            let g = g_idx[c] as usize;
            let want =
                f16::from_f32(s(g, r)).to_f32() * (q(r, c) as i32 - z(g, r) as i32 - offset) as f32;
            assert_eq!(wp[r * cols + c], want);
            assert!(perm.repack().is_err());
        }
        // Symmetric weights (zero 8, stored 7 in v1 or 8 in v2) repack without loss.
        for offset in [0, 1] {
            let (qw, qz, scales) = gptq_parts(rows, cols, gs, q, |_, _| (8 - offset) as u32, s);
            let m = Gptq4 {
                rows,
                cols,
                group_size: gs,
                qweight: &qw,
                qzeros: &qz,
                scales: &scales,
                scale_type: ScaleType::F16,
                g_idx: None,
                zero_offset: offset,
            };
            assert_eq!(unpack(&m.repack().unwrap()), m.dequantize());
        }
    }

    #[test]
    fn quantization_configs_are_accepted_or_refused_clearly() {
        let cfg = |q: serde_json::Value| {
            GptqConfig::from_config_json(&serde_json::json!({ "quantization_config": q }))
        };
        let ok = cfg(serde_json::json!({"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": true, "desc_act": false})).unwrap().unwrap();
        assert_eq!(
            (ok.group_size, ok.zero_offset, ok.stored_zero()),
            (128, 1, 7)
        );
        let v2 = cfg(serde_json::json!({"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "gptq_v2"})).unwrap().unwrap();
        assert_eq!(v2.zero_offset, 0);
        let ar = cfg(serde_json::json!({"quant_method": "auto-round", "bits": 4, "group_size": 128, "sym": true, "data_type": "int", "packing_format": "auto_round:auto_gptq"})).unwrap().unwrap();
        assert_eq!(ar.zero_offset, 1);
        assert_eq!(
            GptqConfig::from_config_json(&serde_json::json!({})).unwrap(),
            None
        );
        for (q, says) in [
            (
                serde_json::json!({"quant_method": "gptq", "bits": 8, "group_size": 128}),
                "8-bit",
            ),
            (
                serde_json::json!({"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": false}),
                "asymmetric",
            ),
            (
                serde_json::json!({"quant_method": "gptq", "bits": 4, "group_size": -1}),
                "group_size -1",
            ),
            (
                serde_json::json!({"quant_method": "gptq", "bits": 4, "group_size": 100}),
                "group_size 100",
            ),
            (
                serde_json::json!({"quant_method": "awq", "bits": 4, "group_size": 128}),
                "awq",
            ),
            (
                serde_json::json!({"quant_method": "auto-round", "bits": 4, "group_size": 128, "packing_format": "auto_round:awq"}),
                "awq",
            ),
            (
                serde_json::json!({"quant_method": "auto-round", "bits": 4, "group_size": 128, "data_type": "nv_fp"}),
                "nv_fp",
            ),
        ] {
            let err = cfg(q).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
