//! Weight quantizers (f32 → Q8/Q4 blocks) and block dequantizers.

use half::f16;

use crate::error::KernelError;
use crate::format::{BlockQ4, BlockQ8, QK};

/// Quantizes whole rows of weights (`w.len() % 32 == 0`) to Q8: `d = amax / 127`,
/// `q = round(w / d)`.
pub(crate) fn quantize_q8(w: &[f32]) -> Result<Vec<BlockQ8>, KernelError> {
    w.chunks_exact(QK)
        .enumerate()
        .map(|(b, block)| {
            let amax = finite_block(block, b)?.fold(0.0f32, |a, v| a.max(v.abs()));
            let d = f16::from_f32(amax / 127.0);
            if d.is_infinite() {
                return Err(KernelError::ScaleOverflow { block: b });
            }
            let d32 = d.to_f32();
            let inv = if d32 > 0.0 { 1.0 / d32 } else { 0.0 };
            let qs = std::array::from_fn(|i| (block[i] * inv).round().clamp(-127.0, 127.0) as i8);
            Ok(BlockQ8 { d, qs })
        })
        .collect()
}

/// Quantizes whole rows of weights to Q4 (asymmetric): `m = min`, `d = (max - min) / 15`,
/// `q = round((w - m) / d)` clamped to `0..=15`; an all-equal block gets `d = 0`.
pub(crate) fn quantize_q4(w: &[f32]) -> Result<Vec<BlockQ4>, KernelError> {
    w.chunks_exact(QK)
        .enumerate()
        .map(|(b, block)| {
            let (min, max) = finite_block(block, b)?
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
            let m = f16::from_f32(min);
            let d = f16::from_f32((max - min) / 15.0);
            if m.is_infinite() || d.is_infinite() {
                return Err(KernelError::ScaleOverflow { block: b });
            }
            let (m32, d32) = (m.to_f32(), d.to_f32());
            let inv = if d32 > 0.0 { 1.0 / d32 } else { 0.0 };
            let q = |i: usize| ((block[i] - m32) * inv).round().clamp(0.0, 15.0) as u8;
            let qs = std::array::from_fn(|i| q(i) | (q(i + QK / 2) << 4));
            Ok(BlockQ4 { d, m, qs })
        })
        .collect()
}

/// The block's values, or the index of its first non-finite one.
fn finite_block(block: &[f32], b: usize) -> Result<impl Iterator<Item = f32> + '_, KernelError> {
    match block.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(KernelError::NonFinite { index: b * QK + i }),
        None => Ok(block.iter().copied()),
    }
}

/// Dequantizes Q8 blocks into `out` (`out.len() == blocks.len() * 32`).
pub(crate) fn dequantize_q8(blocks: &[BlockQ8], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, &q) in o.iter_mut().zip(&b.qs) {
            *o = d * f32::from(q);
        }
    }
}

/// Dequantizes Q4 blocks into `out` (`out.len() == blocks.len() * 32`).
pub(crate) fn dequantize_q4(blocks: &[BlockQ4], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        let (lo, hi) = o.split_at_mut(QK / 2);
        for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(&b.qs) {
            *lo = d * f32::from(q & 0x0F) + m;
            *hi = d * f32::from(q >> 4) + m;
        }
    }
}
