//! Errors of the voice-activity gate.

/// What can go wrong while configuring or feeding the gate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VadError {
    /// A configuration value is out of range; `field` names it as in [`GateConfig`](super::GateConfig).
    #[error("invalid VAD setting `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it was refused, with the accepted range.
        reason: String,
    },
    /// The configured detector was not compiled in.
    #[error(
        "voice detector `{0}` is not available in this build (enable the cargo feature of the same name)"
    )]
    DetectorUnavailable(&'static str),
    /// A frame handed to a detector has the wrong number of samples.
    #[error("voice detector takes frames of {expected} samples, got {got}")]
    FrameLength {
        /// Samples per frame the detector needs.
        expected: usize,
        /// Samples it was given.
        got: usize,
    },
    /// An input sample was NaN or infinite; the chunk was refused whole.
    #[error("sample {index} of the chunk is not a finite number")]
    NonFiniteSample {
        /// Index of the first bad sample inside the pushed chunk.
        index: usize,
    },
    /// The detector panicked or could not be created; the message is the panic payload.
    #[error("voice detector failed: {0}")]
    DetectorFailed(String),
    /// An earlier detector failure left the gate unusable.
    #[error("the voice gate is unusable after an earlier detector failure")]
    Poisoned,
    /// Audio was pushed after [`SpeechGate::finish`](super::SpeechGate::finish).
    #[error("audio pushed after the end of the stream")]
    Finished,
}
