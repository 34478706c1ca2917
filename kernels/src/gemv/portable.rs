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

/// Σ a·b over one 32-block in i32 (fixed length, so LLVM vectorises it).
fn block_dot(a: &[i8; QK], b: &[i8; QK]) -> i32 {
    let mut s = 0i32;
    for i in 0..QK {
        s += i32::from(a[i]) * i32::from(b[i]);
    }
    s
}

/// Σ q·x over one Q4 block: codes `qs[i] & 15` pair with `x[i]`, `qs[i] >> 4` with `x[i + 16]`.
fn block_dot_q4(qs: &[u8; QK / 2], x: &[i8; QK]) -> i32 {
    let mut s = 0i32;
    for i in 0..QK / 2 {
        s += i32::from(qs[i] & 0x0F) * i32::from(x[i])
            + i32::from(qs[i] >> 4) * i32::from(x[i + QK / 2]);
    }
    s
}

fn dot_q8(w: &[BlockQ8], x: QuantRow<'_>) -> f32 {
    let qx = x.qs.as_chunks::<QK>().0;
    assert!(
        qx.len() == w.len() && x.d.len() == w.len(),
        "dot_q8: length mismatch"
    );
    let mut acc = 0.0f32;
    for ((b, q), &dx) in w.iter().zip(qx).zip(x.d) {
        acc += b.d.to_f32() * dx * block_dot(&b.qs, q) as f32;
    }
    acc
}

fn dot_q4(w: &[BlockQ4], x: QuantRow<'_>) -> f32 {
    let qx = x.qs.as_chunks::<QK>().0;
    assert!(
        qx.len() == w.len() && x.d.len() == w.len(),
        "dot_q4: length mismatch"
    );
    assert_eq!(x.s.len(), w.len(), "dot_q4: length mismatch");
    let (mut acc, mut offset) = (0.0f32, 0.0f32);
    for ((b, q), (&dx, &sx)) in w.iter().zip(qx).zip(x.d.iter().zip(x.s)) {
        acc += b.d.to_f32() * dx * block_dot_q4(&b.qs, q) as f32;
        offset += b.m.to_f32() * sx;
    }
    acc + offset
}
