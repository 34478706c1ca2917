//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong between an audio source and a 16 kHz mono sample ring.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file to decode does not exist.
    #[error("audio file not found: {}", path.display())]
    NotFound {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// Reading or writing a file failed for a reason other than a missing file.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not in any audio format this crate recognises.
    #[error("not a recognised audio format: {0}")]
    UnknownFormat(String),
    /// The container is recognised but its encoding is not supported.
    #[error("unsupported audio encoding: {0}")]
    Unsupported(String),
    /// The data is recognised but damaged (bad header, corrupt packet, inconsistent fields).
    #[error("malformed {format} data: {reason}")]
    Malformed {
        /// Container or codec the problem was found in.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The data ends before the length its header declares.
    #[error(
        "truncated audio: the header declares {expected_frames} frames \
         but the data ends after {decoded_frames}"
    )]
    Truncated {
        /// Frames the header promises.
        expected_frames: u64,
        /// Complete frames actually present.
        decoded_frames: u64,
    },
    /// The stream declares zero channels.
    #[error("audio declares zero channels")]
    ZeroChannels,
    /// The stream declares a sample rate of zero.
    #[error("audio declares a sample rate of 0 Hz")]
    ZeroSampleRate,
    /// The audio is longer than the caller accepts (decoding stopped there).
    #[error("the audio is longer than {limit_s} s")]
    TooLong {
        /// The limit, in seconds.
        limit_s: f64,
    },
    /// The stream decodes to no samples at all.
    #[error("audio contains no samples")]
    Empty,
    /// The sample rate is outside what the converter accepts.
    #[error("unsupported sample rate {rate} Hz (accepted: {min}..={max} Hz)")]
    UnsupportedSampleRate {
        /// The rejected rate.
        rate: u32,
        /// Lowest accepted rate.
        min: u32,
        /// Highest accepted rate.
        max: u32,
    },
    /// A stream ended in the middle of an interleaved frame.
    #[error("stream ended with {samples} samples of an incomplete {channels}-channel frame")]
    IncompleteFrame {
        /// Samples of the unfinished frame that were discarded.
        samples: usize,
        /// Channels per frame.
        channels: u16,
    },
    /// No audio input device is available (no sound card, no ALSA device, or no such name).
    #[error("no audio input device: {0}")]
    NoInputDevice(String),
    /// The audio device or host failed.
    #[error("audio device error: {0}")]
    Device(String),
    /// A capture worker thread could not be started or died.
    #[error("capture thread failed: {0}")]
    Thread(String),
}

impl AudioError {
    pub(crate) fn malformed(format: &'static str, reason: impl Into<String>) -> Self {
        AudioError::Malformed {
            format,
            reason: reason.into(),
        }
    }
}
