//! Micro-benchmark of the packed-weight kernels on Gemma 4 E2B shapes, beside the `gemm`
//! crate's own f32 and f16 products in the same run.
//!
//! ```sh
//! cargo run --release -p hark-kernels --example kernel_bench            # everything
//! cargo run --release -p hark-kernels --example kernel_bench -- --quick # no LM head, fewer reps
//! cargo run --release -p hark-kernels --example kernel_bench -- 1536x262144 # only these shapes
//! cargo run --release -p hark-kernels --example kernel_bench -- --gemm       # only the GEMM table
//! cargo run --release -p hark-kernels --example kernel_bench -- --gemm --n=16,32 # other batches
//! ```
//! GEMV: n = 1, time and GB/s of packed weights read. GEMM: n = 325 and 250, GFLOP/s
//! (2·n·in·out per product); the 262144-row LM head is left out of GEMM (prefill needs only the
//! last position's logits).

use std::hint::black_box;
use std::time::Instant;

use gemm::{Parallelism, f16};
use hark_kernels::{Format, PackedMatrix, available_isas, detected_isa, with_int8_gemm, with_isa};
use rayon::prelude::*;

const LM_HEAD: (usize, usize) = (1536, 262_144);
const SHAPES: [(usize, usize); 10] = [
    (1536, 2048),
    (1536, 256),
    (2048, 1536),
    (1536, 6144),
    (6144, 1536),
    (1536, 12288),
    (12288, 1536),
    LM_HEAD,
    (1024, 4096),
    (4096, 1024),
];
const GEMM_NS: [usize; 2] = [325, 250];

/// Fastest seconds of `f` over at least 3 runs and about `budget` seconds, after one warm-up
/// (the best run, not the median: the development VMs share their cores with other work).
fn time(budget: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut runs = Vec::new();
    while runs.len() < 3 || (start.elapsed().as_secs_f64() < budget && runs.len() < 500) {
        let t = Instant::now();
        f();
        runs.push(t.elapsed().as_secs_f64());
    }
    runs.into_iter().fold(f64::INFINITY, f64::min)
}

/// Deterministic values in [-1, 1), generated in parallel (the LM head has 400 M weights).
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0f32; len];
    v.par_chunks_mut(1 << 16)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut s = (seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
            for x in chunk {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *x = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            }
        });
    v
}

