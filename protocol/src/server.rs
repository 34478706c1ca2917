//! Server → client text messages of the native protocol.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ErrorCode, ProtocolError};
use crate::json::Envelope;
use crate::limits::Limits;

/// A server → client text message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The session is open; audio may flow.
    Ready(Ready),
    /// Voice activity began.
    SpeechStarted(SpeechStarted),
    /// Current hypothesis of the open segment.
    Partial(Partial),
    /// A closed segment; its text never changes.
    Final(Final),
    /// Endpoint silence reached (sent after the segment's `final`).
    SpeechStopped(SpeechStopped),
    /// A `flush` has been fully processed.
    Flushed(Flushed),
    /// Something was rejected or failed.
    Error(ErrorMessage),
    /// Last message of every session.
    Closed(Closed),
}

impl ServerMessage {
    /// The `type` values of protocol v1.
    pub const TYPES: [&'static str; 8] = [
        "ready",
        "speech_started",
        "partial",
        "final",
        "speech_stopped",
        "flushed",
        "error",
        "closed",
    ];

    /// JSON text of this message (what goes in the WebSocket text frame).
    ///
    /// Times and latencies must be finite: serde_json writes NaN and infinities as `null`,
    /// which clients reject.
    pub fn to_json(&self) -> String {
        // Plain structs with string keys only: serialisation has no failure path in practice,
        // but a server must never panic on output, so fall back to a fixed internal error.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"message serialisation failed","fatal":true}"#
                .to_owned()
        })
    }
}

/// The `ready` message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// Protocol version of this session.
    pub v: u32,
    /// Server-chosen id; keep it to resume.
    pub session_id: String,
    /// Name of the model serving the session.
    pub model: String,
    /// Whether this `start` resumed an earlier session.
    pub resumed: bool,
    /// Sample frames of the session the server holds; on resume, send audio from here on.
    pub acked_samples: u64,
    /// Effective endpointing silence in ms (0: off).
    pub endpointing_ms: u32,
    /// Server limits.
    pub limits: Limits,
}

/// The `speech_started` message.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeechStarted {
    /// Stream time (s) where the kept audio of the utterance begins (pre-roll included).
    pub at: f64,
}

/// The `speech_stopped` message.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeechStopped {
    /// Stream time (s) of the end of speech.
    pub at: f64,
}

/// The `partial` message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Segment id: per session, from 0, increasing by one.
    pub segment_id: u64,
    /// Text that will not change again; only grows between partials of a segment.
    pub committed: String,
    /// Text after `committed` that may still change. Display text is
    /// `committed + tentative` (plain concatenation).
    pub tentative: String,
    /// Stream time (s) where the segment begins.
    pub start: f64,
    /// Stream time (s) of the last audio this hypothesis covers.
    pub end: f64,
    /// Sample frames received from the client when this was sent.
    pub acked_samples: u64,
    /// Seconds of received audio not yet processed when this was sent.
    pub lag_s: f64,
    /// Seconds from the arrival of the audio at `end` to the sending of this message.
    pub emit_latency_s: f64,
}

impl Partial {
    /// `committed + tentative`.
    pub fn text(&self) -> String {
        format!("{}{}", self.committed, self.tentative)
    }
}

/// The `final` message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Final {
    /// Segment id (same as its partials).
    pub segment_id: u64,
    /// Final text of the segment; starts with the last partial's `committed`.
    pub text: String,
    /// Stream time (s) where the segment begins.
    pub start: f64,
    /// Stream time (s) where the segment ends.
    pub end: f64,
    /// Sample frames received from the client when this was sent.
    pub acked_samples: u64,
    /// Seconds of received audio not yet processed when this was sent.
    pub lag_s: f64,
    /// Seconds from the arrival of the audio at `end` to the sending of this message.
    pub emit_latency_s: f64,
}

/// The `flushed` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flushed {
    /// The `id` of the `flush` this answers, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Sample frames received (and now all finalized) when the flush was processed.
    pub acked_samples: u64,
}

/// The `error` message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Whether the session ends (a `closed` follows).
    pub fatal: bool,
    /// The offending field, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `server_busy`: seconds after which a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u32>,
}

impl ErrorMessage {
    /// The error message for `err`, with `fatal` from the code's documented fatality.
    pub fn from_error(err: &ProtocolError, started: bool) -> Self {
        Self {
            code: err.code,
            message: err.message.clone(),
            fatal: err.code.is_fatal(started),
            field: err.field.clone(),
            retry_after_s: None,
        }
    }
}

impl From<ErrorMessage> for ServerMessage {
    fn from(e: ErrorMessage) -> Self {
        ServerMessage::Error(e)
    }
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `close`.
    ClientClose,
    /// A fatal error, sent in the `error` message just before.
    Error(ErrorCode),
}

impl CloseReason {
    /// Wire spelling: `client_close` or the error code.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::Error(code) => code.as_str(),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CloseReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CloseReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "client_close" {
            return Ok(CloseReason::ClientClose);
        }
        let code = ErrorCode::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(&s))?;
        Ok(CloseReason::Error(code))
    }
}

/// The `closed` message: session summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Closed {
    /// Why the session ended.
    pub reason: CloseReason,
    /// Sample frames received over the whole session.
    pub acked_samples: u64,
    /// Seconds of audio received (`acked_samples / sample_rate`).
    pub audio_s: f64,
    /// Number of `final` segments sent.
    pub segments: u64,
}

/// Parses one text frame from the server (for clients).
///
/// Returns `Ok(None)` for a well-formed message of a `type` this build does not know: clients
/// must skip those, because servers add message types within v1.
pub fn parse_server_text(text: &str) -> Result<Option<ServerMessage>, ProtocolError> {
    // Server messages are small except `ready`; a generous cap still bounds the work.
    let envelope = Envelope::parse(text, 1024 * 1024)?;
    if !ServerMessage::TYPES.contains(&envelope.kind.as_str()) {
        return Ok(None);
    }
    envelope.decode().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_round_trips() {
        for reason in [
            CloseReason::ClientClose,
            CloseReason::Error(ErrorCode::IdleTimeout),
        ] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(serde_json::from_str::<CloseReason>(&json).unwrap(), reason);
        }
        let unknown: CloseReason = serde_json::from_str("\"evicted\"").unwrap();
        assert_eq!(unknown, CloseReason::Error(ErrorCode::Unknown));
    }

    #[test]
    fn clients_skip_unknown_server_types() {
        assert_eq!(
            parse_server_text(r#"{"type":"word","text":"hi"}"#).unwrap(),
            None
        );
        assert!(parse_server_text(r#"{"type":"final"}"#).is_err());
    }
}
