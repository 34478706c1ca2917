//! Client → server text messages of the native protocol and their parser.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ProtocolError, excerpt};
use crate::json::Envelope;
use crate::pcm::Encoding;

/// Longest text frame the native parser accepts. Control messages are a few hundred bytes;
/// the bound keeps the work done per frame small no matter what a client sends.
pub const MAX_CONTROL_BYTES: usize = 16 * 1024;

/// A client → server text message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Opens the session; must be the first message.
    Start(Start),
    /// Finalizes the open segment now and keeps the stream open.
    Flush(Flush),
    /// Finalizes the open segment, then the server sends `closed` and closes the socket.
    Close,
    /// Resets the idle timer; no reply.
    Keepalive,
}

impl ClientMessage {
    /// The `type` values of protocol v1.
    pub const TYPES: [&'static str; 4] = ["start", "flush", "close", "keepalive"];
}

/// What to do with the speech.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Text in the spoken language.
    #[default]
    Transcribe,
    /// Text in `target_language`.
    Translate,
}

/// The `start` message: audio format and session options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// Protocol version the client speaks; defaults to 1.
    #[serde(default = "default_version")]
    pub v: u32,
    /// Sample rate of the binary frames, in Hz.
    pub sample_rate: u32,
    /// Sample encoding of the binary frames.
    pub encoding: Encoding,
    /// Interleaved channels per sample frame; the server mixes them to mono. Defaults to 1.
    #[serde(default = "default_channels")]
    pub channels: u16,
    /// Spoken language as a BCP 47 tag (`"en"`, `"pt-BR"`); absent or null: detect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Transcribe or translate; defaults to transcribe.
    #[serde(default)]
    pub task: Task,
    /// Output language for `translate` (required there, refused for `transcribe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_language: Option<String>,
    /// Whether to send `partial` messages; defaults to true.
    #[serde(default = "default_true")]
    pub partials: bool,
    /// Silence (ms) that closes a segment; 0 turns silence endpointing off (segments close on
    /// `flush`, `close` or the 30 s segment cap); absent or null: the server default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpointing_ms: Option<u32>,
    /// Free-form client-chosen name for logs and metrics (`"captions"`, `"dictation"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Continue an earlier session instead of opening a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// What the audio is: `live` (the default) or a `file` sent faster than real time, for
    /// which the server has no real-time lag to warn about.
    #[serde(default, skip_serializing_if = "AudioSource::is_live")]
    pub source: AudioSource,
}

/// Where a session's audio comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioSource {
    /// Captured as it happens: a backlog means the server is behind real time.
    #[default]
    Live,
    /// A recording sent as fast as the server takes it: a backlog is expected.
    File,
}

impl AudioSource {
    pub fn is_live(&self) -> bool {
        *self == AudioSource::Live
    }
}

impl Start {
    /// A minimal `start` for the given format with every option at its default.
    pub fn new(sample_rate: u32, encoding: Encoding, channels: u16) -> Self {
        Self {
            v: crate::PROTOCOL_VERSION,
            sample_rate,
            encoding,
            channels,
            language: None,
            task: Task::Transcribe,
            target_language: None,
            partials: true,
            endpointing_ms: None,
            label: None,
            resume: None,
            source: AudioSource::Live,
        }
    }
}

/// Resume request inside `start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// `session_id` from the earlier `ready`.
    pub session_id: String,
    /// Highest `segment_id` whose `final` the client received; the server replays later
    /// finals it still holds. Absent or null: none received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_final_segment_id: Option<u64>,
}

/// The `flush` message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flush {
    /// Client-chosen tag echoed in the matching `flushed` reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn default_version() -> u32 {
    crate::PROTOCOL_VERSION
}

fn default_channels() -> u16 {
    1
}

fn default_true() -> bool {
    true
}

/// Parses one text frame of the native protocol.
///
/// Never panics and does work linear in `text.len()`, which is capped at
/// [`MAX_CONTROL_BYTES`]. Unknown fields are ignored; an unknown `type` is `unknown_type`;
/// an `encoding` string that is not an encoding of v1 is `unsupported_encoding` (not a
/// schema error, so a client learns what to change). Values are range-checked later by
/// [`validate_start`](crate::validate_start), which needs the server limits.
pub fn parse_client_text(text: &str) -> Result<ClientMessage, ProtocolError> {
    let envelope = Envelope::parse(text, MAX_CONTROL_BYTES)?;
    match envelope.kind.as_str() {
        "start" => {
            if let Some(name) = envelope.str_field("encoding")
                && Encoding::from_name(name).is_none()
            {
                return Err(ProtocolError::new(
                    ErrorCode::UnsupportedEncoding,
                    format!(
                        "encoding `{}` is not supported (use s16le or f32le)",
                        excerpt(name, 32)
                    ),
                )
                .with_field("encoding"));
            }
            envelope.decode()
        }
        "flush" | "close" | "keepalive" => envelope.decode(),
        _ => Err(envelope.unknown(&ClientMessage::TYPES)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_start_takes_defaults() {
        let msg = parse_client_text(r#"{"type":"start","sample_rate":16000,"encoding":"s16le"}"#)
            .unwrap();
        assert_eq!(
            msg,
            ClientMessage::Start(Start::new(16_000, Encoding::S16le, 1))
        );
    }

    #[test]
    fn unit_messages_ignore_extra_fields() {
        assert_eq!(
            parse_client_text(r#"{"type":"close","why":"done"}"#).unwrap(),
            ClientMessage::Close
        );
        assert_eq!(
            parse_client_text(r#"{"type":"keepalive","t":1}"#).unwrap(),
            ClientMessage::Keepalive
        );
    }
}
