//! Client events of an OpenAI Realtime transcription session, and their parser.

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;
use crate::json::{Envelope, double_option};

/// Longest text frame accepted: OpenAI allows 15 MiB of base64 audio per append, plus room
/// for the envelope.
pub const MAX_EVENT_BYTES: usize = 15 * 1024 * 1024 + 4096;

/// A client → server event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    /// GA: `session.update` with a `session` of type `transcription`.
    #[serde(rename = "session.update")]
    SessionUpdate {
        /// Optional client-chosen id, echoed in errors about this event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The fields to change.
        session: SessionUpdate,
    },
    /// Beta: `transcription_session.update`.
    #[serde(rename = "transcription_session.update")]
    TranscriptionSessionUpdate {
        /// Optional client-chosen id, echoed in errors about this event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The fields to change.
        session: BetaSessionUpdate,
    },
    /// Appends base64 audio to the input buffer.
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend {
        /// Optional client-chosen id, echoed in errors about this event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Base64 of little-endian PCM16 mono at the session rate.
        audio: String,
    },
    /// Commits the buffer as one item (ends the current utterance).
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioBufferCommit {
        /// Optional client-chosen id, echoed in errors about this event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    /// Drops uncommitted audio.
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioBufferClear {
        /// Optional client-chosen id, echoed in errors about this event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
}

impl ClientEvent {
    /// The `type` values accepted on a transcription session.
    pub const TYPES: [&'static str; 5] = [
        "session.update",
        "transcription_session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
    ];

    /// The client-chosen `event_id`, if any.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            ClientEvent::SessionUpdate { event_id, .. }
            | ClientEvent::TranscriptionSessionUpdate { event_id, .. }
            | ClientEvent::InputAudioBufferAppend { event_id, .. }
            | ClientEvent::InputAudioBufferCommit { event_id }
            | ClientEvent::InputAudioBufferClear { event_id } => event_id.as_deref(),
        }
    }
}

/// GA `session` object of `session.update`. Absent fields are left unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionUpdate {
    /// `"transcription"` (a `"realtime"` session is refused: Hark only transcribes).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Audio settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioUpdate>,
    /// Extra outputs (`item.input_audio_transcription.logprobs`: per-token log probabilities
    /// on the transcription delta and `completed`).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub include: Option<Option<Vec<String>>>,
}

/// `session.audio` of `session.update`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioUpdate {
    /// Input audio settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<AudioInputUpdate>,
}

/// `session.audio.input` of `session.update`. For the tri-state fields, the outer `None`
/// means "absent: unchanged" and `Some(None)` means `null`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioInputUpdate {
    /// Input format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// Noise reduction; `null` turns it off.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub noise_reduction: Option<Option<NoiseReduction>>,
    /// Transcription settings; replaced as a whole when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<Transcription>,
    /// Turn detection; `null` means the client commits the buffer itself.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub turn_detection: Option<Option<TurnDetection>>,
}

/// GA audio format: `{"type":"audio/pcm","rate":24000}` (also `audio/pcmu`, `audio/pcma`,
/// which Hark refuses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFormat {
    /// MIME-like format name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Sample rate in Hz (OpenAI only allows 24000; Hark accepts its listed rates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
}

impl AudioFormat {
    /// The PCM16 format name.
    pub const PCM: &'static str = "audio/pcm";

    /// `{"type":"audio/pcm","rate":rate}`.
    pub fn pcm(rate: u32) -> Self {
        Self {
            kind: Self::PCM.to_owned(),
            rate: Some(rate),
        }
    }
}

/// Noise-reduction setting (`near_field`, `far_field`). Hark accepts and echoes it; its
/// front end does no separate noise reduction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseReduction {
    /// `near_field` or `far_field`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Transcription settings (`audio.input.transcription`, beta `input_audio_transcription`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcription {
    /// Model name; any name is accepted and served by Hark's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// ISO-639-1 language (`"en"`); absent, null or empty: detect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Style or vocabulary prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Latency/accuracy knob: `minimal`, `low`, `medium`, `high`, `xhigh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
}

