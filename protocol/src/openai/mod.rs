//! OpenAI Realtime API, transcription sessions: the client and server events, in both the GA
//! shape (`session.update` with `session.type = "transcription"`) and the older beta shape
//! (`transcription_session.update`).
//!
//! Field names and nesting follow OpenAI's published event reference; unknown fields in
//! client events are ignored. The daemon keeps a [`TranscriptionConfig`] per session, applies
//! updates to it, answers with its [`session`](TranscriptionConfig::session) object, decodes
//! appends with [`decode_audio`] and turns the engine's committed text into deltas with a
//! [`DeltaTracker`].

mod audio;
mod client;
mod delta;
mod g711;
mod server;
mod session;

pub use audio::{InputEncoding, decode_audio, decode_audio_as, encode_audio};
pub use client::{
    AudioFormat, AudioInputUpdate, AudioUpdate, BetaSessionUpdate, ClientEvent, Eagerness,
    MAX_EVENT_BYTES, NoiseReduction, RejectedEvent, SessionUpdate, Transcription, TurnDetection,
    TurnDetectionType, parse_client_event,
};
pub use delta::{DeltaTracker, Retraction};
pub use g711::{alaw_to_linear, ulaw_to_linear};
pub use server::{
    BetaSession, ClientSecret, ErrorDetail, Item, ItemContent, LogProb, ServerEvent, Session,
    SessionAudio, SessionAudioInput, Usage, openai_code,
};
pub use session::{DELAYS, LOGPROBS_INCLUDE, SESSION_OBJECT, TranscriptionConfig};

/// OpenAI's input sample rate (and the only one it accepts).
pub const DEFAULT_SAMPLE_RATE: u32 = 24_000;

/// HTTP path of the OpenAI-compatible WebSocket endpoint (`?intent=transcription`).
pub const REALTIME_PATH: &str = "/v1/realtime";
