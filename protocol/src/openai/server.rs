//! Server events of an OpenAI Realtime transcription session.

use serde::{Deserialize, Serialize};

use super::client::{AudioFormat, NoiseReduction, Transcription, TurnDetection};
use crate::error::{ErrorCode, ProtocolError};

/// A server → client event. Every event carries a unique `event_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    /// GA: first event of a session.
    #[serde(rename = "session.created")]
    SessionCreated {
        /// Unique id of this server event.
        event_id: String,
        /// Effective configuration.
        session: Session,
    },
    /// GA: answer to `session.update`.
    #[serde(rename = "session.updated")]
    SessionUpdated {
        /// Unique id of this server event.
        event_id: String,
        /// Effective configuration after the update.
        session: Session,
    },
    /// Beta: first event of a session opened with the beta header/intent.
    #[serde(rename = "transcription_session.created")]
    TranscriptionSessionCreated {
        /// Unique id of this server event.
        event_id: String,
        /// Effective configuration.
        session: BetaSession,
    },
    /// Beta: answer to `transcription_session.update`.
    #[serde(rename = "transcription_session.updated")]
    TranscriptionSessionUpdated {
        /// Unique id of this server event.
        event_id: String,
        /// Effective configuration after the update.
        session: BetaSession,
    },
    /// VAD heard speech start (server_vad only).
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted {
        /// Unique id of this server event.
        event_id: String,
        /// Milliseconds of session audio before the speech (pre-roll included).
        audio_start_ms: u64,
        /// Item the speech will be committed as.
        item_id: String,
    },
    /// VAD heard the end of speech (server_vad only).
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped {
        /// Unique id of this server event.
        event_id: String,
        /// Milliseconds of session audio up to the end of speech.
        audio_end_ms: u64,
        /// Item the speech is committed as.
        item_id: String,
    },
    /// The buffer became an item (by VAD or by `input_audio_buffer.commit`).
    #[serde(rename = "input_audio_buffer.committed")]
    Committed {
        /// Unique id of this server event.
        event_id: String,
        /// The new item.
        item_id: String,
        /// The item before it; `null` for the first.
        previous_item_id: Option<String>,
    },
    /// Answer to `input_audio_buffer.clear`.
    #[serde(rename = "input_audio_buffer.cleared")]
    Cleared {
        /// Unique id of this server event.
        event_id: String,
    },
    /// GA: the committed audio became a user message item (after `committed`).
    #[serde(rename = "conversation.item.added")]
    ItemAdded {
        /// Unique id of this server event.
        event_id: String,
        /// The item before it; `null` for the first.
        previous_item_id: Option<String>,
        /// The new item (its transcript is `null`: it comes in the transcription events).
        item: Item,
    },
    /// GA: the item is final (sent right after `conversation.item.added`, as OpenAI does for
    /// input audio items).
    #[serde(rename = "conversation.item.done")]
    ItemDone {
        /// Unique id of this server event.
        event_id: String,
        /// The item before it; `null` for the first.
        previous_item_id: Option<String>,
        /// The finished item.
        item: Item,
    },
    /// Beta: the committed audio became a user message item (after `committed`).
    #[serde(rename = "conversation.item.created")]
    ItemCreated {
        /// Unique id of this server event.
        event_id: String,
        /// The item before it; `null` for the first.
        previous_item_id: Option<String>,
        /// The new item.
        item: Item,
    },
    /// Append-only text increment of an item's transcript.
    #[serde(rename = "conversation.item.input_audio_transcription.delta")]
    TranscriptionDelta {
        /// Unique id of this server event.
        event_id: String,
        /// Item being transcribed.
        item_id: String,
        /// Content part (always 0 for input audio).
        content_index: u32,
        /// New text to append.
        delta: String,
        /// Per-token log probabilities of `delta`, when the session includes
        /// `item.input_audio_transcription.logprobs`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logprobs: Option<Vec<LogProb>>,
    },
    /// Final transcript of an item.
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    TranscriptionCompleted {
        /// Unique id of this server event.
        event_id: String,
        /// Item transcribed.
        item_id: String,
        /// Content part (always 0 for input audio).
        content_index: u32,
        /// Whole transcript of the item.
        transcript: String,
        /// Audio duration billed (informational).
        usage: Usage,
        /// Per-token log probabilities of `transcript`, when the session includes
        /// `item.input_audio_transcription.logprobs`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logprobs: Option<Vec<LogProb>>,
    },
    /// Transcription of an item failed.
    #[serde(rename = "conversation.item.input_audio_transcription.failed")]
    TranscriptionFailed {
        /// Unique id of this server event.
        event_id: String,
        /// Item that failed.
        item_id: String,
        /// Content part (always 0 for input audio).
        content_index: u32,
        /// What went wrong.
        error: ErrorDetail,
    },
    /// A client event was rejected or the session failed.
    #[serde(rename = "error")]
    Error {
        /// Unique id of this server event.
        event_id: String,
        /// What went wrong.
        error: ErrorDetail,
    },
}

