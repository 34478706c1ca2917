//! Prefill/encoder products of Q8/Q4 weights as int8 GEMMs (AVX512-VNNI `vpdpbusd`).
//!
//! The activations are quantized once per call per 32-block to int8 (`d_x = amax / 127`, the
//! same quantizer as the decode kernels, rows in parallel). Each thread takes a tile of output
//! rows and repacks it into panels of [`PANEL`] rows: per 32-block, 8 groups of 4 consecutive
//! weights of all 32 rows (so one 64-byte load holds 4 bytes of 16 rows), the weight codes as
//! *unsigned* bytes, and the per-row scales (and Q4 minimums) as f32. The microkernel keeps
//! `C ≤ 6` activation rows × 2 registers of 16 weight rows in i32 accumulators: per group of 4
//! columns it loads 2 weight registers and issues `2·C` `vpdpbusd` against a broadcast 4-byte
//! group of each activation row. After each block the i32 sums are converted and scaled into
//! f32 accumulators: `acc += (Σ q·x_q) · d_w · d_x` (+ `m · Σx` for Q4).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes. Q4 codes (0..=15) are unsigned already.
//! Q8 codes are stored offset by 128 (`q + 128`, as `q ^ 0x80`), and each block's i32
//! accumulators start at `-128 · Σ x_q` of the activation block instead of 0, so the
//! correction is exact and costs a broadcast load instead of an instruction.

use rayon::prelude::*;

use crate::dispatch::{Isa, current_isa};
use crate::format::{BlockQ4, BlockQ8, QK};
use crate::gemv::act::QuantActs;
use crate::weights::Weights;

/// Weight rows per packed panel (two 16-lane registers).
const PANEL: usize = 32;
/// Bytes of packed codes a tile aims at (stays in L2 while all activation rows pass over it).
const TILE_BYTES: usize = 384 * 1024;

/// A tile of weight rows repacked for the microkernel (see the module docs).
struct Packed {
    /// `panels x blocks x 8 groups x PANEL rows x 4` bytes.
    qs: Vec<u8>,
    /// `panels x blocks x PANEL` scales `d_w`.
    d: Vec<f32>,
    /// `panels x blocks x PANEL` Q4 minimums (empty for Q8).
    m: Vec<f32>,
}

/// Whether this thread's ISA has an int8 GEMM kernel.
pub(crate) fn supported() -> bool {
    has_kernel(current_isa())
}

/// Whether `isa` has an int8 GEMM kernel.
fn has_kernel(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa >= Isa::Avx512
}

/// Rows `first..first + tile` of `w` packed (missing rows of the last panel are zero).
fn pack(w: Weights<'_>, first: usize, tile: usize, nb: usize) -> Packed {
    let panels = tile.div_ceil(PANEL);
    let q4 = matches!(w, Weights::Q4(_));
    let mut p = Packed {
        qs: vec![0; panels * nb * QK * PANEL],
        d: vec![0.0; panels * nb * PANEL],
        m: if q4 {
            vec![0.0; panels * nb * PANEL]
        } else {
            Vec::new()
        },
    };
    let mut codes = [0u8; QK];
    for i in 0..tile {
        let (panel, lane) = (i / PANEL, i % PANEL);
        for b in 0..nb {
            let at = (panel * nb + b) * PANEL;
            match w {
                Weights::Q8(w) => {
                    let blk: &BlockQ8 = &w[(first + i) * nb + b];
                    for (c, &q) in codes.iter_mut().zip(&blk.qs) {
                        *c = (q as u8) ^ 0x80;
                    }
                    p.d[at + lane] = blk.d.to_f32();
                }
                Weights::Q4(w) => {
                    let blk: &BlockQ4 = &w[(first + i) * nb + b];
                    let (lo, hi) = codes.split_at_mut(QK / 2);
                    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&blk.qs) {
                        (*l, *h) = (q & 0x0F, q >> 4);
                    }
                    p.d[at + lane] = blk.d.to_f32();
                    p.m[at + lane] = blk.m.to_f32();
                }
                _ => unreachable!("int8 GEMM of a float format"),
            }
            let base = at * QK;
            for (g, four) in codes.chunks_exact(4).enumerate() {
                let o = base + (g * PANEL + lane) * 4;
                p.qs[o..o + 4].copy_from_slice(four);
            }
        }
    }
    p
}

