//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's audio fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/audio")
        .join(name)
}

/// True when `sox` can be run. Tests that need it skip (with a message) when it is missing.
pub fn have_sox() -> bool {
    let ok = Command::new("sox")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: sox is not installed (CI installs it)");
    }
    ok
}

/// True when this sox build can write `format` (e.g. "mp3").
pub fn sox_supports(format: &str) -> bool {
    Command::new("sox").arg("-h").output().is_ok_and(|o| {
        let help = String::from_utf8_lossy(&o.stdout).to_string();
        help.lines()
            .filter(|l| l.starts_with("AUDIO FILE FORMATS:"))
            .any(|l| l.split_whitespace().any(|w| w == format))
    })
}

/// Runs sox with `args`, panicking with its stderr on failure.
pub fn sox(args: &[&str]) {
    let out = Command::new("sox").args(args).output().expect("run sox");
    assert!(
        out.status.success(),
        "sox {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `seconds` of a sine of `freq` Hz and amplitude `amp` at `rate`, duplicated on `channels`.
pub fn sine(freq: f64, rate: u32, seconds: f64, amp: f64, channels: usize) -> Vec<f32> {
    let frames = (seconds * f64::from(rate)).round() as usize;
    (0..frames)
        .flat_map(|n| {
            let v = (amp * (2.0 * std::f64::consts::PI * freq * n as f64 / f64::from(rate)).sin())
                as f32;
            std::iter::repeat_n(v, channels)
        })
        .collect()
}

/// Power of `signal` at `freq` (Goertzel), normalised so a full-scale sine gives about 0.25.
pub fn goertzel(signal: &[f32], freq: f64, rate: u32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in signal {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (signal.len() as f64).powi(2)
}

/// Best normalised cross-correlation of `a` and `b` over lags in `-max_lag..=max_lag`,
/// returned with the lag (positive: `b` is late).
pub fn best_correlation(a: &[f32], b: &[f32], max_lag: i64) -> (f64, i64) {
    let mut best = (f64::MIN, 0);
    for lag in -max_lag..=max_lag {
        let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &x) in a.iter().enumerate() {
            let j = i as i64 + lag;
            if j < 0 || j >= b.len() as i64 {
                continue;
            }
            let y = b[j as usize];
            dot += f64::from(x) * f64::from(y);
            na += f64::from(x) * f64::from(x);
            nb += f64::from(y) * f64::from(y);
        }
        let c = dot / (na.sqrt() * nb.sqrt()).max(1e-12);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// Root mean square of `a - b` over their common length.
pub fn rms_diff(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let sum: f64 = a[..n]
        .iter()
        .zip(&b[..n])
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    (sum / n.max(1) as f64).sqrt()
}

/// Bitwise equality of two sample vectors (NaN-safe, sign-of-zero-exact).
pub fn bits(samples: &[f32]) -> Vec<u32> {
    samples.iter().map(|s| s.to_bits()).collect()
}
