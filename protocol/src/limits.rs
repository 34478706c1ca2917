//! Server limits (advertised in `ready`) and validation of `start` against them.

use serde::{Deserialize, Serialize};

use crate::client::{Start, Task};
use crate::error::{ErrorCode, ProtocolError, excerpt};
use crate::pcm::Encoding;

/// Shortest non-zero `endpointing_ms` accepted: below this, breaths split words.
pub const MIN_ENDPOINTING_MS: u32 = 100;
/// Longest `endpointing_ms` accepted.
pub const MAX_ENDPOINTING_MS: u32 = 10_000;
/// Endpointing silence when `start` does not choose one (OpenAI's `server_vad` default).
pub const DEFAULT_ENDPOINTING_MS: u32 = 500;
/// Longest `label`, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;
/// Longest language tag, in bytes (the longest BCP 47 tags in practical use fit easily).
pub const MAX_LANGUAGE_BYTES: usize = 35;
/// Longest `resume.session_id`, in bytes.
pub const MAX_SESSION_ID_BYTES: usize = 128;

/// What the server accepts, sent in `ready` and used by [`validate_start`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Limits {
    /// Largest binary frame, in bytes.
    pub max_frame_bytes: u32,
    /// Longest session, in seconds of audio; 0 means unlimited.
    pub max_session_s: u32,
    /// Seconds without any frame (audio, control or ping) before the server closes the session.
    pub idle_timeout_s: u32,
    /// Accepted client sample rates, in Hz (the server resamples to 16 kHz internally).
    pub sample_rates: Vec<u32>,
    /// Accepted encodings.
    pub encodings: Vec<Encoding>,
    /// Most interleaved channels per frame.
    pub max_channels: u16,
    /// Seconds a dropped session stays resumable; 0 means resume is not supported.
    pub resume_window_s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 256 * 1024,
            max_session_s: 4 * 3600,
            idle_timeout_s: 30,
            sample_rates: vec![
                8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
            ],
            encodings: Encoding::ALL.to_vec(),
            max_channels: 2,
            resume_window_s: 0,
        }
    }
}

impl Limits {
    /// Checks the length of one binary frame against `max_frame_bytes`.
    pub fn check_frame(&self, byte_len: usize) -> Result<(), ProtocolError> {
        if byte_len > self.max_frame_bytes as usize {
            return Err(ProtocolError::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "audio frame of {byte_len} bytes exceeds max_frame_bytes ({})",
                    self.max_frame_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Checks a sample rate against `sample_rates`.
    pub fn check_sample_rate(&self, rate: u32, field: &str) -> Result<(), ProtocolError> {
        if self.sample_rates.contains(&rate) {
            return Ok(());
        }
        Err(ProtocolError::new(
            ErrorCode::UnsupportedSampleRate,
            format!(
                "sample rate {rate} Hz is not supported (supported: {:?})",
                self.sample_rates
            ),
        )
        .with_field(field))
    }
}

/// Checks a `start` message against the server limits and the protocol's value ranges.
///
/// The first failing check wins, in this order: version, sample rate, encoding, channels,
/// language, task/target language, endpointing, label, resume.
pub fn validate_start(start: &Start, limits: &Limits) -> Result<(), ProtocolError> {
    if start.v != crate::PROTOCOL_VERSION {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported (this server speaks {})",
                start.v,
                crate::PROTOCOL_VERSION
            ),
        )
        .with_field("v"));
    }
    limits.check_sample_rate(start.sample_rate, "sample_rate")?;
    if !limits.encodings.contains(&start.encoding) {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedEncoding,
            format!("encoding {} is not enabled on this server", start.encoding),
        )
        .with_field("encoding"));
    }
    if start.channels == 0 || start.channels > limits.max_channels {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedChannels,
            format!(
                "{} channel(s) requested; 1 to {} supported",
                start.channels, limits.max_channels
            ),
        )
        .with_field("channels"));
    }
    if let Some(language) = &start.language {
        check_language(language, "language")?;
    }
    match (start.task, &start.target_language) {
        (Task::Translate, None) => {
            return Err(ProtocolError::new(
                ErrorCode::InvalidField,
                "task `translate` needs a target_language",
            )
            .with_field("target_language"));
        }
        (Task::Translate, Some(target)) => check_language(target, "target_language")?,
        (Task::Transcribe, Some(_)) => {
            return Err(ProtocolError::new(
                ErrorCode::InvalidField,
                "target_language is only valid with task `translate`",
            )
            .with_field("target_language"));
        }
        (Task::Transcribe, None) => {}
    }
    if let Some(ms) = start.endpointing_ms
        && ms != 0
        && !(MIN_ENDPOINTING_MS..=MAX_ENDPOINTING_MS).contains(&ms)
    {
        return Err(ProtocolError::new(
            ErrorCode::InvalidField,
            format!(
                "endpointing_ms {ms} is out of range (0 to disable, or \
                 {MIN_ENDPOINTING_MS}..={MAX_ENDPOINTING_MS})"
            ),
        )
        .with_field("endpointing_ms"));
    }
    if let Some(label) = &start.label {
        check_label(label)?;
    }
    if let Some(resume) = &start.resume {
        if limits.resume_window_s == 0 {
            return Err(ProtocolError::new(
                ErrorCode::ResumeFailed,
                "this server does not support resume (limits.resume_window_s is 0)",
            )
            .with_field("resume"));
        }
        let id = &resume.session_id;
        if id.is_empty() || id.len() > MAX_SESSION_ID_BYTES {
            return Err(ProtocolError::new(
                ErrorCode::InvalidField,
                format!("resume.session_id must be 1 to {MAX_SESSION_ID_BYTES} bytes"),
            )
            .with_field("resume.session_id"));
        }
    }
    Ok(())
}

