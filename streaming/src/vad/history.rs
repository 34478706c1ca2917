//! Fixed-size history of the most recent stream samples, addressed by absolute sample index.

/// Ring of the last `capacity` samples. Pre-roll and held-back trailing silence are read
/// from here, so the gate never allocates per push.
pub(crate) struct SampleHistory {
    buf: Box<[f32]>,
    /// Samples written since the stream began; the next sample's absolute index.
    written: u64,
}

impl SampleHistory {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0.0; capacity.max(1)].into_boxed_slice(),
            written: 0,
        }
    }

    /// Absolute index one past the newest sample.
    pub(crate) fn end(&self) -> u64 {
        self.written
    }

    /// Absolute index of the oldest sample still held.
    pub(crate) fn oldest(&self) -> u64 {
        self.written.saturating_sub(self.buf.len() as u64)
    }

    pub(crate) fn push(&mut self, samples: &[f32]) {
        let cap = self.buf.len();
        // Only the newest `cap` samples can survive.
        let skip = samples.len().saturating_sub(cap);
        self.written += skip as u64;
        let mut rest = &samples[skip..];
        while !rest.is_empty() {
            let at = (self.written % cap as u64) as usize;
            let n = rest.len().min(cap - at);
            self.buf[at..at + n].copy_from_slice(&rest[..n]);
            self.written += n as u64;
            rest = &rest[n..];
        }
    }

    /// The samples `[start, end)` as at most two slices, oldest first.
    ///
    /// The range must lie inside `[oldest(), end())`; the gate sizes the ring so it does.
    pub(crate) fn slices(&self, start: u64, end: u64) -> (&[f32], &[f32]) {
        debug_assert!(self.oldest() <= start && start <= end && end <= self.written);
        let cap = self.buf.len() as u64;
        let len = (end - start) as usize;
        let at = (start % cap) as usize;
        let first = len.min(self.buf.len() - at);
        (&self.buf[at..at + first], &self.buf[..len - first])
    }

    /// A new vector holding the samples `[start, end)`.
    pub(crate) fn to_vec(&self, start: u64, end: u64) -> Vec<f32> {
        let (a, b) = self.slices(start, end);
        let mut out = Vec::with_capacity(a.len() + b.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::SampleHistory;

    #[test]
    fn keeps_the_newest_samples_across_wraps() {
        let mut h = SampleHistory::new(5);
        let input: Vec<f32> = (0..23).map(|i| i as f32).collect();
        for chunk in input.chunks(3) {
            h.push(chunk);
        }
        assert_eq!(h.end(), 23);
        assert_eq!(h.oldest(), 18);
        assert_eq!(h.to_vec(18, 23), vec![18.0, 19.0, 20.0, 21.0, 22.0]);
        assert_eq!(h.to_vec(20, 22), vec![20.0, 21.0]);
        // A push longer than the ring keeps its tail.
        h.push(&input[..12]);
        assert_eq!(h.end(), 35);
        assert_eq!(h.to_vec(30, 35), vec![7.0, 8.0, 9.0, 10.0, 11.0]);
    }
}
