//! Every format on every ISA path this CPU has (plus portable) against an f64 reference.

mod common;

use common::{Rng, dequantized};
use half::f16;
use hark_kernels::{
    BlockQ4, Format, GEMV_MAX_N, INT8_GEMM_MIN_N, Isa, PackedMatrix, QK, available_isas,
    int8_activations, with_int8_gemm, with_isa,
};

const NS: [usize; 11] = [1, 2, 3, 4, 5, 7, 8, 9, 17, 64, 65];
const ROWS: [usize; 5] = [1, 3, 31, 33, 129];
const FLOAT_COLS: [usize; 7] = [1, 7, 15, 31, 33, 100, 257];
const QUANT_COLS: [usize; 4] = [32, 64, 96, 320];

/// `y[j * rows + r] = Σ_k x[j, k] · w[r, k]` in f64, and `Σ_k |x[j, k]| · |w[r, k]|`.
pub fn reference(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut y, mut mag) = (vec![0.0; n * rows], vec![0.0; n * rows]);
    for j in 0..n {
        for r in 0..rows {
            for k in 0..cols {
                let (a, b) = (f64::from(x[j * cols + k]), f64::from(w[r * cols + k]));
                y[j * rows + r] += a * b;
                mag[j * rows + r] += (a * b).abs();
            }
        }
    }
    (y, mag)
}

/// Relative error allowed for f32 arithmetic, of a result's Σ|x|·|w|.
const FLOAT_TOL: f64 = 1e-5;

/// The error bound of quantizing `x` per 32-block with `d = amax / 127` (round to nearest,
/// so at most d/2 per element) against the integer parts of the weights: `Σ_b d_b / 2 ·
/// Σ_{k in b} |w_k - m_b|`, with `m_b` the Q4 block minimum (added with the exact `Σx`) and 0
/// for Q8.
fn activation_bound(m: &PackedMatrix, r: usize, w: &[f32], x: &[f32]) -> f64 {
    w.chunks(QK)
        .zip(x.chunks(QK))
        .enumerate()
        .map(|(b, (wb, xb))| {
            let offset = block_min(m, r, b);
            let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let d = f64::from(amax) / 127.0;
            d / 2.0 * wb.iter().map(|&v| f64::from(v - offset).abs()).sum::<f64>()
        })
        .sum()
}

