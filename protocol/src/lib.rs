//! Hark's wire types: serde types and pure functions, no I/O.
//!
//! Two protocols share this crate:
//!
//! * the native protocol v1 (WebSocket at [`LISTEN_PATH`]): a `start` text message, binary
//!   frames of raw PCM, control messages (`flush`, `close`, `keepalive`) and server messages
//!   carrying the engine events (`ready`, `speech_started`, `partial`, `final`,
//!   `speech_stopped`, `flushed`, `error`, `closed`). See the crate README for the full
//!   specification with examples.
//! * [`openai`]: OpenAI Realtime transcription-session events, GA and beta shapes.
//!
//! The daemon feeds every text frame to [`parse_client_text`], checks `start` with
//! [`validate_start`], bounds binary frames with [`Limits::check_frame`] and decodes them with
//! [`decode_pcm`]; every failure is a [`ProtocolError`] with a stable [`ErrorCode`].
//!
//! ```
//! use hark_protocol::{ClientMessage, ErrorMessage, Limits, ServerMessage};
//!
//! let limits = Limits::default();
//! let text = r#"{"type":"start","sample_rate":16000,"encoding":"s16le"}"#;
//! let ClientMessage::Start(start) = hark_protocol::parse_client_text(text)? else {
//!     panic!("not a start");
//! };
//! hark_protocol::validate_start(&start, &limits)?;
//!
//! let frame = [0x00, 0x00, 0x00, 0x40]; // two s16le samples
//! limits.check_frame(frame.len())?;
//! let samples = hark_protocol::decode_pcm(start.encoding, start.channels, &frame)?;
//! assert_eq!(samples, [0.0, 0.5]);
//!
//! // A rejected frame becomes an `error` message; here it ends the session.
//! let err = hark_protocol::decode_pcm(start.encoding, start.channels, &[0; 3]).unwrap_err();
//! let reply = ServerMessage::from(ErrorMessage::from_error(&err, true));
//! assert!(reply.to_json().starts_with(r#"{"type":"error","code":"odd_byte_count""#));
//! # Ok::<(), hark_protocol::ProtocolError>(())
//! ```

mod client;
mod error;
mod json;
mod limits;
pub mod openai;
mod pcm;
mod server;

pub use client::{
    AudioSource, ClientMessage, Flush, MAX_CONTROL_BYTES, Resume, Start, Task, parse_client_text,
};
pub use error::{ErrorCode, Fatality, ProtocolError};
pub use limits::{
    DEFAULT_ENDPOINTING_MS, Limits, MAX_ENDPOINTING_MS, MAX_LABEL_BYTES, MAX_LANGUAGE_BYTES,
    MAX_SESSION_ID_BYTES, MIN_ENDPOINTING_MS, check_language, effective_endpointing_ms,
    validate_start,
};
pub use pcm::{Encoding, decode_pcm, encode_pcm, frame_count, frames_to_seconds};
pub use server::{
    CloseReason, Closed, ErrorMessage, Final, Flushed, Partial, Ready, ServerMessage,
    SpeechStarted, SpeechStopped, parse_server_text,
};

/// Version of the native protocol this crate implements.
pub const PROTOCOL_VERSION: u32 = 1;

/// HTTP path of the native protocol's WebSocket endpoint.
pub const LISTEN_PATH: &str = "/v1/listen";
