//! Voice-activity gating: only speech reaches the model.
//!
//! [`SpeechGate`] is fed a stream's 16 kHz mono audio and emits [`GateEvent`]s: segment
//! start, the segment's audio (pre-roll first), splits of over-long segments and segment end.
//! Silence and steady noise produce no events, hence no encoder or decoder work and no text.
//! Frames are scored by a [`VoiceDetector`]: [`WebRtcVad`] by default, `EarshotVad` with the
//! `earshot` feature. [`speech_segments`] cuts a whole recording the same way, for offline
//! transcription.

mod classify;
mod config;
mod detector;
#[cfg(feature = "earshot")]
mod earshot;
mod error;
mod floor;
mod gate;
mod history;
mod segments;
mod split;
mod webrtc;

#[cfg(test)]
mod tests;

pub use config::{DetectorKind, GateConfig};
pub use detector::{SAMPLE_RATE, VoiceDetector};
#[cfg(feature = "earshot")]
pub use earshot::{EARSHOT_FRAME_LEN, EarshotVad};
pub use error::VadError;
pub use gate::{GateEvent, SpeechGate};
pub use segments::speech_segments;
pub use webrtc::WebRtcVad;