/// `m` of block `b` in row `r` of a Q4 matrix (read from the packed bytes), 0 otherwise.
fn block_min(m: &PackedMatrix, r: usize, b: usize) -> f32 {
    if m.format() != Format::Q4 {
        return 0.0;
    }
    let at = (r * m.cols() / QK + b) * size_of::<BlockQ4>() + 2;
    let bytes = m.as_bytes();
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

fn check(format: Format, rows: usize, cols: usize, n: usize, isa: Isa, rng: &mut Rng) {
    check_with(format, rows, cols, n, isa, true, rng);
}

/// As `check`, with the int8 GEMM path enabled or not; the tolerance includes the
/// activation-quantization bound exactly when the product quantizes the activations.
fn check_with(
    format: Format,
    rows: usize,
    cols: usize,
    n: usize,
    isa: Isa,
    int8_gemm: bool,
    rng: &mut Rng,
) {
    let m = PackedMatrix::from_f32(rows, cols, &rng.vec(rows * cols), format).unwrap();
    let x = rng.vec(n * cols);
    let w = dequantized(&m);
    let (want, mag) = reference(&w, rows, cols, &x, n);
    let mut y = vec![f32::NAN; n * rows];
    let integer_acts = with_int8_gemm(int8_gemm, || {
        with_isa(isa, || {
            m.matmul(&x, n, &mut y);
            int8_activations(format, n)
        })
    });
    for j in 0..n {
        for r in 0..rows {
            let i = j * rows + r;
            let mut tol = FLOAT_TOL * mag[i] + 1e-6;
            if integer_acts {
                tol += activation_bound(
                    &m,
                    r,
                    &w[r * cols..(r + 1) * cols],
                    &x[j * cols..(j + 1) * cols],
                );
            }
            let err = (f64::from(y[i]) - want[i]).abs();
            assert!(
                err <= tol,
                "{format} {isa} int8 {integer_acts} {rows}x{cols} n={n}: y[{j},{r}] = {} want {} (err {err:e} > {tol:e})",
                y[i],
                want[i]
            );
        }
    }
}

fn check_format(format: Format, cols: &[usize]) {
    let mut rng = Rng::new(format as u64 + 1);
    for isa in available_isas() {
        for &n in &NS {
            for &rows in &ROWS {
                for &c in cols {
                    check(format, rows, c, n, isa, &mut rng);
                }
            }
        }
        // Large enough to run in parallel chunks on both paths.
        for n in [1, 3, GEMV_MAX_N, GEMV_MAX_N + 1, 9] {
            check(format, 1000, cols[cols.len() - 1], n, isa, &mut rng);
        }
        // Wider than one dequantized column slab of the GEMM path (2048), with a partial slab.
        let wide = if format.is_quantized() {
            2048 + 96
        } else {
            2048 + 97
        };
        for n in [2, GEMV_MAX_N + 1, 9] {
            check(format, 37, wide, n, isa, &mut rng);
        }
    }
}

#[test]
fn f32_matches_reference() {
    check_format(Format::F32, &FLOAT_COLS);
}

#[test]
fn f16_matches_reference() {
    check_format(Format::F16, &FLOAT_COLS);
}

#[test]
fn bf16_matches_reference() {
    check_format(Format::BF16, &FLOAT_COLS);
}

#[test]
fn q8_matches_reference() {
    check_format(Format::Q8, &QUANT_COLS);
}

#[test]
fn q4_matches_reference() {
    check_format(Format::Q4, &QUANT_COLS);
}

/// The int8 GEMM (n >= INT8_GEMM_MIN_N) against the f64 reference: row counts that are not
/// multiples of the 32-row panels or of the per-thread tiles, activation counts that are not
/// multiples of the 6-row microkernel, on every path (plus portable, which dequantizes).
fn check_int8_gemm(format: Format) {
    let mut rng = Rng::new(format as u64 + 11);
    let mut isas = available_isas();
    if !isas.contains(&Isa::Portable) {
        isas.insert(0, Isa::Portable);
    }
    for isa in isas {
        for n in [16, 17, 33, 250] {
            for rows in [1, 31, 33, 45, 100] {
                for cols in [32, 96, 320] {
                    check(format, rows, cols, n, isa, &mut rng);
                }
            }
        }
        // Several tiles per thread, a partial last panel, columns beyond one GEMM slab.
        check(format, 1000 + 7, 1536, 33, isa, &mut rng);
        check(format, 333, 2048 + 96, 19, isa, &mut rng);
        // The dequantize + f32 path when the int8 GEMM is disabled (float tolerance only).
        check_with(format, 45, 96, 33, isa, false, &mut rng);
    }
}

#[test]
fn q8_int8_gemm_matches_reference() {
    check_int8_gemm(Format::Q8);
}

#[test]
fn q4_int8_gemm_matches_reference() {
    check_int8_gemm(Format::Q4);
}

#[test]
fn int8_gemm_only_from_min_n_on_avx512() {
    for isa in available_isas() {
        with_isa(isa, || {
            for format in Format::ALL {
                for n in 1..=300 {
                    let want = format.is_quantized()
                        && (n <= GEMV_MAX_N || (n >= INT8_GEMM_MIN_N && isa >= Isa::Avx512));
                    assert_eq!(int8_activations(format, n), want, "{format} {isa} n={n}");
                    let off = with_int8_gemm(false, || int8_activations(format, n));
                    assert_eq!(off, format.is_quantized() && n <= GEMV_MAX_N);
                }
            }
        });
    }
    // n = GEMV_MAX_N + 1..INT8_GEMM_MIN_N keeps the dequantized f32 path (the model's
    // quantization tests use n = GEMV_MAX_N + 4 there).
    assert!((GEMV_MAX_N + 1..INT8_GEMM_MIN_N).all(|n| !int8_activations(Format::Q8, n)));
}

#[test]
fn isa_paths_agree_on_quantized_decode() {
    // The integer paths compute the same block sums; only float summation order differs.
    let mut rng = Rng::new(7);
    for format in [Format::Q8, Format::Q4] {
        let m = PackedMatrix::from_f32(40, 256, &rng.vec(40 * 256), format).unwrap();
        let x = rng.vec(256);
        let run = |isa| {
            let mut y = vec![0.0; 40];
            with_isa(isa, || m.matmul(&x, 1, &mut y));
            y
        };
        let portable = run(Isa::Portable);
        for isa in available_isas() {
            for (a, b) in run(isa).iter().zip(&portable) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{format} {isa}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn empty_shapes() {
    let m = PackedMatrix::from_f32(3, 0, &[], Format::F32).unwrap();
    let mut y = vec![f32::NAN; 6];
    m.matmul(&[], 2, &mut y);
    assert_eq!(y, [0.0; 6]);
    let m = PackedMatrix::from_f32(0, 32, &[], Format::Q8).unwrap();
    m.matmul(&[0.5; 64], 2, &mut []);
    let m = PackedMatrix::from_f32(2, 32, &[0.5; 64], Format::Q4).unwrap();
    m.matmul(&[], 0, &mut []);
}

#[test]
fn zero_activations_give_zero() {
    for format in Format::ALL {
        let m = PackedMatrix::from_f32(5, 64, &Rng::new(3).vec(320), format).unwrap();
        for n in [1, GEMV_MAX_N + 2] {
            let mut y = vec![f32::NAN; 5 * n];
            m.matmul(&vec![0.0; 64 * n], n, &mut y);
            assert!(y.iter().all(|&v| v == 0.0), "{format} n={n}: {y:?}");
        }
    }
}

#[test]
#[should_panic(expected = "x must be n x cols")]
fn wrong_input_length_panics() {
    let m = PackedMatrix::from_f32(2, 3, &[0.0; 6], Format::F32).unwrap();
    m.matmul(&[0.0; 5], 2, &mut [0.0; 4]);
}
