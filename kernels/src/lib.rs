//! Fast CPU kernels for linear layers: `y[n, out] = x[n, in] · Wᵀ` with `W` stored row-major
//! `[out, in]` in a packed format (f32, f16, bf16, or ggml-compatible Q8/Q4 blocks) and f32
//! activations.
//!
//! Small batches (decode) use memory-bound matrix-vector kernels threaded over output rows;
//! Q8/Q4 quantize the activations per 32-block to int8 and use integer dot products (AVX2
//! `maddubs`, AVX512-VNNI `dpbusd`). Larger batches (prefill, encoder) dequantize tiles of
//! rows once per call and run the `gemm` crate's f32 kernels. The instruction-set path is
//! detected at run time ([`detected_isa`]) and can be forced per thread ([`with_isa`]).

mod dispatch;
mod error;
mod format;
mod gemm;
mod gemv;
mod matrix;
mod quantize;
mod weights;

pub use dispatch::{Isa, available_isas, detected_isa, with_isa};
pub use error::KernelError;
pub use format::{BlockQ4, BlockQ8, Format, QK, quantizable};
pub use matrix::{PackedMatrix, SharedBytes};

/// Largest batch `n` for which Q8/Q4 products quantize the activations to int8 per 32-block
/// and use the matrix-vector (decode) kernels; larger batches multiply dequantized weights in
/// f32 on the GEMM path. 8 covers the streaming engine's small passes (8 audio tokens per
/// 320 ms chunk, short drafts), where reading each weight row once for all rows measured
/// 1.3–6× faster than dequantizing the whole matrix for the GEMM. f32/f16/bf16 use the
/// matrix-vector kernels up to n = 8 as well (there the two paths differ only in rounding order).
pub const GEMV_MAX_N: usize = 8;
