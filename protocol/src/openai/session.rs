//! The effective configuration of a transcription session and how updates change it.

use super::DEFAULT_SAMPLE_RATE;
use super::audio::InputEncoding;
use super::client::{
    AudioFormat, BetaSessionUpdate, Eagerness, NoiseReduction, SessionUpdate, Transcription,
    TurnDetection, TurnDetectionType,
};
use super::server::{BetaSession, ClientSecret, Session, SessionAudio, SessionAudioInput};
use crate::error::{ErrorCode, ProtocolError};
use crate::limits::{Limits, MAX_ENDPOINTING_MS, MIN_ENDPOINTING_MS, check_language};

/// `object` of transcription session objects.
pub const SESSION_OBJECT: &str = "realtime.transcription_session";

/// The `include` entry that asks for per-token log probabilities.
pub const LOGPROBS_INCLUDE: &str = "item.input_audio_transcription.logprobs";

/// Accepted values of `transcription.delay`.
pub const DELAYS: [&str; 5] = ["minimal", "low", "medium", "high", "xhigh"];

/// OpenAI's `server_vad` defaults.
const DEFAULT_THRESHOLD: f64 = 0.5;
const DEFAULT_PREFIX_PADDING_MS: u32 = 300;
const DEFAULT_SILENCE_MS: u32 = 500;
/// Longest pre-roll accepted, ms.
const MAX_PREFIX_PADDING_MS: u32 = 5_000;

/// The effective configuration of one transcription session: what `session.created` and
/// `session.updated` report, and what the daemon runs.
#[derive(Clone, Debug, PartialEq)]
pub struct TranscriptionConfig {
    /// How appended audio is encoded (PCM16 little-endian, or G.711 μ-law/A-law).
    pub encoding: InputEncoding,
    /// Input sample rate in Hz (mono); always 8000 for G.711.
    pub sample_rate: u32,
    /// Model, language, prompt, delay as the client set them; `model` is the served model's
    /// name until the client names one.
    pub transcription: Transcription,
    /// Name of the model that serves the session (reported while the client names none).
    pub served_model: String,
    /// Unix time (s) the session object reports in `expires_at` (0: no limit).
    pub expires_at: u64,
    /// Noise reduction as the client set it (accepted, echoed, not applied).
    pub noise_reduction: Option<NoiseReduction>,
    /// Turn detection with defaults filled in; `None`: the client commits.
    pub turn_detection: Option<TurnDetection>,
    /// Extra outputs requested.
    pub include: Option<Vec<String>>,
}

impl TranscriptionConfig {
    /// OpenAI's defaults: 24 kHz PCM16, `server_vad` (0.5, 300 ms, 500 ms), language
    /// detection, and `model` as the model name.
    pub fn new(model: impl Into<String>) -> Self {
        let model = model.into();
        Self {
            encoding: InputEncoding::Pcm16,
            sample_rate: DEFAULT_SAMPLE_RATE,
            transcription: Transcription {
                model: Some(model.clone()),
                prompt: Some(String::new()),
                ..Transcription::default()
            },
            served_model: model,
            expires_at: 0,
            noise_reduction: None,
            turn_detection: Some(fill_defaults(TurnDetection::default())),
            include: None,
        }
    }

    /// Applies a GA `session.update`. Either every field is accepted or nothing changes.
    pub fn apply(&mut self, update: &SessionUpdate, limits: &Limits) -> Result<(), ProtocolError> {
        let mut next = self.clone();
        if let Some(kind) = &update.kind
            && kind != "transcription"
        {
            return Err(ProtocolError::new(
                ErrorCode::InvalidField,
                format!("this server only runs transcription sessions, not `{kind}`"),
            )
            .with_field("session.type"));
        }
        if let Some(input) = update.audio.as_ref().and_then(|a| a.input.as_ref()) {
            if let Some(format) = &input.format {
                (next.encoding, next.sample_rate) = check_format(format, limits)?;
            }
            if let Some(noise) = &input.noise_reduction {
                next.noise_reduction = noise.clone();
            }
            if let Some(t) = &input.transcription {
                check_transcription(t, "session.audio.input.transcription")?;
                next.transcription = next.named(t);
            }
            if let Some(td) = &input.turn_detection {
                next.turn_detection =
                    check_turn_detection(td.as_ref(), "session.audio.input.turn_detection")?;
            }
        }
        if let Some(include) = &update.include {
            next.include = include.clone();
        }
        *self = next;
        Ok(())
    }

