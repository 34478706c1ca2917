//! Writing 16 kHz mono WAV files, for tools and tests.

use std::path::Path;

use crate::{AudioError, TARGET_RATE};

/// Writes `samples` (16 kHz mono, [-1, 1]) as a 16-bit PCM WAV file.
///
/// Samples are scaled by 32768 and rounded, out-of-range values are clamped and NaN is written
/// as 0, so s16 audio decoded by this crate is written back bit-exactly.
pub fn write_wav_16k_mono(path: impl AsRef<Path>, samples: &[f32]) -> Result<(), AudioError> {
    let path = path.as_ref();
    let io_error = |error: hound::Error| match error {
        hound::Error::IoError(source) => AudioError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => AudioError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: TARGET_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    // The RIFF size fields are 32-bit: at most 2^31 - 1 bytes of 16-bit samples.
    let count = u32::try_from(samples.len())
        .ok()
        .filter(|&n| n <= i32::MAX as u32 / 2)
        .ok_or_else(|| {
            AudioError::Unsupported(format!(
                "{} samples do not fit in a WAV file",
                samples.len()
            ))
        })?;
    let mut writer = hound::WavWriter::create(path, spec).map_err(io_error)?;
    {
        let mut writer = writer.get_i16_writer(count);
        for &s in samples {
            writer.write_sample(to_i16(s));
        }
        writer.flush().map_err(io_error)?;
    }
    writer.finalize().map_err(io_error)
}

fn to_i16(s: f32) -> i16 {
    if s.is_nan() {
        return 0;
    }
    (f64::from(s) * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}
