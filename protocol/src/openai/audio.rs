//! Base64 audio of `input_audio_buffer.append`: PCM16, or G.711 μ-law/A-law.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};

use super::g711::{alaw_to_linear, ulaw_to_linear};
use crate::error::{ErrorCode, ProtocolError};
use crate::pcm::{Encoding, decode_pcm, encode_pcm};

/// How the audio of an append is encoded, as the session's input format says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputEncoding {
    /// Little-endian signed 16-bit (`audio/pcm`, beta `pcm16`).
    #[default]
    Pcm16,
    /// G.711 μ-law, 8 kHz (`audio/pcmu`, beta `g711_ulaw`).
    Pcmu,
    /// G.711 A-law, 8 kHz (`audio/pcma`, beta `g711_alaw`).
    Pcma,
}

impl InputEncoding {
    /// The GA format `type`.
    pub fn mime(self) -> &'static str {
        match self {
            InputEncoding::Pcm16 => "audio/pcm",
            InputEncoding::Pcmu => "audio/pcmu",
            InputEncoding::Pcma => "audio/pcma",
        }
    }

    /// Parses a GA format `type`.
    pub fn from_mime(mime: &str) -> Option<Self> {
        [Self::Pcm16, Self::Pcmu, Self::Pcma]
            .into_iter()
            .find(|e| e.mime() == mime)
    }

    /// The beta `input_audio_format`.
    pub fn beta_name(self) -> &'static str {
        match self {
            InputEncoding::Pcm16 => "pcm16",
            InputEncoding::Pcmu => "g711_ulaw",
            InputEncoding::Pcma => "g711_alaw",
        }
    }

    /// Parses a beta `input_audio_format`.
    pub fn from_beta_name(name: &str) -> Option<Self> {
        [Self::Pcm16, Self::Pcmu, Self::Pcma]
            .into_iter()
            .find(|e| e.beta_name() == name)
    }

    /// The rate G.711 always has; `None` for PCM16 (the session sets it).
    pub fn fixed_rate(self) -> Option<u32> {
        match self {
            InputEncoding::Pcm16 => None,
            InputEncoding::Pcmu | InputEncoding::Pcma => Some(8_000),
        }
    }
}

/// Decodes the `audio` of an append: standard-alphabet base64 (padding optional) of
/// little-endian PCM16 mono, to `f32` samples at the session rate (24 kHz unless the session
/// set another; the daemon resamples). Invalid base64 is `invalid_base64`; an odd number of
/// bytes is `odd_byte_count`. Work is linear in the input, which the event parser bounds.
pub fn decode_audio(base64: &str) -> Result<Vec<f32>, ProtocolError> {
    decode_audio_as(base64, InputEncoding::Pcm16)
}

/// Decodes the `audio` of an append in `encoding` to `f32` mono samples (G.711 bytes are one
/// sample each, so they never have an odd count).
pub fn decode_audio_as(base64: &str, encoding: InputEncoding) -> Result<Vec<f32>, ProtocolError> {
    let bytes = STANDARD_PAD_INDIFFERENT.decode(base64).map_err(|e| {
        ProtocolError::new(
            ErrorCode::InvalidBase64,
            format!("`audio` is not valid base64: {e}"),
        )
        .with_field("audio")
    })?;
    let expand = |law: fn(u8) -> i16| -> Vec<f32> {
        bytes
            .iter()
            .map(|&b| f32::from(law(b)) / 32_768.0)
            .collect()
    };
    match encoding {
        InputEncoding::Pcm16 => {
            decode_pcm(Encoding::S16le, 1, &bytes).map_err(|e| e.with_field("audio"))
        }
        InputEncoding::Pcmu => Ok(expand(ulaw_to_linear)),
        InputEncoding::Pcma => Ok(expand(alaw_to_linear)),
    }
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
    fn decodes_g711() {
        // μ-law 0xFF is silence, 0x80 the positive peak; A-law 0xD5 is +8.
        let ulaw = STANDARD.encode([0xFFu8, 0x80]);
        assert_eq!(
            decode_audio_as(&ulaw, InputEncoding::Pcmu).unwrap(),
            vec![0.0, 32_124.0 / 32_768.0]
        );
        let alaw = STANDARD.encode([0xD5u8]);
        assert_eq!(
            decode_audio_as(&alaw, InputEncoding::Pcma).unwrap(),
            vec![8.0 / 32_768.0]
        );
        // One byte is a whole G.711 sample.
        assert_eq!(
            decode_audio_as("AA==", InputEncoding::Pcmu).unwrap().len(),
            1
        );
    }

    #[test]
    fn round_trips() {
        let samples = [0.0f32, 0.5, -0.5, -1.0];
        assert_eq!(decode_audio(&encode_audio(&samples)).unwrap(), samples);
    }
}
