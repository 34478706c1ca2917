//! Settings of the voice-activity gate.

use serde::Deserialize;

use super::VadError;

/// Which frame-level detector drives the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// libfvad's GMM detector ([`WebRtcVad`](super::WebRtcVad)).
    #[default]
    Webrtc,
    /// earshot's neural detector (cargo feature `earshot`); 16 ms frames, ignores `frame_ms`
    /// and `aggressiveness`.
    Earshot,
}

impl DetectorKind {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Webrtc => "webrtc",
            Self::Earshot => "earshot",
        }
    }
}

/// Settings of [`SpeechGate`](super::SpeechGate). Every field has a default, so a config file
/// names only what it changes. Times are milliseconds of stream audio.
///
/// A frame counts as *voiced* when the detector scores it at or above the threshold **and**
/// its energy (measured above 100 Hz) is at least `noise_margin_db` above the recent noise
/// floor and above `min_energy_dbfs`. The energy test is what keeps steady noise (fans, hiss), which the
/// WebRTC detector often scores as speech, from opening the gate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Frame-level detector. Default `webrtc`.
    pub detector: DetectorKind,
    /// WebRTC aggressiveness 0–3; higher rejects more non-speech and misses more speech.
    /// Default 2.
    pub aggressiveness: u8,
    /// WebRTC frame length: 10, 20 or 30 ms. Default 20. The energy of short frames of steady
    /// noise scatters more: on the fixture noise 0.5 % of 10 ms frames pass the default
    /// margin against none at 20 ms, so 10 ms frames lean on the onset hysteresis (which
    /// still keeps the gate shut) or want a larger `noise_margin_db`.
    pub frame_ms: u32,
    /// Detector score that makes a frame a speech candidate while the gate is closed.
    /// Default 0.5 (WebRTC scores are 0 or 1).
    pub speech_threshold: f32,
    /// Lower score that keeps an open segment alive (hysteresis). Default 0.35.
    pub sustain_threshold: f32,
    /// Onset hysteresis: the gate opens once the last `onset_window_ms` hold at least
    /// `min_speech_ms` of voiced frames. Default 200 (at most 64 frames).
    pub onset_window_ms: u32,
    /// Voiced audio needed inside the onset window before the gate opens. Default 80.
    pub min_speech_ms: u32,
    /// Audio kept after the last voiced frame when a segment ends. Default 200.
    pub hangover_ms: u32,
    /// Silence after the last voiced frame that ends a segment (OpenAI `silence_duration_ms`).
    /// Default 500.
    pub endpoint_silence_ms: u32,
    /// Audio kept before the detected onset so word onsets survive (OpenAI
    /// `prefix_padding_ms`). Default 300.
    pub pre_roll_ms: u32,
    /// Longest segment piece; a longer utterance is split. Default 30000 (the model's span).
    pub max_segment_ms: u32,
    /// How far back from the span limit the split looks for its quietest point. Default 5000.
    pub split_lookback_ms: u32,
    /// Window of the running-minimum noise-floor estimate. Default 1500.
    pub noise_floor_window_ms: u32,
    /// Energy above the noise floor a voiced frame needs, in dB. Default 9.
    pub noise_margin_db: f32,
    /// Energy below which a frame is never voiced, in dB relative to full scale. Default -60.
    pub min_energy_dbfs: f32,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            detector: DetectorKind::Webrtc,
            aggressiveness: 2,
            frame_ms: 20,
            speech_threshold: 0.5,
            sustain_threshold: 0.35,
            onset_window_ms: 200,
            min_speech_ms: 80,
            hangover_ms: 200,
            endpoint_silence_ms: 500,
            pre_roll_ms: 300,
            max_segment_ms: 30_000,
            split_lookback_ms: 5_000,
            noise_floor_window_ms: 1_500,
            noise_margin_db: 9.0,
            min_energy_dbfs: -60.0,
        }
    }
}

/// Upper bounds that keep one gate's memory small whatever a client asks for.
const MAX_PRE_ROLL_MS: u32 = 5_000;
const MAX_ENDPOINT_MS: u32 = 30_000;
const MAX_SEGMENT_MS: u32 = 600_000;
const MAX_LOOKBACK_MS: u32 = 60_000;
const MAX_FLOOR_WINDOW_MS: u32 = 30_000;
/// The onset window is a 64-bit mask of frame decisions.
pub(crate) const MAX_ONSET_FRAMES: u32 = 64;