    /// Applies a beta `transcription_session.update`. Either every field is accepted or
    /// nothing changes. The beta shape has no rate: `pcm16` is 24 kHz, G.711 8 kHz.
    pub fn apply_beta(&mut self, update: &BetaSessionUpdate) -> Result<(), ProtocolError> {
        let mut next = self.clone();
        if let Some(format) = &update.input_audio_format {
            next.encoding = InputEncoding::from_beta_name(format).ok_or_else(|| {
                ProtocolError::new(
                    ErrorCode::UnsupportedEncoding,
                    format!(
                        "input_audio_format `{format}` is not supported (use pcm16, g711_ulaw or g711_alaw)"
                    ),
                )
                .with_field("session.input_audio_format")
            })?;
            next.sample_rate = next.encoding.fixed_rate().unwrap_or(DEFAULT_SAMPLE_RATE);
        }
        if let Some(t) = &update.input_audio_transcription {
            check_transcription(t, "session.input_audio_transcription")?;
            next.transcription = next.named(t);
        }
        if let Some(td) = &update.turn_detection {
            next.turn_detection = check_turn_detection(td.as_ref(), "session.turn_detection")?;
        }
        if let Some(noise) = &update.input_audio_noise_reduction {
            next.noise_reduction = noise.clone();
        }
        if let Some(include) = &update.include {
            next.include = include.clone();
        }
        *self = next;
        Ok(())
    }

    /// `t` with the served model's name when it names no model, so every session object
    /// names one.
    fn named(&self, t: &Transcription) -> Transcription {
        let mut t = t.clone();
        if t.model.as_deref().is_none_or(str::is_empty) {
            t.model = Some(self.served_model.clone());
        }
        t
    }

    /// The GA session object for `session.created` / `session.updated`.
    pub fn session(&self, id: &str) -> Session {
        let format = match self.encoding {
            InputEncoding::Pcm16 => AudioFormat::pcm(self.sample_rate),
            other => AudioFormat {
                kind: other.mime().to_owned(),
                rate: None,
            },
        };
        Session {
            kind: "transcription".to_owned(),
            object: SESSION_OBJECT.to_owned(),
            id: id.to_owned(),
            expires_at: self.expires_at,
            audio: SessionAudio {
                input: SessionAudioInput {
                    format,
                    noise_reduction: self.noise_reduction.clone(),
                    transcription: self.transcription.clone(),
                    turn_detection: self.turn_detection.clone(),
                },
            },
            include: self.include.clone(),
        }
    }

    /// The beta session object for `transcription_session.created` / `.updated`.
    pub fn beta_session(&self, id: &str) -> BetaSession {
        // The beta object's `model` is an enum of OpenAI's names: the served model's own name
        // is left out (null) there; a name the client chose is echoed.
        let mut transcription = self.transcription.clone();
        if transcription.model.as_deref() == Some(self.served_model.as_str()) {
            transcription.model = None;
        }
        BetaSession {
            id: id.to_owned(),
            object: SESSION_OBJECT.to_owned(),
            expires_at: self.expires_at,
            input_audio_format: self.encoding.beta_name().to_owned(),
            input_audio_transcription: transcription,
            turn_detection: self.turn_detection.clone(),
            input_audio_noise_reduction: self.noise_reduction.clone(),
            include: self.include.clone(),
            client_secret: ClientSecret {
                value: String::new(),
                expires_at: self.expires_at,
            },
        }
    }

    /// Silence (ms) that ends an utterance, or `None` when turn detection is off and the
    /// client commits. `semantic_vad` has no silence setting; Hark maps its eagerness to one:
    /// high 300 ms, medium/auto 700 ms, low 1200 ms.
    pub fn endpointing_ms(&self) -> Option<u32> {
        let td = self.turn_detection.as_ref()?;
        Some(match td.kind {
            TurnDetectionType::ServerVad => td.silence_duration_ms.unwrap_or(DEFAULT_SILENCE_MS),
            TurnDetectionType::SemanticVad => match td.eagerness.unwrap_or(Eagerness::Auto) {
                Eagerness::High => 300,
                Eagerness::Medium | Eagerness::Auto => 700,
                Eagerness::Low => 1_200,
            },
        })
    }

    /// Whether `include` asks for per-token log probabilities.
    pub fn wants_logprobs(&self) -> bool {
        self.include
            .as_ref()
            .is_some_and(|i| i.iter().any(|x| x == LOGPROBS_INCLUDE))
    }

    /// The requested language, `None` to detect (absent, null or empty in the update).
    pub fn language(&self) -> Option<&str> {
        self.transcription
            .language
            .as_deref()
            .filter(|l| !l.is_empty())
    }
}

