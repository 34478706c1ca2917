//! Scalar dot products the compiler can auto-vectorise; the reference for the SIMD paths.

use half::slice::HalfFloatSliceExt;
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

/// Lanes of independent accumulators (lets LLVM keep several vector registers busy).
const LANES: usize = 16;

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (wc, xc) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (wc, xc) in wc.zip(xc) {
        for i in 0..LANES {
            acc[i] += wc[i] * xc[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    // half converts slices with F16C where the CPU has it: widen a chunk, then dot.
    let mut buf = [0.0f32; 256];
    w.chunks(buf.len())
        .zip(x.chunks(buf.len()))
        .map(|(wc, xc)| {
            let buf = &mut buf[..wc.len()];
            wc.convert_to_f32_slice(buf);
            dot_f32(buf, xc)
        })
        .sum()
}

fn dot_bf16(w: &[bf16], x: &[f32]) -> f32 {
    let widen = |v: bf16| f32::from_bits(u32::from(v.to_bits()) << 16);
    let mut acc = [0.0f32; LANES];
    let (wc, xc) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(&a, b)| widen(a) * b)
        .sum();
    for (wc, xc) in wc.zip(xc) {
        for i in 0..LANES {
            acc[i] += widen(wc[i]) * xc[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn dot_q8(w: &[BlockQ8], x: QuantRow<'_>) -> f32 {
    w.iter()
        .zip(x.qs.chunks_exact(QK).zip(x.d))
        .map(|(b, (q, &dx))| {
            let s: i32 =
                b.qs.iter()
                    .zip(q)
                    .map(|(&a, &c)| i32::from(a) * i32::from(c))
                    .sum();
            b.d.to_f32() * dx * s as f32
        })
        .sum()
}

fn dot_q4(w: &[BlockQ4], x: QuantRow<'_>) -> f32 {
    w.iter()
        .zip(x.qs.chunks_exact(QK).zip(x.d.iter().zip(x.s)))
        .map(|(b, (q, (&dx, &sx)))| {
            let (lo, hi) = q.split_at(QK / 2);
            let s: i32 =
                b.qs.iter()
                    .zip(lo.iter().zip(hi))
                    .map(|(&p, (&l, &h))| {
                        i32::from(p & 0x0F) * i32::from(l) + i32::from(p >> 4) * i32::from(h)
                    })
                    .sum();
            b.d.to_f32() * dx * s as f32 + b.m.to_f32() * sx
        })
        .sum()
}
