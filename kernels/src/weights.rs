//! A typed, borrowed view of packed weights, and dequantization of whole rows.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::format::{BlockQ4, BlockQ8, Format, QK};
use crate::quantize::{dequantize_q4, dequantize_q8};

/// Row-major packed weights of one format.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    Q8(&'a [BlockQ8]),
    Q4(&'a [BlockQ4]),
}

impl<'a> Weights<'a> {
    /// Views `bytes` as `format` elements; panics if `bytes` is misaligned or a partial element.
    pub(crate) fn cast(format: Format, bytes: &'a [u8]) -> Self {
        match format {
            Format::F32 => Weights::F32(bytemuck::cast_slice(bytes)),
            Format::F16 => Weights::F16(bytemuck::cast_slice(bytes)),
            Format::BF16 => Weights::BF16(bytemuck::cast_slice(bytes)),
            Format::Q8 => Weights::Q8(bytemuck::cast_slice(bytes)),
            Format::Q4 => Weights::Q4(bytemuck::cast_slice(bytes)),
        }
    }

    /// Dequantizes the `rows x width` block at row `first`, column `k0` (a multiple of 32 for
    /// Q8/Q4, as is `width` unless it reaches `cols`) into `out` (row-major, row stride `width`).
    pub(crate) fn block_f32(
        self,
        first: usize,
        rows: usize,
        k0: usize,
        width: usize,
        cols: usize,
        out: &mut [f32],
    ) {
        for (r, o) in out.chunks_exact_mut(width).take(rows).enumerate() {
            self.span_f32((first + r) * cols + k0, o);
        }
    }

    /// Dequantizes rows `first..first + out.len() / cols` into `out` (row-major f32).
    pub(crate) fn rows_f32(self, first: usize, cols: usize, out: &mut [f32]) {
        self.span_f32(first * cols, out);
    }

    /// Dequantizes the `out.len()` weights starting at flat index `start` (block-aligned for
    /// Q8/Q4).
    fn span_f32(self, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        match self {
            Weights::F32(w) => out.copy_from_slice(&w[start..end]),
            Weights::F16(w) => w[start..end].convert_to_f32_slice(out),
            Weights::BF16(w) => {
                for (o, &v) in out.iter_mut().zip(&w[start..end]) {
                    *o = f32::from_bits(u32::from(v.to_bits()) << 16);
                }
            }
            Weights::Q8(w) => dequantize_q8(&w[start / QK..end / QK], out),
            Weights::Q4(w) => dequantize_q4(&w[start / QK..end / QK], out),
        }
    }
}
