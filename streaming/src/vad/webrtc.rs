//! [`VoiceDetector`] over libfvad (the WebRTC GMM voice detector) through `webrtc-vad`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use webrtc_vad::{SampleRate, Vad, VadMode};

use super::VadError;
use super::detector::{SAMPLE_RATE, VoiceDetector, panic_message};

/// Owns one libfvad instance.
///
/// SAFETY of `Send`: `Vad` holds only a pointer to a heap block that `fvad_new` allocated for
/// this instance alone; libfvad keeps no global or thread-local state and every call goes
/// through `&mut Vad`. Moving the sole owner to another thread is therefore sound. `Sync` is
/// not implemented, so the instance is never reached from two threads at once.
struct OwnedVad(Vad);

// SAFETY: see the type's documentation above.
unsafe impl Send for OwnedVad {}

/// The WebRTC voice detector at 16 kHz: 10, 20 or 30 ms frames, aggressiveness 0–3.
///
/// Every argument is checked before it reaches the C library, so the wrapper's own panics
/// (empty frame, bad length) cannot happen; any other panic is caught and reported as
/// [`VadError::DetectorFailed`], after which the detector refuses further frames.
pub struct WebRtcVad {
    vad: OwnedVad,
    frame_len: usize,
    poisoned: bool,
}

impl WebRtcVad {
    /// A detector with `aggressiveness` 0 (keeps most speech) … 3 (rejects most non-speech)
    /// and frames of `frame_ms` (10, 20 or 30).
    pub fn new(aggressiveness: u8, frame_ms: u32) -> Result<Self, VadError> {
        let mode = match aggressiveness {
            0 => VadMode::Quality,
            1 => VadMode::LowBitrate,
            2 => VadMode::Aggressive,
            3 => VadMode::VeryAggressive,
            other => {
                return Err(VadError::InvalidConfig {
                    field: "aggressiveness",
                    reason: format!("must be 0, 1, 2 or 3, got {other}"),
                });
            }
        };
        if !matches!(frame_ms, 10 | 20 | 30) {
            return Err(VadError::InvalidConfig {
                field: "frame_ms",
                reason: format!("webrtc frames are 10, 20 or 30 ms, got {frame_ms}"),
            });
        }
        // `new_with_rate_and_mode` panics if the C allocation fails.
        let vad = catch_unwind(|| Vad::new_with_rate_and_mode(SampleRate::Rate16kHz, mode))
            .map_err(|p| VadError::DetectorFailed(panic_message(&*p)))?;
        Ok(Self {
            vad: OwnedVad(vad),
            frame_len: (SAMPLE_RATE / 1000 * frame_ms) as usize,
            poisoned: false,
        })
    }
}

impl VoiceDetector for WebRtcVad {
    fn frame_len(&self) -> usize {
        self.frame_len
    }

    fn speech_score(&mut self, frame: &[i16]) -> Result<f32, VadError> {
        if self.poisoned {
            return Err(VadError::Poisoned);
        }
        if frame.len() != self.frame_len {
            return Err(VadError::FrameLength {
                expected: self.frame_len,
                got: frame.len(),
            });
        }
        // The instance is not observed again after a panic (it is poisoned), so unwind
        // safety holds.
        let vad = &mut self.vad.0;
        match catch_unwind(AssertUnwindSafe(|| vad.is_voice_segment(frame))) {
            Ok(Ok(true)) => Ok(1.0),
            Ok(Ok(false)) => Ok(0.0),
            // libfvad refuses only bad lengths, which were ruled out above.
            Ok(Err(())) => {
                self.poisoned = true;
                Err(VadError::DetectorFailed(
                    "libfvad refused a frame".to_owned(),
                ))
            }
            Err(payload) => {
                self.poisoned = true;
                Err(VadError::DetectorFailed(panic_message(&*payload)))
            }
        }
    }
}
