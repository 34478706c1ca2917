//! AVX2 + FMA + F16C dot products. Q8/Q4 use `maddubs` (unsigned x signed bytes, with the
//! sign trick for signed Q8 weights) and `madd` to i32 per 32-block.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::DotKernels;
use super::act::QuantRow;
use crate::format::{BlockQ4, BlockQ8, QK};

pub(super) const KERNELS: DotKernels = DotKernels {
    f32: dot_f32,
    f16: dot_f16,
    bf16: dot_bf16,
    q8: dot_q8,
    q4: dot_q4,
};

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Loads 8 f32.
///
/// # Safety
/// `p..p + 8` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_f32(p: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 8 readable floats.
    unsafe { _mm256_loadu_ps(p) }
}

/// Loads 8 f16 widened to f32.
///
/// # Safety
/// `p..p + 8` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const f16) -> __m256 {
    // SAFETY: the caller guarantees 8 readable halves (16 bytes).
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// Loads 8 bf16 widened to f32 (a bf16 is the top half of an f32).
///
/// # Safety
/// `p..p + 8` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_bf16(p: *const bf16) -> __m256 {
    // SAFETY: the caller guarantees 8 readable bf16 (16 bytes).
    let raw = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw)))
}

macro_rules! float_dot {
    ($name:ident, $t:ty, $features:literal, $load:ident, $widen:expr) => {
        #[target_feature(enable = $features)]
        fn $name(w: &[$t], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len(), "dot: length mismatch");
            let (wp, xp, len) = (w.as_ptr(), x.as_ptr(), w.len());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= len {
                for (k, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 8k + 8 <= len: all 8 lanes are inside both slices.
                    let (wv, xv) =
                        unsafe { ($load(wp.add(i + 8 * k)), _mm256_loadu_ps(xp.add(i + 8 * k))) };
                    *acc = _mm256_fmadd_ps(wv, xv, *acc);
                }
                i += 32;
            }
            while i + 8 <= len {
                // SAFETY: i + 8 <= len.
                let (wv, xv) = unsafe { ($load(wp.add(i)), _mm256_loadu_ps(xp.add(i))) };
                acc[0] = _mm256_fmadd_ps(wv, xv, acc[0]);
                i += 8;
            }
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let tail: f32 = w[i..]
                .iter()
                .zip(&x[i..])
                .map(|(&a, b)| $widen(a) * b)
                .sum();
            hsum(sum) + tail
        }
    };
}

float_dot!(dot_f32, f32, "avx2,fma", load_f32, |v: f32| v);
float_dot!(dot_f16, f16, "avx2,fma,f16c", load_f16, f16::to_f32);
float_dot!(dot_bf16, bf16, "avx2,fma", load_bf16, bf16::to_f32);

/// An f16 scale broadcast to 8 f32 lanes through F16C (a broadcast, so no false dependency
/// on a register's old contents).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn splat_f16(d: f16) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(d.to_bits() as i16))
}

/// Σ w·x of one Q8 block, as 8 i32 partial sums widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_q8(b: &BlockQ8, qx: &[i8; QK]) -> __m256 {
    // SAFETY: both are 32 bytes long.
    let (w, x) = unsafe {
        (
            _mm256_loadu_si256(b.qs.as_ptr().cast()),
            _mm256_loadu_si256(qx.as_ptr().cast()),
        )
    };
    // maddubs multiplies unsigned by signed bytes: move w's sign onto x (|w| = 128 for -128
    // is still right as an unsigned byte).
    let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

/// The 32 codes (0..=15) of a Q4 block, in element order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q4_codes(b: &BlockQ4) -> __m256i {
    // SAFETY: qs is 16 bytes.
    let raw = unsafe { _mm_loadu_si128(b.qs.as_ptr().cast()) };
    let low = _mm_set1_epi8(0x0F);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), low);
    _mm256_set_m128i(hi, _mm_and_si128(raw, low))
}

/// Σ q·x of one Q4 block (codes 0..=15), as 8 i32 partial sums widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_q4(b: &BlockQ4, qx: &[i8; QK]) -> __m256 {
    // SAFETY: qx is 32 bytes.
    let x = unsafe { _mm256_loadu_si256(qx.as_ptr().cast()) };
    let p16 = _mm256_maddubs_epi16(q4_codes(b), x);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

super::quant_dots!("avx2,fma,f16c");
