//! Raw PCM frames: the two sample encodings of the native protocol, decoding to `f32` and
//! encoding back (for clients).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ProtocolError};

/// Sample encoding of binary audio frames. Both are little-endian and interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Signed 16-bit integers; full scale is ±32768.
    S16le,
    /// IEEE-754 32-bit floats, nominally in [-1, 1].
    F32le,
}

impl Encoding {
    /// Every encoding of protocol v1.
    pub const ALL: [Encoding; 2] = [Encoding::S16le, Encoding::F32le];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::S16le => "s16le",
            Encoding::F32le => "f32le",
        }
    }

    /// Parses the wire spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Bytes in one sample of one channel.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::S16le => 2,
            Encoding::F32le => 4,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Number of sample frames (one sample per channel) in `byte_len` bytes, or an
/// `odd_byte_count` error when the bytes do not hold a whole number of them.
pub fn frame_count(
    encoding: Encoding,
    channels: u16,
    byte_len: usize,
) -> Result<usize, ProtocolError> {
    if channels == 0 {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedChannels,
            "channels must be at least 1",
        )
        .with_field("channels"));
    }
    let frame = encoding.bytes_per_sample() * usize::from(channels);
    if !byte_len.is_multiple_of(frame) {
        return Err(ProtocolError::new(
            ErrorCode::OddByteCount,
            format!(
                "audio frame of {byte_len} bytes is not a whole number of {frame}-byte sample \
                 frames ({encoding}, {channels} channel(s)); split frames on sample boundaries"
            ),
        ));
    }
    Ok(byte_len / frame)
}

/// Decodes one binary audio frame to interleaved `f32` samples in [-1, 1].
///
/// `s16le` maps `i16` to `v / 32768`. `f32le` values are clamped to [-1, 1]; NaN or infinite
/// samples reject the whole frame with `non_finite_sample` (a NaN would poison the features
/// of every later frame, and silently zeroing it would hide a client bug). A byte count that
/// is not a whole number of sample frames is `odd_byte_count`. An empty frame decodes to no
/// samples.
pub fn decode_pcm(
    encoding: Encoding,
    channels: u16,
    bytes: &[u8],
) -> Result<Vec<f32>, ProtocolError> {
    frame_count(encoding, channels, bytes.len())?;
    match encoding {
        Encoding::S16le => Ok(bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
            .collect()),
        Encoding::F32le => {
            let mut out = Vec::with_capacity(bytes.len() / 4);
            for (index, b) in bytes.chunks_exact(4).enumerate() {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if !v.is_finite() {
                    return Err(ProtocolError::new(
                        ErrorCode::NonFiniteSample,
                        format!("f32le sample {index} of the frame is {v}"),
                    ));
                }
                out.push(v.clamp(-1.0, 1.0));
            }
            Ok(out)
        }
    }
}

/// Encodes interleaved `f32` samples as one binary audio frame (what a client sends).
///
/// Samples are clamped to [-1, 1] and NaN becomes 0, so the result always decodes.
/// `s16le` rounds to the nearest step and saturates at the ends.
pub fn encode_pcm(encoding: Encoding, samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * encoding.bytes_per_sample());
    for &s in samples {
        let v = if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) };
        match encoding {
            Encoding::S16le => {
                // 32768 * 1.0 does not fit i16; the `as` cast saturates it to 32767.
                let q = (v * 32768.0).round() as i16;
                out.extend_from_slice(&q.to_le_bytes());
            }
            Encoding::F32le => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    out
}

/// Seconds of audio in `frames` sample frames at `sample_rate` Hz.
pub fn frames_to_seconds(frames: u64, sample_rate: u32) -> f64 {
    if sample_rate == 0 {
        return 0.0;
    }
    frames as f64 / f64::from(sample_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s16le_full_scale() {
        let bytes = [0x00, 0x80, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x40];
        let s = decode_pcm(Encoding::S16le, 1, &bytes).unwrap();
        assert_eq!(s, vec![-1.0, 32767.0 / 32768.0, 0.0, 0.5]);
    }

    #[test]
    fn f32le_clamps_and_rejects_non_finite() {
        let mut bytes = Vec::new();
        for v in [0.25f32, 3.0, -7.5] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            decode_pcm(Encoding::F32le, 1, &bytes).unwrap(),
            vec![0.25, 1.0, -1.0]
        );
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut frame = 0.1f32.to_le_bytes().to_vec();
            frame.extend_from_slice(&bad.to_le_bytes());
            let err = decode_pcm(Encoding::F32le, 2, &frame).unwrap_err();
            assert_eq!(err.code, ErrorCode::NonFiniteSample);
            assert!(err.message.contains("sample 1"), "{}", err.message);
        }
    }

    #[test]
    fn partial_sample_frames_are_rejected() {
        for (enc, ch, len) in [
            (Encoding::S16le, 1, 3),
            (Encoding::S16le, 2, 6),
            (Encoding::F32le, 1, 6),
            (Encoding::F32le, 2, 12),
        ] {
            let err = decode_pcm(enc, ch, &vec![0u8; len]).unwrap_err();
            assert_eq!(err.code, ErrorCode::OddByteCount, "{enc} {ch} {len}");
        }
        assert_eq!(
            decode_pcm(Encoding::S16le, 0, &[0, 0]).unwrap_err().code,
            ErrorCode::UnsupportedChannels
        );
        assert!(decode_pcm(Encoding::F32le, 2, &[]).unwrap().is_empty());
    }

    #[test]
    fn encode_saturates_and_round_trips() {
        let bytes = encode_pcm(Encoding::S16le, &[1.0, -1.0, 2.0, f32::NAN]);
        assert_eq!(bytes, [0xff, 0x7f, 0x00, 0x80, 0xff, 0x7f, 0x00, 0x00]);
        let samples = [0.5f32, -0.25, 0.0, 1.0];
        let back = decode_pcm(Encoding::F32le, 2, &encode_pcm(Encoding::F32le, &samples));
        assert_eq!(back.unwrap(), samples);
    }

    #[test]
    fn frame_counts() {
        assert_eq!(frame_count(Encoding::F32le, 2, 16).unwrap(), 2);
        assert_eq!(frames_to_seconds(24_000, 16_000), 1.5);
        assert_eq!(frames_to_seconds(5, 0), 0.0);
    }
}