impl ServerEvent {
    /// This event's `event_id`.
    pub fn event_id(&self) -> &str {
        match self {
            ServerEvent::SessionCreated { event_id, .. }
            | ServerEvent::SessionUpdated { event_id, .. }
            | ServerEvent::TranscriptionSessionCreated { event_id, .. }
            | ServerEvent::TranscriptionSessionUpdated { event_id, .. }
            | ServerEvent::SpeechStarted { event_id, .. }
            | ServerEvent::SpeechStopped { event_id, .. }
            | ServerEvent::Committed { event_id, .. }
            | ServerEvent::Cleared { event_id }
            | ServerEvent::ItemAdded { event_id, .. }
            | ServerEvent::ItemDone { event_id, .. }
            | ServerEvent::ItemCreated { event_id, .. }
            | ServerEvent::TranscriptionDelta { event_id, .. }
            | ServerEvent::TranscriptionCompleted { event_id, .. }
            | ServerEvent::TranscriptionFailed { event_id, .. }
            | ServerEvent::Error { event_id, .. } => event_id,
        }
    }

    /// JSON text of this event.
    pub fn to_json(&self) -> String {
        // Plain structs with string keys: no failure path in practice, but never panic.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","event_id":"event_internal","error":{"type":"server_error","code":"server_error","message":"event serialisation failed","param":null,"event_id":null}}"#
                .to_owned()
        })
    }
}

/// GA transcription session object (in `session.created` / `session.updated`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Always `"transcription"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `"realtime.transcription_session"`.
    pub object: String,
    /// Session id.
    pub id: String,
    /// Unix time (s) when the session's audio limit runs out for a real-time client; 0 when
    /// the server sets no limit.
    pub expires_at: u64,
    /// Audio configuration.
    pub audio: SessionAudio,
    /// Extra outputs requested; `null` when none.
    pub include: Option<Vec<String>>,
}

/// `session.audio` of a GA session object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionAudio {
    /// Input audio configuration.
    pub input: SessionAudioInput,
}

/// `session.audio.input` of a GA session object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionAudioInput {
    /// Input format.
    pub format: AudioFormat,
    /// Noise reduction; `null` when off.
    pub noise_reduction: Option<NoiseReduction>,
    /// Transcription settings.
    pub transcription: Transcription,
    /// Turn detection; `null` when the client commits.
    pub turn_detection: Option<TurnDetection>,
}

/// Beta transcription session object (in `transcription_session.created` / `.updated`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BetaSession {
    /// Session id.
    pub id: String,
    /// Always `"realtime.transcription_session"`.
    pub object: String,
    /// Same meaning as in the GA session object.
    pub expires_at: u64,
    /// `pcm16`, `g711_ulaw` or `g711_alaw`.
    pub input_audio_format: String,
    /// Transcription settings.
    pub input_audio_transcription: Transcription,
    /// Turn detection; `null` when the client commits.
    pub turn_detection: Option<TurnDetection>,
    /// Noise reduction; `null` when off.
    pub input_audio_noise_reduction: Option<NoiseReduction>,
    /// Extra outputs requested; `null` when none.
    pub include: Option<Vec<String>>,
    /// OpenAI's ephemeral key. Hark issues none; the object is there (empty `value`) because
    /// the SDK's beta model requires it.
    pub client_secret: ClientSecret,
}

/// `client_secret` of the beta session object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientSecret {
    /// Always empty: Hark authenticates with its own bearer token.
    pub value: String,
    /// Same as the session's `expires_at`.
    pub expires_at: u64,
}

