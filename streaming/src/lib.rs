//! Hark's streaming engine: turns 16 kHz mono audio into segments and hypotheses.
//!
//! [`vad`] decides which audio reaches the model at all: only open speech segments are
//! passed on, so silence costs no encoder or decoder work and can produce no text.

pub mod vad;

#[cfg(feature = "earshot")]
pub use vad::EarshotVad;
pub use vad::{
    DetectorKind, GateConfig, GateEvent, SpeechGate, VadError, VoiceDetector, WebRtcVad,
};