/// `y[n, out] = x[n, in] · wᵀ` with the `gemm` crate, `w` row-major `[out, in]`.
fn gemm_crate<T: 'static + Copy>(
    w: &[T],
    x: &[T],
    y: &mut [T],
    n: usize,
    inp: usize,
    zero: T,
    one: T,
) {
    let out = w.len() / inp;
    assert!(x.len() == n * inp && y.len() == n * out);
    // SAFETY: dst is n x out (row stride out), lhs n x inp (row stride inp), rhs = wᵀ read as
    // inp x out with element (k, r) at r * inp + k; all in bounds by the assertion above.
    unsafe {
        gemm::gemm(
            n,
            out,
            inp,
            y.as_mut_ptr(),
            1,
            out as isize,
            false,
            x.as_ptr(),
            1,
            inp as isize,
            w.as_ptr(),
            inp as isize,
            1,
            zero,
            one,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
}

struct Baseline {
    w32: Vec<f32>,
    w16: Vec<f16>,
}

impl Baseline {
    fn new(w: Vec<f32>) -> Self {
        let w16 = w.par_iter().map(|&v| f16::from_f32(v)).collect();
        Baseline { w32: w, w16 }
    }

    fn f32_secs(&self, inp: usize, n: usize, budget: f64) -> f64 {
        let x = random(n * inp, 9);
        let mut y = vec![0.0f32; n * (self.w32.len() / inp)];
        time(budget, || {
            gemm_crate(&self.w32, &x, &mut y, n, inp, 0.0, 1.0)
        })
    }

    fn f16_secs(&self, inp: usize, n: usize, budget: f64) -> f64 {
        let x: Vec<f16> = random(n * inp, 9)
            .iter()
            .map(|&v| f16::from_f32(v))
            .collect();
        let mut y = vec![f16::ZERO; n * (self.w16.len() / inp)];
        time(budget, || {
            gemm_crate(&self.w16, &x, &mut y, n, inp, f16::ZERO, f16::ONE)
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // Only the GEMM table (n = 325, 250).
    let gemm_only = args.iter().any(|a| a == "--gemm");
    // `--n=16,32`: GEMM batch sizes instead of 325 and 250.
    let gemm_ns: Vec<usize> =
        args.iter()
            .find_map(|a| a.strip_prefix("--n="))
            .map_or(GEMM_NS.to_vec(), |l| {
                l.split(',')
                    .map(|v| v.parse().expect("--n=N,N,..."))
                    .collect()
            });
    let only: Vec<&String> = args.iter().filter(|a| a.contains('x')).collect();
    let budget = if quick { 0.2 } else { 0.6 };
    let isas = available_isas();
    println!(
        "# hark-kernels micro-benchmark: {} rayon threads, ISAs {:?} (detected {})",
        rayon::current_num_threads(),
        isas,
        detected_isa()
    );
    let read = vec![1u64; 1 << 27];
    let t = time(budget, || {
        let sum = |c: &[u64]| c.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        black_box(
            read.par_chunks(1 << 16)
                .map(sum)
                .reduce(|| 0, u64::wrapping_add),
        );
    });
    let gbs = (read.len() * 8) as f64 / t / 1e9;
    println!("memory read bandwidth (1 GiB parallel integer sum): {gbs:.1} GB/s\n");
    drop(read);

    let isa_cols: String = isas.iter().map(|i| format!(" {i} ms (GB/s) |")).collect();
    let mut gemv =
        format!("| in→out | format | MB |{isa_cols} best vs gemm f32 | best vs gemm f16 |\n");
    gemv += &format!("|---|---|---|{}---|---|\n", "---|".repeat(isas.len()));
    let gemm_cols: String = Format::ALL.iter().map(|f| format!(" {f} |")).collect();
    let mut gemm_table = format!(
        "| in→out | n |{gemm_cols} q8 dequant+f32 | q4 dequant+f32 | gemm f32 | gemm f16 | best packed / gemm f32 |\n"
    );
    gemm_table += &format!(
        "|---|---|{}---|---|---|---|---|\n",
        "---|".repeat(Format::ALL.len())
    );

    for (inp, out) in SHAPES {
        let named = only.iter().any(|a| **a == format!("{inp}x{out}"));
        if (quick && (inp, out) == LM_HEAD) || (!only.is_empty() && !named) {
            continue;
        }
        let base = Baseline::new(random(inp * out, 2));
        let x1 = random(inp, 3);
        let mut y1 = vec![0.0f32; out];
        let (g32, g16) = if gemm_only {
            (f64::NAN, f64::NAN)
        } else {
            (base.f32_secs(inp, 1, budget), base.f16_secs(inp, 1, budget))
        };
        let (mb32, mb16) = ((inp * out * 4) as f64 / 1e6, (inp * out * 2) as f64 / 1e6);
        let cell = |secs: f64, mb: f64| format!(" {:.3} ({:.1}) |", secs * 1e3, mb / 1e3 / secs);
        gemv += &format!(
            "| {inp}→{out} | gemm crate f32 | {mb32:.0} |{} | | |\n",
            cell(g32, mb32)
        );
        gemv += &format!(
            "| {inp}→{out} | gemm crate f16 | {mb16:.0} |{} | | |\n",
            cell(g16, mb16)
        );
        let mut gemm_row = vec![String::new(); gemm_ns.len()];
        // Q8/Q4 on the dequantize + f32 GEMM path (int8 GEMM disabled), same run.
        let mut old_row = vec![String::new(); gemm_ns.len()];
        let mut best_gemm = vec![f64::INFINITY; gemm_ns.len()];
        for format in Format::ALL {
            let m = PackedMatrix::from_f32(out, inp, &base.w32, format).expect("packable shape");
            let mb = m.storage_bytes() as f64 / 1e6;
            let mut row = format!("| {inp}→{out} | {format} | {mb:.0} |");
            let mut best = f64::INFINITY;
            for &isa in isas.iter().filter(|_| !gemm_only) {
                let secs = with_isa(isa, || time(budget, || m.matmul(&x1, 1, &mut y1)));
                best = best.min(secs);
                row += &cell(secs, mb);
            }
            if !gemm_only {
                gemv += &format!("{row} {:.2}× | {:.2}× |\n", g32 / best, g16 / best);
            }
            if (inp, out) != LM_HEAD {
                for (k, &n) in gemm_ns.iter().enumerate() {
                    let x = random(n * inp, 4);
                    let mut y = vec![0.0f32; n * out];
                    let secs = time(budget, || m.matmul(&x, n, &mut y));
                    best_gemm[k] = best_gemm[k].min(secs);
                    gemm_row[k] += &format!(" {:.0} |", 2.0 * (n * inp * out) as f64 / secs / 1e9);
                    if format.is_quantized() {
                        let old =
                            with_int8_gemm(false, || time(budget, || m.matmul(&x, n, &mut y)));
                        old_row[k] +=
                            &format!(" {:.0} |", 2.0 * (n * inp * out) as f64 / old / 1e9);
                    }
                }
            }
            print!(".");
        }
        if (inp, out) != LM_HEAD {
            for (k, &n) in gemm_ns.iter().enumerate() {
                let flop = 2.0 * (n * inp * out) as f64;
                let (b32, b16) = (base.f32_secs(inp, n, budget), base.f16_secs(inp, n, budget));
                gemm_table += &format!(
                    "| {inp}→{out} | {n} |{}{} {:.0} | {:.0} | {:.2}× |\n",
                    gemm_row[k],
                    old_row[k],
                    flop / b32 / 1e9,
                    flop / b16 / 1e9,
                    b32 / best_gemm[k]
                );
            }
        }
        println!(" {inp}→{out} done");
    }
    println!("\n## GEMV (n = 1): milliseconds (GB/s of weights read)\n\n{gemv}");
    println!(
        "## GEMM: GFLOP/s (detected ISA {})\n\n{gemm_table}",
        detected_isa()
    );
}
