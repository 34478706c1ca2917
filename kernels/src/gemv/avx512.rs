//! AVX-512 dot products: 512-bit FMA for the float formats (masked loads for the tail) and
//! AVX512-VNNI `dpbusd` (256-bit form, one 32-block per instruction) for Q8/Q4.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::DotKernels;
use super::act::QuantRow;
use super::avx2::{hsum, q4_codes, splat_f16};
use crate::format::{BlockQ4, BlockQ8, QK};

pub(super) const KERNELS: DotKernels = DotKernels {
    f32: dot_f32,
    f16: dot_f16,
    bf16: dot_bf16,
    q8: dot_q8,
    q4: dot_q4,
};

/// Loads the first `len` (< 16) f32 at `p`, zeroing the rest.
///
/// # Safety
/// `p..p + len` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn tail_f32(p: *const f32, len: usize) -> __m512 {
    // SAFETY: masked-off lanes are not accessed; the caller guarantees the others.
    unsafe { _mm512_maskz_loadu_ps(((1u32 << len) - 1) as u16, p) }
}

/// Loads 16 f32 (`len == 16`) or the first `len` of them (masked).
///
/// # Safety
/// `p..p + len` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn load_f32(p: *const f32, len: usize) -> __m512 {
    // SAFETY: as the caller guarantees.
    unsafe {
        if len == 16 {
            _mm512_loadu_ps(p)
        } else {
            tail_f32(p, len)
        }
    }
}

/// Loads 16 f16 (or the first `len`, masked) widened to f32.
///
/// # Safety
/// `p..p + len` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn load_f16(p: *const f16, len: usize) -> __m512 {
    let mask = ((1u32 << len) - 1) as u16;
    // SAFETY: masked-off lanes are not accessed; the caller guarantees the others.
    _mm512_cvtph_ps(unsafe { _mm256_maskz_loadu_epi16(mask, p.cast()) })
}

/// Loads 16 bf16 (or the first `len`, masked) widened to f32.
///
/// # Safety
/// `p..p + len` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn load_bf16(p: *const bf16, len: usize) -> __m512 {
    let mask = ((1u32 << len) - 1) as u16;
    // SAFETY: masked-off lanes are not accessed; the caller guarantees the others.
    let raw = unsafe { _mm256_maskz_loadu_epi16(mask, p.cast()) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(raw)))
}

macro_rules! float_dot {
    ($name:ident, $t:ty, $load:ident) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
        fn $name(w: &[$t], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len(), "dot: length mismatch");
            let (wp, xp, len) = (w.as_ptr(), x.as_ptr(), w.len());
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i + 64 <= len {
                for (k, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: i + 16k + 16 <= len: all 16 lanes are inside both slices.
                    let (wv, xv) = unsafe {
                        (
                            $load(wp.add(i + 16 * k), 16),
                            load_f32(xp.add(i + 16 * k), 16),
                        )
                    };
                    *acc = _mm512_fmadd_ps(wv, xv, *acc);
                }
                i += 64;
            }
            while i < len {
                let lanes = (len - i).min(16);
                // SAFETY: i + lanes <= len.
                let (wv, xv) = unsafe { ($load(wp.add(i), lanes), load_f32(xp.add(i), lanes)) };
                acc[0] = _mm512_fmadd_ps(wv, xv, acc[0]);
                i += lanes;
            }
            let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            _mm512_reduce_add_ps(sum)
        }
    };
}

float_dot!(dot_f32, f32, load_f32);
float_dot!(dot_f16, f16, load_f16);
float_dot!(dot_bf16, bf16, load_bf16);

/// Σ w·x of one Q8 block through `dpbusd` (unsigned by signed bytes, so w's sign moves onto
/// x), as 8 i32 partial sums widened to f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn block_q8(b: &BlockQ8, qx: &[i8; QK]) -> __m256 {
    // SAFETY: both are 32 bytes long.
    let (w, x) = unsafe {
        (
            _mm256_loadu_si256(b.qs.as_ptr().cast()),
            _mm256_loadu_si256(qx.as_ptr().cast()),
        )
    };
    let zero = _mm256_setzero_si256();
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(
        zero,
        _mm256_sign_epi8(w, w),
        _mm256_sign_epi8(x, w),
    ))
}

/// Σ q·x of one Q4 block (codes 0..=15) through `dpbusd`, widened to f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn block_q4(b: &BlockQ4, qx: &[i8; QK]) -> __m256 {
    // SAFETY: qx is 32 bytes.
    let x = unsafe { _mm256_loadu_si256(qx.as_ptr().cast()) };
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), q4_codes(b), x))
}

super::quant_dots!("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");
