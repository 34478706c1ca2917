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

/// Largest batch `n` served by the matrix-vector (decode) kernels; larger batches use the GEMM
/// path. For Q8/Q4 the matrix-vector kernels quantize activations to int8 per 32-block, the
/// GEMM path multiplies dequantized weights in f32. 8, not 4: for n = 5..8 (e.g. verifying a
/// few draft tokens) reading each weight row once for all vectors was 1.3–6× faster than
/// dequantizing tiles for the GEMM on the E2B shapes (see docs/performance.md).
pub const GEMV_MAX_N: usize = 8;
