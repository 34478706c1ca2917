//! Base64 PCM16 audio of `input_audio_buffer.append`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};

use crate::error::{ErrorCode, ProtocolError};
use crate::pcm::{Encoding, decode_pcm, encode_pcm};

/// Decodes the `audio` of an append: standard-alphabet base64 (padding optional) of
/// little-endian PCM16 mono, to `f32` samples at the session rate (24 kHz unless the session
/// set another; the daemon resamples). Invalid base64 is `invalid_base64`; an odd number of
/// bytes is `odd_byte_count`. Work is linear in the input, which the event parser bounds.
pub fn decode_audio(base64: &str) -> Result<Vec<f32>, ProtocolError> {
    let bytes = STANDARD_PAD_INDIFFERENT.decode(base64).map_err(|e| {
        ProtocolError::new(
            ErrorCode::InvalidBase64,
            format!("`audio` is not valid base64: {e}"),
        )
        .with_field("audio")
    })?;
    decode_pcm(Encoding::S16le, 1, &bytes).map_err(|e| e.with_field("audio"))
}

/// Encodes `f32` mono samples as the `audio` of an append (padded base64 of PCM16).
pub fn encode_audio(samples: &[f32]) -> String {
    STANDARD.encode(encode_pcm(Encoding::S16le, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_padded_and_unpadded() {
        // Bytes 00 00 00 40: samples 0x0000 and 0x4000, i.e. 0.0 and 0.5.
        assert_eq!(decode_audio("AAAAQA==").unwrap(), vec![0.0, 0.5]);
        assert_eq!(decode_audio("AAAAQA").unwrap(), vec![0.0, 0.5]);
        assert_eq!(decode_audio("").unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn rejects_bad_base64_and_odd_bytes() {
        for bad in ["AAB@", "A", "AA=A", "AAAAQA==="] {
            assert_eq!(
                decode_audio(bad).unwrap_err().code,
                ErrorCode::InvalidBase64,
                "{bad}"
            );
        }
        assert_eq!(
            decode_audio("AAAA").unwrap_err().code,
            ErrorCode::OddByteCount
        );
    }

    #[test]
    fn round_trips() {
        let samples = [0.0f32, 0.5, -0.5, -1.0];
        assert_eq!(decode_audio(&encode_audio(&samples)).unwrap(), samples);
    }
}
