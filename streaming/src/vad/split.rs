//! Choosing where an over-long segment is cut.

/// Energies of the most recent frames, to find the quietest point of the last few seconds.
pub(crate) struct SplitFinder {
    /// Mean-square energy per frame, ring indexed by frame number.
    energies: Box<[f32]>,
    frames: u64,
    frame_len: u64,
    /// Frames on each side of a candidate cut that make up its short-time energy.
    half_window: usize,
}

/// Short-time energy window around a candidate cut, about 80 ms: long enough to land in a
/// pause rather than between two glottal pulses, short enough for brief word gaps.
const WINDOW_MS: u32 = 80;

impl SplitFinder {
    pub(crate) fn new(lookback_frames: usize, frame_len: usize, frame_ms: u32) -> Self {
        let half_window = (WINDOW_MS / 2).div_ceil(frame_ms).max(1) as usize;
        Self {
            energies: vec![0.0; lookback_frames.max(2 * half_window)].into_boxed_slice(),
            frames: 0,
            frame_len: frame_len as u64,
            half_window,
        }
    }

    pub(crate) fn record(&mut self, energy: f32) {
        let cap = self.energies.len() as u64;
        self.energies[(self.frames % cap) as usize] = energy;
        self.frames += 1;
    }

    /// Absolute sample index of the frame boundary with the lowest short-time energy among
    /// the recorded frames, later than `after`. Ties go to the latest boundary, which leaves
    /// the least audio to carry into the next piece. `None` if no boundary qualifies.
    pub(crate) fn quietest(&self, after: u64) -> Option<u64> {
        let cap = self.energies.len() as u64;
        let held = self.frames.min(cap);
        let h = self.half_window as u64;
        let energy = |frame: u64| self.energies[(frame % cap) as usize];
        let mut best: Option<(f32, u64)> = None;
        // Boundary `b` (a frame number) sits before frame `b`; it needs `h` held frames on
        // each side.
        let first = self.frames - held + h;
        let last = self.frames.saturating_sub(h);
        for b in (first..=last).rev() {
            let at = b * self.frame_len;
            if at <= after {
                break;
            }
            let score: f32 = (b - h..b + h).map(energy).sum();
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, at));
            }
        }
        best.map(|(_, at)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::SplitFinder;

    #[test]
    fn finds_the_quiet_gap_and_prefers_the_latest_tie() {
        // 10 ms frames of 160 samples: half window of 4 frames.
        let mut s = SplitFinder::new(100, 160, 10);
        let mut record = |energy: f32, n: usize| (0..n).for_each(|_| s.record(energy));
        record(1.0, 30);
        record(0.0, 8); // frames 30..38 silent
        record(1.0, 30);
        record(0.0, 8); // frames 68..76 silent
        record(1.0, 24);
        // Both gaps are silent for a full window; the later one wins.
        assert_eq!(s.quietest(0), Some(72 * 160));
        // Not allowed to cut at or before `after`: the next quietest boundary.
        assert_eq!(s.quietest(72 * 160), Some(73 * 160));
        // No boundary with a full window on both sides lies after frame 96.
        assert_eq!(s.quietest(96 * 160), None);
    }
}
