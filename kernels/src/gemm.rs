//! Prefill/encoder products (`n > GEMV_MAX_N`): compute bound. Each tile of output rows is
//! dequantized once per call into a thread-local f32 scratch and multiplied with the `gemm`
//! crate's f32 kernels (single-threaded inside a tile; tiles run in parallel).

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::weights::Weights;

/// Output rows per tile.
const TILE: usize = 64;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `y[n, rows] = x[n, cols] · Wᵀ`.
pub(crate) fn gemm(w: Weights<'_>, rows: usize, cols: usize, x: &[f32], n: usize, y: &mut [f32]) {
    let mut yt = vec![0.0f32; rows * n];
    yt.par_chunks_mut(TILE * n)
        .enumerate()
        .for_each(|(t, out)| {
            let (first, tile) = (t * TILE, out.len() / n);
            match w {
                Weights::F32(w) => {
                    tile_product(&w[first * cols..(first + tile) * cols], cols, x, n, out)
                }
                _ => SCRATCH.with_borrow_mut(|scratch| {
                    scratch.resize(tile * cols, 0.0);
                    w.rows_f32(first, cols, scratch);
                    tile_product(scratch, cols, x, n, out);
                }),
            }
        });
    for (r, out) in yt.chunks_exact(n).enumerate() {
        for (j, &v) in out.iter().enumerate() {
            y[j * rows + r] = v;
        }
    }
}

/// `out[tile, n] = w[tile, cols] · x[n, cols]ᵀ`.
fn tile_product(w: &[f32], cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    let tile = out.len() / n;
    assert!(
        w.len() == tile * cols && x.len() == n * cols,
        "tile_product: shapes"
    );
    // SAFETY: `gemm` reads `tile x cols` of `w` (row stride cols), `cols x n` of `x` read as
    // its transpose (element (k, j) at j * cols + k) and writes `tile x n` of `out` (row stride
    // n); all three extents were checked above and `out` does not alias the inputs.
    unsafe {
        gemm::gemm(
            tile,
            n,
            cols,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            w.as_ptr(),
            1,
            cols as isize,
            x.as_ptr(),
            cols as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
