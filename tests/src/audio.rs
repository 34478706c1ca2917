//! Fixture clips, their texts, and WAV writing.

use std::path::{Path, PathBuf};

use hark_protocol::{Encoding, encode_pcm};

/// A decoded clip: interleaved samples at its native rate.
#[derive(Debug, Clone)]
pub struct Clip {
    pub path: PathBuf,
    pub rate: u32,
    pub channels: u16,
    pub samples: Vec<f32>,
}

impl Clip {
    /// Decode a WAV file.
    pub fn load(path: impl AsRef<Path>) -> Clip {
        let path = path.as_ref().to_path_buf();
        let decoded = hark_audio_io::decode_file(&path)
            .unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()));
        Clip {
            path,
            rate: decoded.sample_rate,
            channels: decoded.channels,
            samples: decoded.samples,
        }
    }

    /// A fixture clip by name (`fox`, `hello-44k1-stereo`, …).
    pub fn fixture(name: &str) -> Clip {
        Clip::load(fixture_path(name))
    }

    /// Sample frames (one sample per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels)
    }

    /// Seconds of audio.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.rate)
    }

    /// The clip as `s16le` bytes (exact for 16-bit sources).
    pub fn s16le(&self) -> Vec<u8> {
        encode_pcm(Encoding::S16le, &self.samples)
    }

    /// Bytes per sample frame in `s16le`.
    pub fn frame_bytes(&self) -> usize {
        2 * usize::from(self.channels)
    }

    /// The clip followed by `seconds` of digital silence.
    pub fn with_silence(&self, seconds: f64) -> Clip {
        let mut c = self.clone();
        let n = (seconds * f64::from(self.rate)) as usize * usize::from(self.channels);
        c.samples.extend(std::iter::repeat_n(0.0, n));
        c
    }
}

/// `tests/fixtures/audio/NAME.wav`.
pub fn fixture_path(name: &str) -> PathBuf {
    crate::fixtures().join(format!("audio/{name}.wav"))
}

/// The spoken text of a fixture clip, from `manifest.json`.
pub fn fixture_text(name: &str) -> String {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(crate::fixtures().join("audio/manifest.json")).expect("manifest.json"),
    )
    .expect("manifest.json is JSON");
    manifest
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["clip"] == name)
        .and_then(|c| c["text"].as_str())
        .unwrap_or_else(|| panic!("no clip `{name}` in manifest.json"))
        .to_owned()
}

/// Linear-interpolation resampling of mono audio (enough to make test inputs at other rates;
/// the daemon's own resampler is what is under test).
pub fn resample_linear(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if samples.is_empty() || from == to {
        return samples.to_vec();
    }
    let n = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    (0..n)
        .map(|i| {
            let x = i as f64 * f64::from(from) / f64::from(to);
            let j = x.floor() as usize;
            let f = (x - j as f64) as f32;
            let a = samples[j.min(samples.len() - 1)];
            let b = samples[(j + 1).min(samples.len() - 1)];
            a + (b - a) * f
        })
        .collect()
}

/// Write interleaved samples as a 16-bit PCM WAV file.
pub fn write_wav_s16(path: impl AsRef<Path>, rate: u32, channels: u16, samples: &[f32]) {
    let data = encode_pcm(Encoding::S16le, samples);
    let mut out = Vec::with_capacity(44 + data.len());
    let block = 2 * u32::from(channels);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * block).to_le_bytes());
    out.extend_from_slice(&(block as u16).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path.as_ref(), out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.as_ref().display()));
}

/// Lower-case words of a text, punctuation dropped (for "the transcript contains its words").
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_through_the_project_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        let samples = [0.0f32, 0.5, -0.5, 0.25, 0.125, -1.0];
        write_wav_s16(&path, 24_000, 2, &samples);
        let clip = Clip::load(&path);
        assert_eq!((clip.rate, clip.channels, clip.frames()), (24_000, 2, 3));
        assert_eq!(clip.samples, samples);
    }

    #[test]
    fn resampling_keeps_duration() {
        let x: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.01).sin()).collect();
        assert_eq!(resample_linear(&x, 16_000, 24_000).len(), 24_000);
        assert_eq!(words("Hello, World! it's"), ["hello", "world", "it's"]);
    }
}
