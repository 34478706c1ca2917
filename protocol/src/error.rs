//! Stable error codes and the error type every parser and validator in this crate returns.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Machine-readable reason a message, a frame or a session was rejected.
///
/// Serialised as a snake_case string (`"odd_byte_count"`). The set only grows within protocol
/// v1; a client meeting a code it does not know reads it as [`ErrorCode::Unknown`] and should
/// rely on the `fatal` flag of the error message that carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A text frame is not valid JSON (syntax error, truncation, nesting too deep, a number
    /// outside the f64 range).
    BadJson,
    /// Valid JSON that does not fit the schema of its `type`: not an object, missing `type`,
    /// a missing required field, a field of the wrong JSON type or out of its integer range.
    BadMessage,
    /// A `type` this server does not know. The message is ignored.
    UnknownType,
    /// A text frame or event longer than the parser accepts.
    MessageTooLarge,
    /// `start.v` names a protocol version this server does not speak.
    UnsupportedVersion,
    /// The sample rate is not one of those listed in the server limits.
    UnsupportedSampleRate,
    /// The audio encoding is not one of those listed in the server limits.
    UnsupportedEncoding,
    /// The channel count is zero or above the server limit.
    UnsupportedChannels,
    /// A field has the right type but a value the server does not accept (language tag,
    /// endpointing range, label length, task/target_language mismatch, VAD threshold…).
    InvalidField,
    /// A binary (audio) frame arrived before `start`, so its format is unknown.
    AudioBeforeStart,
    /// An audio frame whose length is not a whole number of sample frames
    /// (bytes per sample × channels).
    OddByteCount,
    /// An audio frame larger than `limits.max_frame_bytes`.
    FrameTooLarge,
    /// An `f32le` sample that is NaN or infinite.
    NonFiniteSample,
    /// A binary frame on an endpoint that only accepts text frames (OpenAI-compatible endpoint).
    TextExpected,
    /// `input_audio_buffer.append` audio that is not valid base64.
    InvalidBase64,
    /// A well-formed message that is not valid in the session's current state (a second
    /// `start`, `flush` before `start`, audio after `close`, `commit` of an empty buffer).
    UnexpectedMessage,
    /// Nothing (audio, control message or WebSocket ping) arrived within the idle timeout.
    IdleTimeout,
    /// The session reached `limits.max_session_s` of audio.
    SessionTooLong,
    /// Every stream slot is taken; try again later (see `retry_after_s`).
    ServerBusy,
    /// Missing or wrong credentials.
    Unauthorized,
    /// A resume named a session that does not exist, has expired, or does not match the
    /// new `start`; or the server does not support resume.
    ResumeFailed,
    /// The server fell behind real time by more than its warning threshold. Informational.
    Lagging,
    /// The server is stopping.
    ShuttingDown,
    /// A server-side failure (the model or the engine failed for this stream).
    Internal,
    /// A code this build does not know (sent by a newer server). Never sent by this crate.
    #[serde(other)]
    Unknown,
}

/// When an error ends the session (in the native v1 protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fatality {
    /// The session is always closed after this error.
    Always,
    /// Fatal before the session has started (`ready` not yet sent), ignored after.
    BeforeStart,
    /// Never fatal: the offending message is ignored and the session goes on.
    Never,
}

impl ErrorCode {
    /// Every code this crate emits, in documentation order.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::BadJson,
        ErrorCode::BadMessage,
        ErrorCode::UnknownType,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnsupportedSampleRate,
        ErrorCode::UnsupportedEncoding,
        ErrorCode::UnsupportedChannels,
        ErrorCode::InvalidField,
        ErrorCode::AudioBeforeStart,
        ErrorCode::OddByteCount,
        ErrorCode::FrameTooLarge,
        ErrorCode::NonFiniteSample,
        ErrorCode::TextExpected,
        ErrorCode::InvalidBase64,
        ErrorCode::UnexpectedMessage,
        ErrorCode::IdleTimeout,
        ErrorCode::SessionTooLong,
        ErrorCode::ServerBusy,
        ErrorCode::Unauthorized,
        ErrorCode::ResumeFailed,
        ErrorCode::Lagging,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// The wire spelling of this code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnsupportedSampleRate => "unsupported_sample_rate",
            ErrorCode::UnsupportedEncoding => "unsupported_encoding",
            ErrorCode::UnsupportedChannels => "unsupported_channels",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::AudioBeforeStart => "audio_before_start",
            ErrorCode::OddByteCount => "odd_byte_count",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::NonFiniteSample => "non_finite_sample",
            ErrorCode::TextExpected => "text_expected",
            ErrorCode::InvalidBase64 => "invalid_base64",
            ErrorCode::UnexpectedMessage => "unexpected_message",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::SessionTooLong => "session_too_long",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ResumeFailed => "resume_failed",
            ErrorCode::Lagging => "lagging",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// Whether this error ends a native v1 session.
    pub fn fatality(self) -> Fatality {
        match self {
            ErrorCode::BadJson | ErrorCode::BadMessage => Fatality::BeforeStart,
            ErrorCode::UnknownType
            | ErrorCode::UnexpectedMessage
            | ErrorCode::Lagging
            | ErrorCode::InvalidBase64 => Fatality::Never,
            _ => Fatality::Always,
        }
    }

    /// Whether this error ends the session, given whether `ready` has been sent.
    pub fn is_fatal(self, started: bool) -> bool {
        match self.fatality() {
            Fatality::Always => true,
            Fatality::BeforeStart => !started,
            Fatality::Never => false,
        }
    }

    /// The WebSocket close code (RFC 6455 §7.4) the server uses when this error ends a session.
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::MessageTooLarge | ErrorCode::FrameTooLarge => 1009,
            ErrorCode::TextExpected => 1003,
            ErrorCode::ServerBusy => 1013,
            ErrorCode::ShuttingDown => 1001,
            ErrorCode::Internal | ErrorCode::Unknown => 1011,
            _ => 1008,
        }
    }

    /// Whether the client (rather than the server) caused this error.
    pub fn is_client_fault(self) -> bool {
        !matches!(
            self,
            ErrorCode::ServerBusy
                | ErrorCode::ShuttingDown
                | ErrorCode::Internal
                | ErrorCode::Lagging
                | ErrorCode::Unknown
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected message, frame or configuration: a stable code, a human message and, where one
/// field is to blame, its name (`"sample_rate"`, `"session.audio.input.format.rate"`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The offending field, when there is one.
    pub field: Option<String>,
}

impl ProtocolError {
    /// An error with no field attached.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// At most `max` bytes of `s` (cut at a character boundary), for quoting client input in
/// error messages without echoing megabytes back.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn unknown_codes_from_newer_servers_still_parse() {
        let code: ErrorCode = serde_json::from_str("\"quota_exceeded\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown);
    }

    #[test]
    fn fatality_depends_on_phase_only_where_documented() {
        assert!(ErrorCode::BadJson.is_fatal(false));
        assert!(!ErrorCode::BadJson.is_fatal(true));
        assert!(!ErrorCode::UnknownType.is_fatal(false));
        assert!(ErrorCode::OddByteCount.is_fatal(true));
    }

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        assert_eq!(excerpt("héllo", 2), "h…");
        assert_eq!(excerpt("abc", 3), "abc");
    }
}