fn check_format(
    format: &AudioFormat,
    limits: &Limits,
) -> Result<(InputEncoding, u32), ProtocolError> {
    let encoding = InputEncoding::from_mime(&format.kind).ok_or_else(|| {
        ProtocolError::new(
            ErrorCode::UnsupportedEncoding,
            format!(
                "audio format `{}` is not supported (use audio/pcm, audio/pcmu or audio/pcma)",
                format.kind
            ),
        )
        .with_field("session.audio.input.format.type")
    })?;
    if let Some(fixed) = encoding.fixed_rate() {
        if format.rate.is_some_and(|r| r != fixed) {
            return Err(ProtocolError::new(
                ErrorCode::UnsupportedSampleRate,
                format!("`{}` audio is always {fixed} Hz", format.kind),
            )
            .with_field("session.audio.input.format.rate"));
        }
        return Ok((encoding, fixed));
    }
    let rate = format.rate.unwrap_or(DEFAULT_SAMPLE_RATE);
    limits.check_sample_rate(rate, "session.audio.input.format.rate")?;
    Ok((encoding, rate))
}

fn check_transcription(t: &Transcription, at: &str) -> Result<(), ProtocolError> {
    if let Some(language) = t.language.as_deref().filter(|l| !l.is_empty()) {
        check_language(language, &format!("{at}.language"))?;
    }
    if let Some(delay) = &t.delay
        && !DELAYS.contains(&delay.as_str())
    {
        return Err(ProtocolError::new(
            ErrorCode::InvalidField,
            format!("delay `{delay}` is not one of {}", DELAYS.join(", ")),
        )
        .with_field(format!("{at}.delay")));
    }
    Ok(())
}

fn check_turn_detection(
    td: Option<&TurnDetection>,
    at: &str,
) -> Result<Option<TurnDetection>, ProtocolError> {
    let Some(td) = td else {
        return Ok(None);
    };
    if let Some(t) = td.threshold
        && !(0.0..=1.0).contains(&t)
    {
        return Err(ProtocolError::new(
            ErrorCode::InvalidField,
            format!("threshold {t} is outside [0, 1]"),
        )
        .with_field(format!("{at}.threshold")));
    }
    if let Some(ms) = td.silence_duration_ms
        && !(MIN_ENDPOINTING_MS..=MAX_ENDPOINTING_MS).contains(&ms)
    {
        return Err(ProtocolError::new(
            ErrorCode::InvalidField,
            format!(
                "silence_duration_ms {ms} is outside {MIN_ENDPOINTING_MS}..={MAX_ENDPOINTING_MS}"
            ),
        )
        .with_field(format!("{at}.silence_duration_ms")));
    }
    if let Some(ms) = td.prefix_padding_ms
        && ms > MAX_PREFIX_PADDING_MS
    {
        return Err(ProtocolError::new(
            ErrorCode::InvalidField,
            format!("prefix_padding_ms {ms} is above {MAX_PREFIX_PADDING_MS}"),
        )
        .with_field(format!("{at}.prefix_padding_ms")));
    }
    Ok(Some(fill_defaults(td.clone())))
}

fn fill_defaults(mut td: TurnDetection) -> TurnDetection {
    match td.kind {
        TurnDetectionType::ServerVad => {
            td.threshold.get_or_insert(DEFAULT_THRESHOLD);
            td.prefix_padding_ms
                .get_or_insert(DEFAULT_PREFIX_PADDING_MS);
            td.silence_duration_ms.get_or_insert(DEFAULT_SILENCE_MS);
        }
        TurnDetectionType::SemanticVad => {
            td.eagerness.get_or_insert(Eagerness::Auto);
        }
    }
    td
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::client::{AudioInputUpdate, AudioUpdate};

    fn update(input: AudioInputUpdate) -> SessionUpdate {
        SessionUpdate {
            kind: Some("transcription".into()),
            audio: Some(AudioUpdate { input: Some(input) }),
            include: None,
        }
    }

    #[test]
    fn rejected_update_changes_nothing() {
        let mut config = TranscriptionConfig::new("hark");
        let before = config.clone();
        let bad = update(AudioInputUpdate {
            transcription: Some(Transcription {
                language: Some("de".into()),
                ..Transcription::default()
            }),
            format: Some(AudioFormat::pcm(12_345)),
            ..AudioInputUpdate::default()
        });
        let err = config.apply(&bad, &Limits::default()).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedSampleRate);
        assert_eq!(config, before);
    }

    #[test]
    fn turn_detection_null_means_manual_commit() {
        let mut config = TranscriptionConfig::new("hark");
        assert_eq!(config.endpointing_ms(), Some(500));
        let off = update(AudioInputUpdate {
            turn_detection: Some(None),
            ..AudioInputUpdate::default()
        });
        config.apply(&off, &Limits::default()).unwrap();
        assert_eq!(config.endpointing_ms(), None);
        let semantic = update(AudioInputUpdate {
            turn_detection: Some(Some(TurnDetection {
                kind: TurnDetectionType::SemanticVad,
                eagerness: Some(Eagerness::High),
                ..TurnDetection::default()
            })),
            ..AudioInputUpdate::default()
        });
        config.apply(&semantic, &Limits::default()).unwrap();
        assert_eq!(config.endpointing_ms(), Some(300));
    }
}
