//! Activations quantized per 32-block to int8 for the integer dot products.

use crate::format::QK;

/// One activation vector: `x[i] ≈ d[i / 32] * qs[i]`, `s[b]` = exact sum of block `b`.
#[derive(Clone, Copy)]
pub(crate) struct QuantRow<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) d: &'a [f32],
    pub(crate) s: &'a [f32],
}

/// `n` activation vectors of `cols` (a multiple of 32) quantized with `d = amax / 127`.
pub(crate) struct QuantActs {
    cols: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl QuantActs {
    pub(crate) fn new(x: &[f32], cols: usize) -> Self {
        let mut acts = Self::zeroed(x.len(), cols);
        quantize_into(x, &mut acts.qs, &mut acts.d, &mut acts.s);
        acts
    }

    /// As [`new`](Self::new), quantizing rows of `x` in parallel chunks (the GEMM path).
    pub(crate) fn new_par(x: &[f32], cols: usize) -> Self {
        use rayon::prelude::*;
        let mut acts = Self::zeroed(x.len(), cols);
        let rows = (64 * 1024 / cols.max(1)).max(1);
        let b = rows * cols / QK;
        x.par_chunks(rows * cols)
            .zip(acts.qs.par_chunks_mut(rows * cols))
            .zip(acts.d.par_chunks_mut(b).zip(acts.s.par_chunks_mut(b)))
            .for_each(|((x, qs), (d, s))| quantize_into(x, qs, d, s));
        acts
    }

    fn zeroed(len: usize, cols: usize) -> Self {
        let blocks = len / QK;
        QuantActs {
            cols,
            qs: vec![0; len],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
        }
    }

    /// All vectors' codes, row-major (`n x cols`).
    pub(crate) fn codes(&self) -> &[i8] {
        &self.qs
    }

    /// All vectors' block scales (`n x cols / 32`).
    pub(crate) fn scales(&self) -> &[f32] {
        &self.d
    }

    /// All vectors' exact block sums (`n x cols / 32`).
    pub(crate) fn sums(&self) -> &[f32] {
        &self.s
    }

    /// Vector `j`.
    pub(crate) fn row(&self, j: usize) -> QuantRow<'_> {
        let b = self.cols / QK;
        QuantRow {
            qs: &self.qs[j * self.cols..(j + 1) * self.cols],
            d: &self.d[j * b..(j + 1) * b],
            s: &self.s[j * b..(j + 1) * b],
        }
    }
}

/// Quantizes `x` per 32-block into `qs` with scales `d = amax / 127` and exact sums `s`.
fn quantize_into(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let per_block = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    for ((xb, qb), (d, s)) in per_block.zip(d.iter_mut().zip(s)) {
        let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        for (q, &v) in qb.iter_mut().zip(xb) {
            // Round half away from zero without a libm call (|v * inv| <= 127).
            let scaled = v * inv;
            *q = (scaled + 0.5f32.copysign(scaled)) as i8;
        }
        *d = amax / 127.0;
        *s = xb.iter().sum();
    }
}