/// A user message item holding committed input audio (`conversation.item.*` events).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Item id (`item_…`), the `item_id` of the item's other events.
    pub id: String,
    /// Always `"realtime.item"`.
    pub object: String,
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `"completed"`: the audio is committed.
    pub status: String,
    /// Always `"user"`.
    pub role: String,
    /// One `input_audio` part.
    pub content: Vec<ItemContent>,
}

impl Item {
    /// The user message item of committed audio `id`, its transcript not known yet.
    pub fn input_audio(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            object: "realtime.item".to_owned(),
            kind: "message".to_owned(),
            status: "completed".to_owned(),
            role: "user".to_owned(),
            content: vec![ItemContent {
                kind: "input_audio".to_owned(),
                transcript: None,
            }],
        }
    }
}

/// A content part of an [`Item`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemContent {
    /// Always `"input_audio"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `null`: transcripts arrive in the transcription events.
    pub transcript: Option<String>,
}

/// One token of a transcript with its log probability (`logprobs` entries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogProb {
    /// The token's text.
    pub token: String,
    /// Natural-log probability the decoder gave the token.
    pub logprob: f64,
    /// UTF-8 bytes of `token`.
    pub bytes: Vec<u8>,
}

impl LogProb {
    /// The entry for `token` with `logprob`.
    pub fn new(token: &str, logprob: f64) -> Self {
        Self {
            token: token.to_owned(),
            logprob,
            bytes: token.as_bytes().to_vec(),
        }
    }
}

/// `usage` of a completed transcription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Usage {
    /// Duration-based usage.
    Duration {
        /// Seconds of input audio in the item.
        seconds: f64,
    },
}

/// `error` object of error and failed events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error` (client fault) or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Machine-readable code, OpenAI's spelling (see [`openai_code`]).
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable message.
    pub message: String,
    /// Offending parameter, if any.
    #[serde(default)]
    pub param: Option<String>,
    /// `event_id` of the client event that caused it, if any.
    #[serde(default)]
    pub event_id: Option<String>,
}

impl ErrorDetail {
    /// The OpenAI error object for `err`, caused by the client event `event_id` (if known).
    pub fn from_error(err: &ProtocolError, event_id: Option<&str>) -> Self {
        let kind = if err.code.is_client_fault() {
            "invalid_request_error"
        } else {
            "server_error"
        };
        Self {
            kind: kind.to_owned(),
            code: Some(openai_code(err.code).to_owned()),
            message: err.message.clone(),
            param: err.field.clone(),
            event_id: event_id.map(str::to_owned),
        }
    }
}

/// The OpenAI Realtime error code for a Hark error code: the codes OpenAI's server sends for
/// the same fault where it has one (`invalid_value`, `invalid_event`, `invalid_json`,
/// `input_audio_buffer_commit_empty`, `session_expired`, `server_error`), else Hark's own.
pub fn openai_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadJson => "invalid_json",
        ErrorCode::BadMessage | ErrorCode::TextExpected => "invalid_event",
        ErrorCode::UnknownType
        | ErrorCode::UnsupportedSampleRate
        | ErrorCode::UnsupportedEncoding
        | ErrorCode::UnsupportedChannels
        | ErrorCode::InvalidField
        | ErrorCode::InvalidBase64
        | ErrorCode::OddByteCount
        | ErrorCode::NonFiniteSample
        | ErrorCode::UnsupportedVersion => "invalid_value",
        ErrorCode::UnexpectedMessage => "input_audio_buffer_commit_empty",
        ErrorCode::MessageTooLarge | ErrorCode::FrameTooLarge => "message_too_large",
        ErrorCode::SessionTooLong => "session_expired",
        // Faults OpenAI reports outside the event stream (HTTP status before the upgrade) or
        // not at all keep Hark's name.
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::ServerBusy => "server_busy",
        ErrorCode::IdleTimeout => "idle_timeout",
        ErrorCode::ShuttingDown => "shutting_down",
        ErrorCode::AudioBeforeStart
        | ErrorCode::ResumeFailed
        | ErrorCode::Lagging
        | ErrorCode::Internal
        | ErrorCode::Unknown => "server_error",
    }
}
