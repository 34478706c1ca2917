//! Weight formats and the quantized block layouts (ggml-compatible).

use std::fmt;
use std::str::FromStr;

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::error::KernelError;

/// Elements per quantized block.
pub const QK: usize = 32;

/// How a matrix's weights are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Format {
    F32,
    F16,
    BF16,
    /// [`BlockQ8`] blocks of 32 weights along a row.
    Q8,
    /// [`BlockQ4`] blocks of 32 weights along a row.
    Q4,
}

impl Format {
    /// Every format, in declaration order.
    pub const ALL: [Format; 5] = [
        Format::F32,
        Format::F16,
        Format::BF16,
        Format::Q8,
        Format::Q4,
    ];

    /// The lowercase name used by `Display` and `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::BF16 => "bf16",
            Format::Q8 => "q8",
            Format::Q4 => "q4",
        }
    }

    /// Whether the format stores blocks of [`QK`] weights.
    pub fn is_quantized(self) -> bool {
        matches!(self, Format::Q8 | Format::Q4)
    }

    /// Alignment in bytes of the packed element type.
    pub(crate) fn align(self) -> usize {
        match self {
            Format::F32 => align_of::<f32>(),
            Format::F16 | Format::BF16 => align_of::<f16>(),
            Format::Q8 => align_of::<BlockQ8>(),
            Format::Q4 => align_of::<BlockQ4>(),
        }
    }

    /// Packed size in bytes of a `rows x cols` matrix; checks quantizability and overflow.
    pub(crate) fn packed_len(self, rows: usize, cols: usize) -> Result<usize, KernelError> {
        if !quantizable(cols, self) {
            return Err(KernelError::NotQuantizable { format: self, cols });
        }
        let too_large = KernelError::TooLarge {
            rows,
            cols,
            format: self,
        };
        let elements = rows.checked_mul(cols).ok_or(too_large)?;
        let bytes = match self {
            Format::F32 => elements.checked_mul(4),
            Format::F16 | Format::BF16 => elements.checked_mul(2),
            Format::Q8 => (elements / QK).checked_mul(size_of::<BlockQ8>()),
            Format::Q4 => (elements / QK).checked_mul(size_of::<BlockQ4>()),
        };
        bytes.ok_or(KernelError::TooLarge {
            rows,
            cols,
            format: self,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| KernelError::UnknownFormat(s.to_owned()))
    }
}

/// Whether a row of `cols` weights can be stored in `format` (Q8/Q4 need whole blocks).
pub fn quantizable(cols: usize, format: Format) -> bool {
    !format.is_quantized() || cols.is_multiple_of(QK)
}

/// 32 weights `w[i] = d * qs[i]` (ggml `Q8_0`, 34 bytes).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Debug, Pod, Zeroable)]
pub struct BlockQ8 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// 32 weights `w[i] = d * q[i] + m` with `q[i]` in `0..=15` (ggml `Q4_1`, 20 bytes):
/// `q[i] = qs[i] & 0x0F` for `i < 16`, `q[i] = qs[i - 16] >> 4` for `i >= 16`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Debug, Pod, Zeroable)]
pub struct BlockQ4 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

impl BlockQ4 {
    /// The 4-bit code of weight `i` (0..32).
    pub fn q(&self, i: usize) -> u8 {
        if i < QK / 2 {
            self.qs[i] & 0x0F
        } else {
            self.qs[i - QK / 2] >> 4
        }
    }
}

const _: () = assert!(size_of::<BlockQ8>() == 34 && size_of::<BlockQ4>() == 20);
