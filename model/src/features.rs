//! The log-mel front-end of `Gemma4AudioFeatureExtractor`, computed on the host.
//!
//! One code path serves offline and streaming use: [`MelExtractor::push`] takes samples in
//! chunks of any size and emits each frame as soon as it is final. A frame is final when the
//! sample that decides its validity has arrived, so chunking can never change a frame.
//!
//! HF semantics (docs/model.md §1): 160 zero samples are prepended ("semicausal"); frame i
//! analyses the 320 samples `x'[160 i .. 160 i + 320)` of the padded signal with a periodic Hann
//! window, takes `|rfft_512|`, applies an HTK mel filterbank without normalisation and
//! `ln(mel + 0.001)`; it is valid iff the 321st sample of its unfold window, `x'[160 i + 320]`,
//! is real audio.
//! Invalid frames are zero in HF and never emitted here: the encoder's end-of-stream flush
//! reproduces their effect (zero padding) exactly.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex, num_complex::Complex};

use crate::config::FeatureExtractorJson;

/// Fixed parameters of the front-end, shared by all streams.
pub struct MelSpec {
    pub n_mels: usize,
    pub frame_length: usize,
    pub hop_length: usize,
    pub fft_length: usize,
    window: Vec<f32>,
    /// Per mel filter: first FFT bin with a non-zero weight, and the weights from there on.
    filters: Vec<(usize, Vec<f64>)>,
    mel_floor: f64,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for MelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelSpec")
            .field("n_mels", &self.n_mels)
            .field("frame_length", &self.frame_length)
            .field("hop_length", &self.hop_length)
            .field("fft_length", &self.fft_length)
            .finish()
    }
}

fn hz_to_mel_htk(hz: f64) -> f64 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz_htk(mel: f64) -> f64 {
    700.0 * (10f64.powf(mel / 2595.0) - 1.0)
}

impl MelSpec {
    pub fn new(fe: &FeatureExtractorJson) -> Self {
        let rate = fe.sampling_rate as f64;
        let frame_length = (rate * fe.frame_length_ms / 1000.0).round() as usize;
        let hop_length = (rate * fe.hop_length_ms / 1000.0).round() as usize;
        let fft_length = frame_length.next_power_of_two();
        // Periodic Hann: np.hanning(N + 1)[:-1].
        let window = (0..frame_length)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / frame_length as f64).cos())
                    as f32
            })
            .collect();
        let n_bins = fft_length / 2 + 1;
        let n_mels = fe.feature_size;
        let mel_min = hz_to_mel_htk(fe.min_frequency);
        let mel_max = hz_to_mel_htk(fe.max_frequency);
        let edges: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz_htk(mel_min + (mel_max - mel_min) * i as f64 / (n_mels + 1) as f64))
            .collect();
        let bin_hz: Vec<f64> = (0..n_bins)
            .map(|k| (rate / 2.0) * k as f64 / (n_bins - 1) as f64)
            .collect();
        let filters = (0..n_mels)
            .map(|j| {
                let weights: Vec<f64> = bin_hz
                    .iter()
                    .map(|&f| {
                        let down = (f - edges[j]) / (edges[j + 1] - edges[j]);
                        let up = (edges[j + 2] - f) / (edges[j + 2] - edges[j + 1]);
                        down.min(up).max(0.0)
                    })
                    .collect();
                let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = weights.iter().rposition(|&w| w > 0.0).map_or(0, |l| l + 1);
                (first, weights[first..last.max(first)].to_vec())
            })
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(fft_length);
        Self {
            n_mels,
            frame_length,
            hop_length,
            fft_length,
            window,
            filters,
            mel_floor: fe.mel_floor,
            fft,
        }
    }

    /// Padding prepended to the signal (half a frame).
    pub fn left_pad(&self) -> usize {
        self.frame_length / 2
    }

    /// Number of valid frames of a clip of `samples` samples: `floor((N - 1) / hop)` in HF terms,
    /// i.e. frames whose validity sample `x'[hop i + frame_length]` exists.
    pub fn valid_frames(&self, samples: usize) -> usize {
        let padded = samples + self.left_pad();
        if padded <= self.frame_length {
            0
        } else {
            (padded - self.frame_length - 1) / self.hop_length + 1
        }
    }

    /// Sum of all filter weights (docs/model.md §1.6 gives 252.78514 for E2B's front-end).
    pub fn filter_sum(&self) -> f64 {
        self.filters.iter().flat_map(|(_, w)| w.iter()).sum()
    }
}

/// Per-stream incremental mel extractor.
pub struct MelExtractor {
    spec: Arc<MelSpec>,
    /// The padded signal from padded index `hop * next_frame` on.
    pending: Vec<f32>,
    next_frame: usize,
    frame_in: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
}

impl std::fmt::Debug for MelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelExtractor")
            .field("next_frame", &self.next_frame)
            .finish()
    }
}

impl MelExtractor {
    pub fn new(spec: Arc<MelSpec>) -> Self {
        let fft = spec.fft.clone();
        Self {
            pending: vec![0.0; spec.left_pad()],
            next_frame: 0,
            frame_in: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            spec,
        }
    }

    /// Frames emitted so far.
    pub fn frames_emitted(&self) -> usize {
        self.next_frame
    }

