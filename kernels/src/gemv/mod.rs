//! Decode-time matrix-vector products (small `n`): memory bound, threaded over output
//! rows. Q8/Q4 quantize the activations per 32-block to int8 and use integer dot products.

pub(crate) mod act;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::dispatch::{Isa, current_isa};
use crate::format::{BlockQ4, BlockQ8, QK};
use crate::weights::Weights;
use act::{QuantActs, QuantRow};

/// Largest batch the float formats (f32/f16/bf16) send to these kernels; Q8/Q4 stop at
/// [`crate::GEMV_MAX_N`] because they quantize the activations here.
pub(crate) const FLOAT_GEMV_MAX_N: usize = 8;

/// Below this many weight bytes the product runs on the calling thread.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// One path's dot products of a packed weight row with an activation vector.
pub(super) struct DotKernels {
    pub(super) f32: unsafe fn(&[f32], &[f32]) -> f32,
    pub(super) f16: unsafe fn(&[f16], &[f32]) -> f32,
    pub(super) bf16: unsafe fn(&[bf16], &[f32]) -> f32,
    pub(super) q8: unsafe fn(&[BlockQ8], QuantRow<'_>) -> f32,
    pub(super) q4: unsafe fn(&[BlockQ4], QuantRow<'_>) -> f32,
}

/// Defines `dot_q8` and `dot_q4` for a SIMD module from its `block_q8`/`block_q4` (8 partial
/// sums of one block as f32), `splat_f16` and `hsum`: two blocks per step into two
/// accumulators; Q4 adds `m · Σx` per block (kept in all lanes of its own accumulators).
#[cfg(target_arch = "x86_64")]
macro_rules! quant_dots {
    ($features:literal) => {
        /// `d_w · d_x` of block `k`, in all 8 lanes.
        #[inline]
        #[target_feature(enable = $features)]
        fn block_scale(d: f16, dx: f32) -> __m256 {
            _mm256_mul_ps(splat_f16(d), _mm256_set1_ps(dx))
        }

        #[target_feature(enable = $features)]
        fn dot_q8(w: &[BlockQ8], x: QuantRow<'_>) -> f32 {
            let qx = x.qs.as_chunks::<QK>().0;
            assert!(
                qx.len() == w.len() && x.d.len() == w.len(),
                "dot_q8: length mismatch"
            );
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut k = 0;
            while k + 2 <= w.len() {
                let (s0, s1) = (
                    block_scale(w[k].d, x.d[k]),
                    block_scale(w[k + 1].d, x.d[k + 1]),
                );
                acc0 = _mm256_fmadd_ps(s0, block_q8(&w[k], &qx[k]), acc0);
                acc1 = _mm256_fmadd_ps(s1, block_q8(&w[k + 1], &qx[k + 1]), acc1);
                k += 2;
            }
            if k < w.len() {
                let s0 = block_scale(w[k].d, x.d[k]);
                acc0 = _mm256_fmadd_ps(s0, block_q8(&w[k], &qx[k]), acc0);
            }
            hsum(_mm256_add_ps(acc0, acc1))
        }

        #[target_feature(enable = $features)]
        fn dot_q4(w: &[BlockQ4], x: QuantRow<'_>) -> f32 {
            let qx = x.qs.as_chunks::<QK>().0;
            assert!(
                qx.len() == w.len() && x.d.len() == w.len(),
                "dot_q4: length mismatch"
            );
            assert_eq!(x.s.len(), w.len(), "dot_q4: length mismatch");
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut off0, mut off1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut k = 0;
            while k + 2 <= w.len() {
                let (s0, s1) = (
                    block_scale(w[k].d, x.d[k]),
                    block_scale(w[k + 1].d, x.d[k + 1]),
                );
                acc0 = _mm256_fmadd_ps(s0, block_q4(&w[k], &qx[k]), acc0);
                acc1 = _mm256_fmadd_ps(s1, block_q4(&w[k + 1], &qx[k + 1]), acc1);
                off0 = _mm256_fmadd_ps(splat_f16(w[k].m), _mm256_set1_ps(x.s[k]), off0);
                off1 = _mm256_fmadd_ps(splat_f16(w[k + 1].m), _mm256_set1_ps(x.s[k + 1]), off1);
                k += 2;
            }
            if k < w.len() {
                let s0 = block_scale(w[k].d, x.d[k]);
                acc0 = _mm256_fmadd_ps(s0, block_q4(&w[k], &qx[k]), acc0);
                off0 = _mm256_fmadd_ps(splat_f16(w[k].m), _mm256_set1_ps(x.s[k]), off0);
            }
            hsum(_mm256_add_ps(acc0, acc1)) + _mm256_cvtss_f32(_mm256_add_ps(off0, off1))
        }
    };
}
#[cfg(target_arch = "x86_64")]
use quant_dots;

fn kernels(isa: Isa) -> &'static DotKernels {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &avx512::KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => &avx2::KERNELS,
        _ => &portable::KERNELS,
    }
}