/// The endpointing silence a valid `start` asks for, with the default filled in (0: off).
pub fn effective_endpointing_ms(start: &Start) -> u32 {
    start.endpointing_ms.unwrap_or(DEFAULT_ENDPOINTING_MS)
}

/// Checks the shape of a BCP 47 language tag: a 2–3 letter primary language subtag, then
/// subtags of 1–8 letters or digits separated by `-` (`en`, `pt-BR`, `zh-Hant-TW`).
/// Whether the model knows the language is the server's business, not the protocol's.
pub fn check_language(tag: &str, field: &str) -> Result<(), ProtocolError> {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    let primary_ok =
        (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if tag.len() <= MAX_LANGUAGE_BYTES && primary_ok && rest_ok {
        return Ok(());
    }
    Err(ProtocolError::new(
        ErrorCode::InvalidField,
        format!(
            "`{}` is not a language tag like `en` or `pt-BR`",
            excerpt(tag, MAX_LANGUAGE_BYTES)
        ),
    )
    .with_field(field))
}

fn check_label(label: &str) -> Result<(), ProtocolError> {
    if label.len() > MAX_LABEL_BYTES {
        return Err(ProtocolError::new(
            ErrorCode::InvalidField,
            format!("label is {} bytes; at most {MAX_LABEL_BYTES}", label.len()),
        )
        .with_field("label"));
    }
    if label.chars().any(char::is_control) {
        return Err(ProtocolError::new(
            ErrorCode::InvalidField,
            "label must not contain control characters",
        )
        .with_field("label"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags() {
        for ok in ["en", "fra", "pt-BR", "zh-Hant-TW", "es-419"] {
            check_language(ok, "language").unwrap();
        }
        for bad in [
            "",
            "e",
            "english",
            "en_US",
            "en-",
            "-en",
            "12",
            "en-toolongsubtag",
        ] {
            assert_eq!(
                check_language(bad, "language").unwrap_err().code,
                ErrorCode::InvalidField,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn frame_limit_is_inclusive() {
        let limits = Limits::default();
        limits.check_frame(limits.max_frame_bytes as usize).unwrap();
        assert_eq!(
            limits
                .check_frame(limits.max_frame_bytes as usize + 1)
                .unwrap_err()
                .code,
            ErrorCode::FrameTooLarge
        );
    }
}
