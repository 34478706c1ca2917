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
        let blocks = x.len() / QK;
        let mut acts = QuantActs {
            cols,
            qs: vec![0; x.len()],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
        };
        let per_block = x.chunks_exact(QK).zip(acts.qs.chunks_exact_mut(QK));
        for ((xb, qb), (d, s)) in per_block.zip(acts.d.iter_mut().zip(&mut acts.s)) {
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
        acts
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
