//! The crate's error type.

use crate::format::{Format, QK};

/// Why a packed matrix could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("unknown weight format {0:?} (expected f32, f16, bf16, q8 or q4)")]
    UnknownFormat(String),
    #[error("unknown ISA {0:?} (expected portable, avx2 or avx512)")]
    UnknownIsa(String),
    #[error("{format} needs the column count to be a multiple of {QK}, got {cols}")]
    NotQuantizable { format: Format, cols: usize },
    #[error("{what}: expected {expected}, got {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("a {rows}x{cols} {format} matrix does not fit in memory")]
    TooLarge {
        rows: usize,
        cols: usize,
        format: Format,
    },
    #[error("weight {index} is not finite")]
    NonFinite { index: usize },
    #[error("block {block}: the quantization scale does not fit in f16")]
    ScaleOverflow { block: usize },
    #[error("bytes {offset}..{end} are past the end of a {len}-byte buffer")]
    OutOfRange {
        offset: usize,
        end: usize,
        len: usize,
    },
}
