//! Fast CPU kernels for linear layers: `y[n, out] = x[n, in] · Wᵀ` with `W` stored row-major
//! `[out, in]` in a packed format (f32, f16, bf16, or ggml-compatible Q8/Q4 blocks) and f32
//! activations.
//!
//! Small batches (decode) use memory-bound matrix-vector kernels threaded over output rows;
//! Q8/Q4 quantize the activations per 32-block to int8 and use integer dot products (AVX2
//! `maddubs`, AVX512-VNNI `dpbusd`). Larger batches (prefill, encoder) of Q8/Q4 weights with
//! n ≥ [`INT8_GEMM_MIN_N`] run as int8 GEMMs on AVX512-VNNI (register-blocked `vpdpbusd`
//! microkernel on repacked weight panels); the other large products dequantize tiles of rows
//! once per call and run the `gemm` crate's f32 kernels. The instruction-set path is
//! detected at run time ([`detected_isa`]) and can be forced per thread ([`with_isa`]).

mod dispatch;
mod error;
mod format;
mod gemm;
mod gemm_i8;
mod gemv;
mod matrix;
mod quantize;
mod weights;

pub use dispatch::{Isa, available_isas, detected_isa, with_int8_gemm, with_isa};
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

/// Smallest batch `n` for which Q8/Q4 products run as int8 GEMMs (activations quantized per
/// 32-block, AVX512-VNNI `vpdpbusd`) where the thread's ISA has them; between
/// [`GEMV_MAX_N`] and this, and on other ISAs, the weights are dequantized to f32.
pub const INT8_GEMM_MIN_N: usize = 16;

/// Whether a Q8/Q4 product of `n` rows called now on this thread quantizes the activations to
/// int8 (matrix-vector kernels for `n <= GEMV_MAX_N`, int8 GEMM for `n >= INT8_GEMM_MIN_N` on
/// AVX512-VNNI unless disabled with [`with_int8_gemm`]); false for float formats.
pub fn int8_activations(format: Format, n: usize) -> bool {
    format.is_quantized() && (n <= GEMV_MAX_N || int8_gemm_applies(n))
}

pub(crate) fn int8_gemm_applies(n: usize) -> bool {
    n >= INT8_GEMM_MIN_N && dispatch::int8_gemm_enabled() && gemm_i8::supported()
}
