//! The frame-level voice detector behind the gate.

use super::VadError;

/// Sample rate every detector in Hark runs at.
pub const SAMPLE_RATE: u32 = 16_000;

/// Scores fixed-length frames of 16 kHz mono audio for speech.
///
/// One detector belongs to one stream: it keeps state from frame to frame, so it is `Send`
/// (a stream may move between threads) but never shared.
pub trait VoiceDetector: Send {
    /// Samples per frame; every frame passed to [`speech_score`](Self::speech_score) has
    /// exactly this many.
    fn frame_len(&self) -> usize;

    /// Speech score of the next frame of the stream, in `[0, 1]`.
    ///
    /// Probability detectors return a probability; decision detectors return 0 or 1.
    fn speech_score(&mut self, frame: &[i16]) -> Result<f32, VadError>;
}

impl<D: VoiceDetector + ?Sized> VoiceDetector for Box<D> {
    fn frame_len(&self) -> usize {
        (**self).frame_len()
    }

    fn speech_score(&mut self, frame: &[i16]) -> Result<f32, VadError> {
        (**self).speech_score(frame)
    }
}

/// Text of a caught panic payload, for [`VadError::DetectorFailed`].
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}
