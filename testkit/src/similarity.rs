//! How close a computed tensor is to a reference: the measure every numerical comparison in
//! Hark states its tolerances in (golden references, weight formats, quantized checkpoints,
//! `hark dump --against`).

/// Cosine similarity and largest absolute difference of two equally long value lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Cosine of the angle between them (1 for two zero vectors; NaN if either holds a NaN).
    pub cosine: f64,
    /// Largest |got − want|.
    pub max_abs_diff: f64,
    /// `max_abs_diff` as a share of the largest |want| (the absolute difference when the
    /// reference is all zeros).
    pub rel_max_diff: f64,
}

impl Similarity {
    /// Compares `got` with `want` element by element, in f64 (the shorter length counts).
    pub fn of(got: &[f32], want: &[f32]) -> Self {
        let (mut dot, mut gg, mut ww, mut max_d, mut max_w) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for (&a, &b) in got.iter().zip(want) {
            let (a, b) = (f64::from(a), f64::from(b));
            dot += a * b;
            gg += a * a;
            ww += b * b;
            // `max` ignores NaN: a NaN difference is carried into the result explicitly.
            let d = (a - b).abs();
            max_d = if d.is_nan() { f64::NAN } else { max_d.max(d) };
            max_w = max_w.max(b.abs());
        }
        let cosine = if gg == 0.0 && ww == 0.0 {
            1.0
        } else {
            dot / (gg.sqrt() * ww.sqrt())
        };
        let rel_max_diff = if max_w == 0.0 { max_d } else { max_d / max_w };
        Similarity {
            cosine,
            max_abs_diff: max_d,
            rel_max_diff,
        }
    }

    /// Whether both measures are within bounds (NaN never is).
    pub fn within(&self, min_cosine: f64, max_rel_diff: f64) -> bool {
        self.cosine >= min_cosine && self.rel_max_diff <= max_rel_diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_zero_scaled_and_nan_inputs() {
        let a = [1.0, -2.0, 3.0];
        let s = Similarity::of(&a, &a);
        assert_eq!((s.cosine, s.max_abs_diff), (1.0, 0.0));
        assert!(s.within(1.0, 0.0));
        assert_eq!(Similarity::of(&[0.0; 4], &[0.0; 4]).cosine, 1.0);
        let s = Similarity::of(&[2.0, -4.0, 6.0], &a);
        assert!((s.cosine - 1.0).abs() < 1e-12);
        assert_eq!((s.max_abs_diff, s.rel_max_diff), (3.0, 1.0));
        let s = Similarity::of(&[1.0, f32::NAN, 3.0], &a);
        assert!(!s.within(-1.0, f64::INFINITY), "{s:?}");
    }
}