/// `y[n, rows] = x[n, cols] · Wᵀ` for Q8/Q4 `w`; callers check [`supported`] first.
pub(crate) fn gemm(w: Weights<'_>, rows: usize, cols: usize, x: &[f32], n: usize, y: &mut [f32]) {
    // The ISA is read on the calling thread (`with_isa` does not reach rayon's workers).
    let isa = current_isa();
    assert!(has_kernel(isa), "int8 GEMM without AVX512-VNNI");
    let nb = cols / QK;
    let acts = QuantActs::new_par(x, cols);
    // Q8: each block's accumulator starts at -128 · Σ x_q (the codes are stored + 128).
    let corr: Vec<i32> = if matches!(w, Weights::Q8(_)) {
        acts.codes()
            .chunks_exact(QK)
            .map(|b| -128 * b.iter().map(|&q| i32::from(q)).sum::<i32>())
            .collect()
    } else {
        Vec::new()
    };
    let threads = rayon::current_num_threads();
    let tile_rows = (TILE_BYTES / cols.max(1))
        .min(rows.div_ceil(threads))
        .next_multiple_of(PANEL)
        .max(PANEL);
    let tiles = rows.div_ceil(tile_rows);
    let outs: Vec<Vec<f32>> = (0..tiles)
        .into_par_iter()
        .map(|t| {
            let first = t * tile_rows;
            let tile = tile_rows.min(rows - first);
            let packed = pack(w, first, tile, nb);
            let width = tile.next_multiple_of(PANEL);
            let mut out = vec![0.0f32; n * width];
            tile_product(isa, &packed, nb, &acts, &corr, n, &mut out, width);
            out
        })
        .collect();
    for (t, out) in outs.iter().enumerate() {
        let first = t * tile_rows;
        let tile = tile_rows.min(rows - first);
        let width = tile.next_multiple_of(PANEL);
        for j in 0..n {
            y[j * rows + first..j * rows + first + tile]
                .copy_from_slice(&out[j * width..j * width + tile]);
        }
    }
}