/// `y[n, rows] = x[n, cols] · Wᵀ` for small `n`, on the calling thread's ISA.
pub(crate) fn gemv(w: Weights<'_>, rows: usize, cols: usize, x: &[f32], n: usize, y: &mut [f32]) {
    let k = kernels(current_isa());
    let xs = |j: usize| &x[j * cols..(j + 1) * cols];
    // SAFETY (every `unsafe` call below): `k` holds the kernels of `current_isa()`, which is
    // never above the instruction sets this CPU was detected to have; the kernels check their
    // slice lengths themselves.
    match w {
        Weights::F32(w) => for_rows(rows, n, cols * 4, y, |r, out| {
            let wr = &w[r * cols..(r + 1) * cols];
            out.iter_mut()
                .enumerate()
                .for_each(|(j, o)| *o = unsafe { (k.f32)(wr, xs(j)) });
        }),
        Weights::F16(w) => for_rows(rows, n, cols * 2, y, |r, out| {
            let wr = &w[r * cols..(r + 1) * cols];
            out.iter_mut()
                .enumerate()
                .for_each(|(j, o)| *o = unsafe { (k.f16)(wr, xs(j)) });
        }),
        Weights::BF16(w) => for_rows(rows, n, cols * 2, y, |r, out| {
            let wr = &w[r * cols..(r + 1) * cols];
            out.iter_mut()
                .enumerate()
                .for_each(|(j, o)| *o = unsafe { (k.bf16)(wr, xs(j)) });
        }),
        Weights::Q8(w) => {
            let (acts, bpr) = (QuantActs::new(x, cols), cols / QK);
            for_rows(rows, n, bpr * size_of::<BlockQ8>(), y, |r, out| {
                let wr = &w[r * bpr..(r + 1) * bpr];
                let dot = |j| unsafe { (k.q8)(wr, acts.row(j)) };
                out.iter_mut().enumerate().for_each(|(j, o)| *o = dot(j));
            });
        }
        Weights::Q4(w) => {
            let (acts, bpr) = (QuantActs::new(x, cols), cols / QK);
            for_rows(rows, n, bpr * size_of::<BlockQ4>(), y, |r, out| {
                let wr = &w[r * bpr..(r + 1) * bpr];
                let dot = |j| unsafe { (k.q4)(wr, acts.row(j)) };
                out.iter_mut().enumerate().for_each(|(j, o)| *o = dot(j));
            });
        }
    }
}

/// Calls `row(r, out)` for every output row `r`, `out` = its `n` results, in parallel chunks of
/// rows; writes `y[j * rows + r] = out[j]`.
fn for_rows(
    rows: usize,
    n: usize,
    row_bytes: usize,
    y: &mut [f32],
    row: impl Fn(usize, &mut [f32]) + Sync,
) {
    let sequential = rows * row_bytes < PARALLEL_MIN_BYTES;
    let chunk = if sequential {
        rows
    } else {
        rows.div_ceil(8 * rayon::current_num_threads())
            .clamp(16, 512)
    };
    let run = |(c, out): (usize, &mut [f32])| {
        for (i, o) in out.chunks_exact_mut(n).enumerate() {
            row(c * chunk + i, o);
        }
    };
    let apply = |buf: &mut [f32]| {
        if sequential {
            buf.chunks_mut(chunk * n).enumerate().for_each(run);
        } else {
            buf.par_chunks_mut(chunk * n).enumerate().for_each(run);
        }
    };
    if n == 1 {
        apply(y);
    } else {
        let mut yt = vec![0.0f32; rows * n];
        apply(&mut yt);
        for (r, out) in yt.chunks_exact(n).enumerate() {
            for (j, &v) in out.iter().enumerate() {
                y[j * rows + r] = v;
            }
        }
    }
}