/// Kind of turn detection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnDetectionType {
    /// Silence-based VAD.
    #[default]
    ServerVad,
    /// Model-scored end of turn; Hark maps `eagerness` to a silence duration.
    SemanticVad,
}

/// `semantic_vad` eagerness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eagerness {
    /// Waits longest.
    Low,
    /// The default.
    Medium,
    /// Ends turns soonest.
    High,
    /// Same as medium.
    Auto,
}

/// Turn detection settings (same shape in GA and beta).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnDetection {
    /// `server_vad` (default) or `semantic_vad`.
    #[serde(rename = "type", default)]
    pub kind: TurnDetectionType,
    /// VAD activation threshold in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Audio kept before detected speech, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_padding_ms: Option<u32>,
    /// Silence that ends a turn, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_duration_ms: Option<u32>,
    /// Commit after this much time without audio, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u32>,
    /// Conversation-only; accepted and ignored on transcription sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_response: Option<bool>,
    /// Conversation-only; accepted and ignored on transcription sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt_response: Option<bool>,
    /// `semantic_vad` eagerness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eagerness: Option<Eagerness>,
}

/// Beta `session` object of `transcription_session.update`. Absent fields are unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BetaSessionUpdate {
    /// `pcm16` (24 kHz mono little-endian); `g711_ulaw` / `g711_alaw` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio_format: Option<String>,
    /// Transcription settings; replaced as a whole when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio_transcription: Option<Transcription>,
    /// Turn detection; `null` means the client commits.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub turn_detection: Option<Option<TurnDetection>>,
    /// Noise reduction; `null` turns it off.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_audio_noise_reduction: Option<Option<NoiseReduction>>,
    /// Extra outputs; accepted and echoed.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub include: Option<Option<Vec<String>>>,
}

/// A client event the server could not accept, with the client's `event_id` when the event
/// was readable enough to have one (OpenAI echoes it in `error.event_id`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct RejectedEvent {
    /// What was wrong.
    pub error: ProtocolError,
    /// The client's `event_id`, if readable.
    pub event_id: Option<String>,
}

/// Parses one text frame of an OpenAI transcription session.
///
/// Never panics; work is linear in `text.len()`, capped at [`MAX_EVENT_BYTES`]. Unknown
/// fields are ignored; event types outside [`ClientEvent::TYPES`] (including valid OpenAI
/// conversation events such as `response.create`) are `unknown_type`. The audio of an
/// append is not decoded here: see [`decode_audio`](super::decode_audio).
pub fn parse_client_event(text: &str) -> Result<ClientEvent, RejectedEvent> {
    let envelope = Envelope::parse(text, MAX_EVENT_BYTES).map_err(|error| RejectedEvent {
        error,
        event_id: None,
    })?;
    let event_id = envelope.str_field("event_id").map(str::to_owned);
    if !ClientEvent::TYPES.contains(&envelope.kind.as_str()) {
        return Err(RejectedEvent {
            error: envelope.unknown(&ClientEvent::TYPES),
            event_id,
        });
    }
    envelope
        .decode()
        .map_err(|error| RejectedEvent { error, event_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn tri_state_fields_tell_null_from_absent() {
        let off = r#"{"type":"session.update","session":{"type":"transcription",
            "audio":{"input":{"turn_detection":null}}}}"#;
        let ClientEvent::SessionUpdate { session, .. } = parse_client_event(off).unwrap() else {
            panic!("wrong variant");
        };
        let input = session.audio.unwrap().input.unwrap();
        assert_eq!(input.turn_detection, Some(None));
        assert_eq!(input.noise_reduction, None);
    }

    #[test]
    fn errors_keep_the_client_event_id() {
        let rejected =
            parse_client_event(r#"{"type":"response.create","event_id":"e7"}"#).unwrap_err();
        assert_eq!(rejected.error.code, ErrorCode::UnknownType);
        assert_eq!(rejected.event_id.as_deref(), Some("e7"));
        let rejected =
            parse_client_event(r#"{"type":"input_audio_buffer.append","event_id":"e8"}"#)
                .unwrap_err();
        assert_eq!(rejected.error.code, ErrorCode::BadMessage);
        assert_eq!(rejected.event_id.as_deref(), Some("e8"));
    }
}
