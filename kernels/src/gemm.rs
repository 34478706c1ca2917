//! Prefill/encoder products (larger `n`): compute bound. Each tile of output rows is
//! dequantized once per call, a slab of columns at a time, into a thread-local f32 scratch and
//! multiplied with the `gemm` crate's f32 kernels (single-threaded inside a tile; tiles run in
//! parallel). f32 weights are multiplied in place.

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::weights::Weights;

/// Most output rows per tile (large tiles keep the `gemm` microkernels efficient).
const MAX_TILE: usize = 512;
/// Most columns dequantized at once (bounds the scratch to `MAX_TILE * MAX_SLAB` floats).
const MAX_SLAB: usize = 2048;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `y[n, rows] = x[n, cols] · Wᵀ`.
pub(crate) fn gemm(w: Weights<'_>, rows: usize, cols: usize, x: &[f32], n: usize, y: &mut [f32]) {
    // At least one tile per thread, in multiples of 16 rows.
    let tile_rows = rows
        .div_ceil(rayon::current_num_threads())
        .next_multiple_of(16)
        .min(MAX_TILE);
    let mut yt = vec![0.0f32; rows * n];
    yt.par_chunks_mut(tile_rows * n)
        .enumerate()
        .for_each(|(t, out)| {
            let (first, tile) = (t * tile_rows, out.len() / n);
            let Weights::F32(w) = w else {
                return SCRATCH.with_borrow_mut(|scratch| {
                    let slab = cols.min(MAX_SLAB);
                    scratch.resize(tile * slab, 0.0);
                    for k0 in (0..cols).step_by(slab) {
                        let width = slab.min(cols - k0);
                        let part = &mut scratch[..tile * width];
                        w.block_f32(first, tile, k0, width, cols, part);
                        tile_product(part, width, cols, &x[k0..], n, out, k0 > 0);
                    }
                });
            };
            let w = &w[first * cols..(first + tile) * cols];
            tile_product(w, cols, cols, x, n, out, false);
        });
    for (r, out) in yt.chunks_exact(n).enumerate() {
        for (j, &v) in out.iter().enumerate() {
            y[j * rows + r] = v;
        }
    }
}

/// `out[tile, n] (+)= w[tile, width] · x[n, width]ᵀ`, where row `j` of `x` starts at
/// `x[j * x_stride]`; accumulates into `out` when `accumulate`.
fn tile_product(
    w: &[f32],
    width: usize,
    x_stride: usize,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    let tile = out.len() / n;
    assert_eq!(w.len(), tile * width, "tile_product: weight tile");
    assert!(
        n == 0 || (n - 1) * x_stride + width <= x.len(),
        "tile_product: activations"
    );
    // SAFETY: `gemm` reads `tile x width` of `w` (row stride `width`), the `width x n`
    // transpose of `x` (element (k, j) at `j * x_stride + k`, in bounds by the assertion) and
    // reads/writes `tile x n` of `out` (row stride n); `out` does not alias the inputs.
    unsafe {
        gemm::gemm(
            tile,
            n,
            width,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            w.as_ptr(),
            1,
            width as isize,
            x.as_ptr(),
            x_stride as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
