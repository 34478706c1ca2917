//! [`VoiceDetector`] over earshot, a small pure-Rust neural voice detector.

use std::panic::{AssertUnwindSafe, catch_unwind};

use earshot::Detector;

use super::VadError;
use super::detector::{VoiceDetector, panic_message};

/// Samples per earshot frame: 16 ms at 16 kHz, fixed by the network.
pub const EARSHOT_FRAME_LEN: usize = 256;

/// Earshot's neural detector; scores are speech probabilities.
pub struct EarshotVad {
    // Boxed: the detector keeps about 8 KiB of state inline.
    detector: Box<Detector>,
    poisoned: bool,
}

impl EarshotVad {
    /// A fresh detector for one stream.
    pub fn new() -> Self {
        Self {
            detector: Detector::default_boxed(),
            poisoned: false,
        }
    }
}

impl Default for EarshotVad {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceDetector for EarshotVad {
    fn frame_len(&self) -> usize {
        EARSHOT_FRAME_LEN
    }

    fn speech_score(&mut self, frame: &[i16]) -> Result<f32, VadError> {
        if self.poisoned {
            return Err(VadError::Poisoned);
        }
        if frame.len() != EARSHOT_FRAME_LEN {
            return Err(VadError::FrameLength {
                expected: EARSHOT_FRAME_LEN,
                got: frame.len(),
            });
        }
        let detector = &mut self.detector;
        match catch_unwind(AssertUnwindSafe(|| detector.predict_i16(frame))) {
            Ok(score) if (0.0..=1.0).contains(&score) => Ok(score),
            Ok(score) => {
                self.poisoned = true;
                Err(VadError::DetectorFailed(format!(
                    "earshot returned score {score}"
                )))
            }
            Err(payload) => {
                self.poisoned = true;
                Err(VadError::DetectorFailed(panic_message(&*payload)))
            }
        }
    }
}
