//! Per-frame verdict: detector score combined with an energy-over-noise-floor test.

use super::VadError;
use super::config::GateConfig;
use super::detector::VoiceDetector;
use super::floor::{NoiseFloor, power_db};

/// What the gate needs to know about one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict {
    /// Mean-square power of the frame above 100 Hz.
    pub power: f32,
    /// Voiced by the opening criterion (`speech_threshold`).
    pub onset: bool,
    /// Voiced by the keep-open criterion (`sustain_threshold`).
    pub sustain: bool,
}

/// Frames audio for the detector and decides which frames are voiced.
pub(crate) struct Classifier {
    detector: Box<dyn VoiceDetector>,
    high_pass: HighPass,
    floor: NoiseFloor,
    pcm: Vec<i16>,
    speech_threshold: f32,
    sustain_threshold: f32,
    noise_margin_db: f32,
    min_energy_dbfs: f32,
}

impl Classifier {
    pub(crate) fn new(config: &GateConfig, detector: Box<dyn VoiceDetector>) -> Self {
        let frame_len = detector.frame_len();
        let floor_frames = (u64::from(config.noise_floor_window_ms) * 16 / frame_len as u64)
            .clamp(1, u64::from(u32::MAX)) as u32;
        Self {
            detector,
            high_pass: HighPass::new(HIGH_PASS_HZ),
            floor: NoiseFloor::new(floor_frames),
            pcm: vec![0; frame_len],
            speech_threshold: config.speech_threshold,
            sustain_threshold: config.sustain_threshold,
            noise_margin_db: config.noise_margin_db,
            min_energy_dbfs: config.min_energy_dbfs,
        }
    }

    pub(crate) fn frame_len(&self) -> usize {
        self.pcm.len()
    }

    /// Judges the next frame, given as two slices (the history ring may wrap) whose lengths
    /// add up to [`frame_len`](Self::frame_len).
    pub(crate) fn classify(&mut self, a: &[f32], b: &[f32]) -> Result<Verdict, VadError> {
        let mut power = 0.0f32;
        for (dst, &s) in self.pcm.iter_mut().zip(a.iter().chain(b)) {
            let band = self.high_pass.process(s);
            power += band * band;
            *dst = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        power /= self.pcm.len() as f32;
        // The detector sees every frame, loud or not, so its adaptive state follows the stream.
        let score = self.detector.speech_score(&self.pcm)?;
        let energy_db = power_db(power);
        let floor_db = self.floor.update(energy_db);
        let loud =
            energy_db >= floor_db + self.noise_margin_db && energy_db >= self.min_energy_dbfs;
        Ok(Verdict {
            power,
            onset: loud && score >= self.speech_threshold,
            sustain: loud && score >= self.sustain_threshold,
        })
    }
}

/// Energy is measured above this frequency: rumble, handling noise and mains hum below it
/// carry no speech but would dominate the energy of a frame and make it swing.
const HIGH_PASS_HZ: f64 = 100.0;

/// Second-order Butterworth high-pass (RBJ biquad, transposed direct form II).
struct HighPass {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl HighPass {
    fn new(cutoff_hz: f64) -> Self {
        let w0 = 2.0 * std::f64::consts::PI * cutoff_hz / f64::from(super::SAMPLE_RATE);
        let alpha = w0.sin() / std::f64::consts::SQRT_2; // Q = 1/sqrt(2)
        let a0 = 1.0 + alpha;
        let cos = w0.cos();
        let b0 = (1.0 + cos) / 2.0 / a0;
        Self {
            b: [b0, -2.0 * b0, b0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    fn process(&mut self, x: f32) -> f32 {
        let x = f64::from(x);
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y as f32
    }
}

#[cfg(test)]
mod tests {
    use super::HighPass;

    /// RMS gain of the filter on a sine, after the transient.
    fn gain(hz: f64) -> f64 {
        let mut f = HighPass::new(100.0);
        let x = |i: usize| (2.0 * std::f64::consts::PI * hz * i as f64 / 16_000.0).sin() as f32;
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..32_000 {
            let y = f.process(x(i));
            if i >= 16_000 {
                num += f64::from(y).powi(2);
                den += f64::from(x(i)).powi(2);
            }
        }
        (num / den).sqrt()
    }

    #[test]
    fn high_pass_keeps_speech_and_removes_rumble() {
        assert!(
            (gain(100.0) - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.01,
            "-3 dB at cutoff"
        );
        assert!(gain(1_000.0) > 0.99);
        assert!(gain(25.0) < 0.07, "{}", gain(25.0));
    }
}