fn invalid(field: &'static str, reason: String) -> VadError {
    VadError::InvalidConfig { field, reason }
}

fn check_range(field: &'static str, value: u32, min: u32, max: u32) -> Result<(), VadError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be {min}..={max} ms, got {value}"),
        ))
    }
}

impl GateConfig {
    /// Frame length in milliseconds for the chosen detector.
    pub(crate) fn effective_frame_ms(&self) -> u32 {
        match self.detector {
            DetectorKind::Webrtc => self.frame_ms,
            DetectorKind::Earshot => 16,
        }
    }

    /// Checks every field; the gate refuses a config that fails.
    pub fn validate(&self) -> Result<(), VadError> {
        if self.aggressiveness > 3 {
            return Err(invalid(
                "aggressiveness",
                format!("must be 0, 1, 2 or 3, got {}", self.aggressiveness),
            ));
        }
        if self.detector == DetectorKind::Webrtc && !matches!(self.frame_ms, 10 | 20 | 30) {
            return Err(invalid(
                "frame_ms",
                format!("webrtc frames are 10, 20 or 30 ms, got {}", self.frame_ms),
            ));
        }
        self.validate_timings(self.effective_frame_ms())
    }

    /// Checks the fields that do not depend on the detector, for frames of `frame` ms.
    pub(crate) fn validate_timings(&self, frame: u32) -> Result<(), VadError> {
        for (field, value) in [
            ("speech_threshold", self.speech_threshold),
            ("sustain_threshold", self.sustain_threshold),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(field, format!("must be in [0, 1], got {value}")));
            }
        }
        if self.sustain_threshold > self.speech_threshold {
            return Err(invalid(
                "sustain_threshold",
                format!(
                    "must not exceed speech_threshold ({}), got {}",
                    self.speech_threshold, self.sustain_threshold
                ),
            ));
        }
        check_range(
            "onset_window_ms",
            self.onset_window_ms,
            frame,
            MAX_ONSET_FRAMES * frame,
        )?;
        check_range("min_speech_ms", self.min_speech_ms, 0, self.onset_window_ms)?;
        check_range(
            "endpoint_silence_ms",
            self.endpoint_silence_ms,
            frame,
            MAX_ENDPOINT_MS,
        )?;
        check_range(
            "hangover_ms",
            self.hangover_ms,
            0,
            self.endpoint_silence_ms - frame,
        )?;
        check_range("pre_roll_ms", self.pre_roll_ms, 0, MAX_PRE_ROLL_MS)?;
        check_range("max_segment_ms", self.max_segment_ms, 1_000, MAX_SEGMENT_MS)?;
        // A segment opens with its pre-roll and onset window already inside; that must fit
        // comfortably in one piece.
        if self.pre_roll_ms + self.onset_window_ms > self.max_segment_ms / 2 {
            return Err(invalid(
                "pre_roll_ms",
                format!(
                    "pre_roll_ms + onset_window_ms must be at most half of max_segment_ms ({}), \
                     got {} + {}",
                    self.max_segment_ms, self.pre_roll_ms, self.onset_window_ms
                ),
            ));
        }
        // The split must leave a non-empty first piece and look at a few frames at least.
        let lookback_max = (self.max_segment_ms / 2).min(MAX_LOOKBACK_MS);
        check_range(
            "split_lookback_ms",
            self.split_lookback_ms,
            4 * frame,
            lookback_max,
        )?;
        check_range(
            "noise_floor_window_ms",
            self.noise_floor_window_ms,
            frame,
            MAX_FLOOR_WINDOW_MS,
        )?;
        if !(0.0..=60.0).contains(&self.noise_margin_db) {
            return Err(invalid(
                "noise_margin_db",
                format!("must be in [0, 60] dB, got {}", self.noise_margin_db),
            ));
        }
        if !(-120.0..=0.0).contains(&self.min_energy_dbfs) {
            return Err(invalid(
                "min_energy_dbfs",
                format!("must be in [-120, 0] dBFS, got {}", self.min_energy_dbfs),
            ));
        }
        Ok(())
    }
}
