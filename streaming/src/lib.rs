//! Hark's streaming engine: turns 16 kHz mono audio into segments and hypotheses.
//!
//! [`vad`] decides which audio reaches the model at all: only open speech segments are
//! passed on, so silence costs no encoder or decoder work and can produce no text.
//! [`segment`] runs one utterance through the model incrementally (streaming encoder,
//! persistent KV cache, speculative re-decoding, finals from the audio alone); [`commit`]
//! decides which partial text is stable;
//! [`stream`] ties them into one stream's state machine emitting [`Event`]s. [`engine`] serves
//! many streams on worker threads (harkd's one serving loop), with [`batcher`] running their
//! decoder passes together when batching is on.

pub mod batcher;
pub mod commit;
pub mod engine;
pub mod events;
pub mod segment;
pub mod stream;
pub mod vad;

pub use commit::Stability;
pub use engine::{Engine, EngineConfig, Output, StreamLink};
pub use events::{ErrorCode, Event, Final, FinalReason, Partial, TokenLogprob};
pub use stream::{Stream, StreamConfig, StreamError};

#[cfg(feature = "earshot")]
pub use vad::EarshotVad;
pub use vad::{
    DetectorKind, GateConfig, GateEvent, SpeechGate, VadError, VoiceDetector, WebRtcVad,
};