/// `out[j, 0..width] = Σ_k x[j, k] · w[r, k]` for every panel of `p`, on `isa` (never above
/// what this CPU has, as `current_isa` returns).
#[allow(clippy::too_many_arguments)]
fn tile_product(
    isa: Isa,
    p: &Packed,
    nb: usize,
    acts: &QuantActs,
    corr: &[i32],
    n: usize,
    out: &mut [f32],
    width: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(has_kernel(isa), "int8 GEMM without AVX512-VNNI");
        // SAFETY: `isa` comes from `current_isa()`, never above what the CPU was detected to
        // have, and `Isa::Avx512` includes AVX-512 F/BW/VL and VNNI.
        unsafe { avx512::tile_product(p, nb, acts, corr, n, out, width) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, p, nb, acts, corr, n, out, width);
        unreachable!("int8 GEMM without AVX512-VNNI");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PANEL, Packed};
    use crate::format::QK;
    use crate::gemv::act::QuantActs;

    /// Activation rows per microkernel call.
    const ROWS: usize = 6;

    /// See [`super::tile_product`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and AVX512-VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn tile_product(
        p: &Packed,
        nb: usize,
        acts: &QuantActs,
        corr: &[i32],
        n: usize,
        out: &mut [f32],
        width: usize,
    ) {
        let cols = nb * QK;
        let panels = width / PANEL;
        let q4 = !p.m.is_empty();
        assert!(width.is_multiple_of(PANEL) && out.len() == n * width);
        assert!(p.qs.len() == panels * nb * QK * PANEL && p.d.len() == panels * nb * PANEL);
        assert!(!q4 || p.m.len() == p.d.len());
        assert!(acts.codes().len() == n * cols && acts.scales().len() == n * nb);
        assert!(acts.sums().len() == n * nb && (q4 || corr.len() == n * nb));
        for j0 in (0..n).step_by(ROWS) {
            let c = ROWS.min(n - j0);
            for panel in 0..panels {
                let args = Args {
                    w: p.qs[panel * nb * QK * PANEL..].as_ptr(),
                    wd: p.d[panel * nb * PANEL..].as_ptr(),
                    wm: if q4 {
                        p.m[panel * nb * PANEL..].as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    nb,
                    x: acts.codes()[j0 * cols..].as_ptr(),
                    cols,
                    xd: acts.scales()[j0 * nb..].as_ptr(),
                    xs: acts.sums()[j0 * nb..].as_ptr(),
                    corr: if q4 {
                        std::ptr::null()
                    } else {
                        corr[j0 * nb..].as_ptr()
                    },
                    out: out[j0 * width + panel * PANEL..].as_mut_ptr(),
                    width,
                };
                // SAFETY: the assertions above bound every access the kernel makes: panel
                // `panel` of the packed codes/scales/minimums (`nb` blocks), `c` activation rows
                // from `j0` of the codes (`cols` each), scales, sums and corrections (`nb`
                // each), and `c` output rows of `PANEL` floats at column `panel * PANEL`.
                unsafe {
                    match (c, q4) {
                        (6, false) => kernel::<6, false>(args),
                        (5, false) => kernel::<5, false>(args),
                        (4, false) => kernel::<4, false>(args),
                        (3, false) => kernel::<3, false>(args),
                        (2, false) => kernel::<2, false>(args),
                        (1, false) => kernel::<1, false>(args),
                        (6, true) => kernel::<6, true>(args),
                        (5, true) => kernel::<5, true>(args),
                        (4, true) => kernel::<4, true>(args),
                        (3, true) => kernel::<3, true>(args),
                        (2, true) => kernel::<2, true>(args),
                        _ => kernel::<1, true>(args),
                    }
                }
            }
        }
    }

    #[derive(Clone, Copy)]
    struct Args {
        w: *const u8,
        wd: *const f32,
        wm: *const f32,
        nb: usize,
        x: *const i8,
        cols: usize,
        xd: *const f32,
        xs: *const f32,
        corr: *const i32,
        out: *mut f32,
        width: usize,
    }

    /// One panel (32 weight rows) times `C` activation rows, written to `C x 32` outputs.
    ///
    /// # Safety
    /// As asserted by [`tile_product`]: `w` holds `nb` packed blocks of the panel, `wd` (and
    /// `wm` for Q4) `nb x 32` floats, `x` `C` rows of `cols` codes, `xd`/`xs` (and `corr` for
    /// Q8) `C` rows of `nb`, `out` `C` rows (stride `width`) of 32 floats.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn kernel<const C: usize, const Q4: bool>(a: Args) {
        let mut acc = [[_mm512_setzero_ps(); 2]; C];
        for b in 0..a.nb {
            let mut isum = [[_mm512_setzero_si512(); 2]; C];
            if !Q4 {
                for (c, s) in isum.iter_mut().enumerate() {
                    // SAFETY: c < C rows of nb corrections.
                    let v = _mm512_set1_epi32(unsafe { *a.corr.add(c * a.nb + b) });
                    *s = [v, v];
                }
            }
            // SAFETY: block b of the panel is QK * PANEL bytes at b * QK * PANEL.
            let wb = unsafe { a.w.add(b * QK * PANEL) };
            for g in 0..QK / 4 {
                // SAFETY: group g is 4 * PANEL bytes inside the block.
                let (w0, w1) = unsafe {
                    (
                        _mm512_loadu_si512(wb.add(g * 4 * PANEL).cast()),
                        _mm512_loadu_si512(wb.add(g * 4 * PANEL + 64).cast()),
                    )
                };
                for (c, s) in isum.iter_mut().enumerate() {
                    // SAFETY: 4 codes of block b in activation row c (< C).
                    let four = unsafe {
                        a.x.add(c * a.cols + b * QK + 4 * g)
                            .cast::<i32>()
                            .read_unaligned()
                    };
                    let xv = _mm512_set1_epi32(four);
                    s[0] = _mm512_dpbusd_epi32(s[0], w0, xv);
                    s[1] = _mm512_dpbusd_epi32(s[1], w1, xv);
                }
            }
            // SAFETY: nb x PANEL scales (and Q4 minimums).
            let (d0, d1) = unsafe {
                (
                    _mm512_loadu_ps(a.wd.add(b * PANEL)),
                    _mm512_loadu_ps(a.wd.add(b * PANEL + 16)),
                )
            };
            for (c, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
                // SAFETY: c < C rows of nb scales.
                let dx = _mm512_set1_ps(unsafe { *a.xd.add(c * a.nb + b) });
                acc[0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[0]), d0), dx, acc[0]);
                acc[1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[1]), d1), dx, acc[1]);
            }
            if Q4 {
                // SAFETY: as for the scales; c < C rows of nb sums.
                let (m0, m1) = unsafe {
                    (
                        _mm512_loadu_ps(a.wm.add(b * PANEL)),
                        _mm512_loadu_ps(a.wm.add(b * PANEL + 16)),
                    )
                };
                for (c, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: c < C rows of nb block sums.
                    let sx = _mm512_set1_ps(unsafe { *a.xs.add(c * a.nb + b) });
                    acc[0] = _mm512_fmadd_ps(m0, sx, acc[0]);
                    acc[1] = _mm512_fmadd_ps(m1, sx, acc[1]);
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            // SAFETY: output row c holds 32 floats from `out + c * width`.
            unsafe {
                _mm512_storeu_ps(a.out.add(c * a.width), acc[0]);
                _mm512_storeu_ps(a.out.add(c * a.width + 16), acc[1]);
            }
        }
    }
}
