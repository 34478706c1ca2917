//! Decode-time matrix-vector products (`n <= GEMV_MAX_N`): memory bound, threaded over output
//! rows. Q8/Q4 quantize the activations per 32-block to int8 and use integer dot products.

mod act;
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
