//! The audio format Wyoming events state (`rate`, `width` in bytes, `channels`) and the
//! decoding of their little-endian integer PCM to f32.

use hark_audio_io::{MAX_INPUT_RATE, MIN_INPUT_RATE};
use serde_json::{Map, Value};

/// Most interleaved channels a Wyoming stream may carry (the converter mixes them to mono).
pub const MAX_CHANNELS: u16 = 8;

/// The format of a Wyoming audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    pub rate: u32,
    /// Bytes per sample: 1 (unsigned 8-bit), 2, 3 or 4 (signed), as Python's `audioop` uses.
    pub width: u8,
    pub channels: u16,
}

/// A format field is missing or outside what Hark converts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("`{0}` is missing or not an integer")]
    Missing(&'static str),
    #[error("rate {0} Hz is outside {MIN_INPUT_RATE}..={MAX_INPUT_RATE}")]
    Rate(u64),
    #[error("width {0} is not 1, 2, 3 or 4 bytes")]
    Width(u64),
    #[error("channels {0} is not 1..={MAX_CHANNELS}")]
    Channels(u64),
    #[error("{bytes} bytes is not a whole number of {frame}-byte sample frames")]
    OddBytes { bytes: usize, frame: usize },
}

impl AudioFormat {
    /// The format in an event's data; `fallback` supplies fields the event leaves out.
    pub fn from_data(
        data: &Map<String, Value>,
        fallback: Option<AudioFormat>,
    ) -> Result<AudioFormat, FormatError> {
        let field = |name: &'static str, fallback: Option<u64>| {
            data.get(name)
                .and_then(Value::as_u64)
                .or(fallback)
                .ok_or(FormatError::Missing(name))
        };
        let rate = field("rate", fallback.map(|f| u64::from(f.rate)))?;
        let width = field("width", fallback.map(|f| u64::from(f.width)))?;
        let channels = field("channels", fallback.map(|f| u64::from(f.channels)))?;
        if !(u64::from(MIN_INPUT_RATE)..=u64::from(MAX_INPUT_RATE)).contains(&rate) {
            return Err(FormatError::Rate(rate));
        }
        if !(1..=4).contains(&width) {
            return Err(FormatError::Width(width));
        }
        if !(1..=u64::from(MAX_CHANNELS)).contains(&channels) {
            return Err(FormatError::Channels(channels));
        }
        Ok(AudioFormat {
            rate: rate as u32,
            width: width as u8,
            channels: channels as u16,
        })
    }

    /// Bytes of one sample frame (all channels).
    pub fn frame_bytes(&self) -> usize {
        usize::from(self.width) * usize::from(self.channels)
    }

    /// Interleaved samples in [-1, 1) from PCM bytes.
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<f32>, FormatError> {
        let frame = self.frame_bytes();
        if !bytes.len().is_multiple_of(frame) {
            return Err(FormatError::OddBytes {
                bytes: bytes.len(),
                frame,
            });
        }
        let width = usize::from(self.width);
        // Each sample is placed in the top bytes of an i32, so one scale fits every width.
        let scale = 1.0 / 2_147_483_648.0;
        Ok(bytes
            .chunks_exact(width)
            .map(|s| {
                let top = match *s {
                    [b] => i32::from(b.wrapping_sub(128) as i8) << 24,
                    [b0, b1] => i32::from_le_bytes([0, 0, b0, b1]),
                    [b0, b1, b2] => i32::from_le_bytes([0, b0, b1, b2]),
                    [b0, b1, b2, b3] => i32::from_le_bytes([b0, b1, b2, b3]),
                    _ => unreachable!("width is 1..=4"),
                };
                top as f32 * scale
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn format(v: Value) -> Result<AudioFormat, FormatError> {
        AudioFormat::from_data(v.as_object().unwrap(), None)
    }

    #[test]
    fn formats_are_checked() {
        let ok = format(json!({"rate": 22050, "width": 2, "channels": 2})).unwrap();
        assert_eq!(ok.frame_bytes(), 4);
        assert_eq!(
            format(json!({"rate": 4000, "width": 2, "channels": 1})),
            Err(FormatError::Rate(4000))
        );
        assert_eq!(
            format(json!({"rate": 16000, "width": 5, "channels": 1})),
            Err(FormatError::Width(5))
        );
        assert_eq!(
            format(json!({"rate": 16000, "width": 2, "channels": 0})),
            Err(FormatError::Channels(0))
        );
        assert_eq!(
            format(json!({"rate": "16000", "width": 2, "channels": 1})),
            Err(FormatError::Missing("rate"))
        );
        // A chunk may leave its format to the stream's.
        let chunk = AudioFormat::from_data(json!({"rate": 48000}).as_object().unwrap(), Some(ok));
        assert_eq!(chunk.unwrap().rate, 48000);
    }

    #[test]
    fn every_width_decodes_to_the_same_scale() {
        let half = |width: u8| AudioFormat {
            rate: 16000,
            width,
            channels: 1,
        };
        assert_eq!(half(1).decode(&[192, 64, 128]).unwrap(), [0.5, -0.5, 0.0]);
        assert_eq!(
            half(2).decode(&[0x00, 0x40, 0x00, 0xC0]).unwrap(),
            [0.5, -0.5]
        );
        assert_eq!(half(3).decode(&[0, 0, 0x40]).unwrap(), [0.5]);
        assert_eq!(half(4).decode(&[0, 0, 0, 0x80]).unwrap(), [-1.0]);
        let stereo = AudioFormat {
            rate: 16000,
            width: 2,
            channels: 2,
        };
        assert_eq!(
            stereo.decode(&[0; 6]),
            Err(FormatError::OddBytes { bytes: 6, frame: 4 })
        );
    }
}
