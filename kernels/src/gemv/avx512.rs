//! AVX-512 dot products: 512-bit FMA for the float formats (masked loads for the tail) and
//! AVX512-VNNI `dpbusd` (256-bit form, one 32-block per instruction) for Q8/Q4.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::DotKernels;
use super::act::QuantRow;
use super::avx2::{hsum, scale};
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

/// `dpbusd` of one 32-block (unsigned `u` times signed `s` bytes), widened to f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dpbusd_block(u: __m256i, s: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dot_q8(w: &[BlockQ8], x: QuantRow<'_>) -> f32 {
    assert!(
        x.d.len() == w.len() && x.qs.len() == w.len() * QK,
        "dot_q8: length mismatch"
    );
    let mut acc = [_mm256_setzero_ps(); 2];
    for (k, (b, (qx, &dx))) in w.iter().zip(x.qs.chunks_exact(QK).zip(x.d)).enumerate() {
        // SAFETY: b.qs and qx are 32 bytes each.
        let (wv, xv) = unsafe {
            (
                _mm256_loadu_si256(b.qs.as_ptr().cast()),
                _mm256_loadu_si256(qx.as_ptr().cast()),
            )
        };
        // dpbusd multiplies unsigned by signed bytes: move w's sign onto x.
        let p = dpbusd_block(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
        acc[k % 2] = _mm256_fmadd_ps(_mm256_set1_ps(scale(b.d) * dx), p, acc[k % 2]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dot_q4(w: &[BlockQ4], x: QuantRow<'_>) -> f32 {
    assert!(
        x.d.len() == w.len() && x.qs.len() == w.len() * QK,
        "dot_q4: length mismatch"
    );
    assert_eq!(x.s.len(), w.len(), "dot_q4: length mismatch");
    let low = _mm_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut offset = 0.0f32;
    let per_block = x.qs.chunks_exact(QK).zip(x.d.iter().zip(x.s));
    for (k, (b, (qx, (&dx, &sx)))) in w.iter().zip(per_block).enumerate() {
        // SAFETY: b.qs is 16 bytes, qx 32.
        let (raw, xv) = unsafe {
            (
                _mm_loadu_si128(b.qs.as_ptr().cast()),
                _mm256_loadu_si256(qx.as_ptr().cast()),
            )
        };
        let lo = _mm_and_si128(raw, low);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), low);
        let p = dpbusd_block(_mm256_set_m128i(hi, lo), xv);
        acc[k % 2] = _mm256_fmadd_ps(_mm256_set1_ps(scale(b.d) * dx), p, acc[k % 2]);
        offset += scale(b.m) * sx;
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) + offset
}