    /// Feed samples; append every frame that became final to `out` (`n_mels` values per frame,
    /// row-major). Returns the number of frames appended.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        self.pending.extend_from_slice(samples);
        let (len, hop) = (self.spec.frame_length, self.spec.hop_length);
        let mut consumed = 0;
        let mut emitted = 0;
        // Frame needs x'[start .. start + len) plus the validity sample x'[start + len].
        while self.pending.len() - consumed > len {
            self.compute_frame(consumed, out);
            consumed += hop;
            self.next_frame += 1;
            emitted += 1;
        }
        self.pending.drain(..consumed);
        emitted
    }

    fn compute_frame(&mut self, offset: usize, out: &mut Vec<f32>) {
        let spec = &*self.spec;
        let frame = &self.pending[offset..offset + spec.frame_length];
        self.frame_in.fill(0.0);
        for ((dst, &x), &w) in self.frame_in.iter_mut().zip(frame).zip(&spec.window) {
            // HF multiplies in float32 before its FFT.
            *dst = (x * w) as f64;
        }
        spec.fft
            .process_with_scratch(&mut self.frame_in, &mut self.spectrum, &mut self.scratch)
            .expect("buffer sizes come from the same plan");
        for (first, weights) in &spec.filters {
            let mel: f64 = weights
                .iter()
                .zip(&self.spectrum[*first..*first + weights.len()])
                .map(|(w, c)| w * (c.re * c.re + c.im * c.im).sqrt())
                .sum();
            out.push((mel + spec.mel_floor).ln() as f32);
        }
    }
}

/// Offline convenience: all valid frames of a clip, `[frames, n_mels]` row-major.
pub fn log_mel(spec: &Arc<MelSpec>, samples: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(spec.valid_frames(samples.len()) * spec.n_mels);
    MelExtractor::new(spec.clone()).push(samples, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e2b_spec() -> Arc<MelSpec> {
        Arc::new(MelSpec::new(&FeatureExtractorJson::default()))
    }

    #[test]
    fn geometry_matches_hf() {
        let spec = e2b_spec();
        assert_eq!(
            (spec.frame_length, spec.hop_length, spec.fft_length),
            (320, 160, 512)
        );
        // docs/model.md §1.6: filter matrix sum, float64.
        assert!(
            (spec.filter_sum() - 252.78514).abs() < 1e-4,
            "{}",
            spec.filter_sum()
        );
        // Filter 0 is all zero (its support lies between bins 0 and 1).
        assert!(spec.filters[0].1.iter().all(|&w| w == 0.0));
        for (n, want) in [
            (0, 0),
            (160, 0),
            (161, 1),
            (16_000, 99),
            (16_001, 100),
            (480_000, 2999),
        ] {
            assert_eq!(spec.valid_frames(n), want, "N = {n}");
        }
    }

    /// docs/model.md §1.6: HF 5.23.0 values for a 440 Hz sine, 0.5 amplitude, 1 s.
    #[test]
    fn reference_vector_of_the_spec() {
        let spec = e2b_spec();
        let x: Vec<f32> = (0..16_000)
            .map(|n| {
                (0.5 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 16_000.0).sin()) as f32
            })
            .collect();
        let mel = log_mel(&spec, &x);
        assert_eq!(mel.len(), 99 * 128);
        let bins = [0, 1, 5, 10, 14, 20, 64, 127];
        let expected: [(usize, [f32; 8]); 5] = [
            (
                0,
                [
                    -6.90776, 0.80856, 0.54321, 0.04963, 0.50865, 1.60782, -1.24126, -2.15303,
                ],
            ),
            (
                1,
                [
                    -6.90776, -4.01909, -4.95307, -3.91425, -2.90322, -0.33679, -6.39755, -6.90178,
                ],
            ),
            (
                2,
                [
                    -6.90776, -4.86176, -4.52751, -3.88410, -2.88198, -0.33496, -6.33543, -6.90266,
                ],
            ),
            (
                50,
                [
                    -6.90776, -3.82010, -6.83234, -3.93387, -2.91682, -0.33793, -6.45938, -6.90165,
                ],
            ),
            (
                98,
                [
                    -6.90776, -4.86175, -4.52751, -3.88410, -2.88198, -0.33496, -6.33543, -6.90266,
                ],
            ),
        ];
        for (frame, values) in expected {
            for (bin, want) in bins.iter().zip(values) {
                let got = mel[frame * 128 + bin];
                assert!(
                    (got - want).abs() < 2e-4,
                    "frame {frame} bin {bin}: {got} vs {want}"
                );
            }
        }
        let frame50 = &mel[50 * 128..51 * 128];
        let argmax = (0..128)
            .max_by(|&a, &b| frame50[a].total_cmp(&frame50[b]))
            .unwrap();
        assert_eq!(argmax, 24);
        let sum: f64 = mel.iter().map(|&v| v as f64).sum();
        assert!((sum - -63570.99).abs() < 0.5, "{sum}");
    }

    #[test]
    fn chunking_never_changes_a_frame() {
        let spec = e2b_spec();
        let x: Vec<f32> = (0..9_999)
            .map(|n| ((n * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3)
            .collect();
        let whole = log_mel(&spec, &x);
        for chunk in [1, 2, 159, 160, 161, 320, 1000, 4096] {
            let mut ex = MelExtractor::new(spec.clone());
            let mut out = Vec::new();
            for c in x.chunks(chunk) {
                ex.push(c, &mut out);
            }
            assert_eq!(out, whole, "chunk {chunk}");
        }
    }
}
