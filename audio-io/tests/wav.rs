//! The 16 kHz mono WAV writer.

mod common;

use common::{bits, fixture};
use hark_audio_io::{AudioError, decode_file, write_wav_16k_mono};

#[test]
fn decoded_s16_audio_round_trips_bit_exactly() {
    let original = decode_file(fixture("fox.wav")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fox-copy.wav");
    write_wav_16k_mono(&path, &original.samples).unwrap();
    let copy = decode_file(&path).unwrap();
    assert_eq!((copy.sample_rate, copy.channels), (16_000, 1));
    assert_eq!(bits(&copy.samples), bits(&original.samples));
    // Same bytes as the fixture, header included.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(fixture("fox.wav")).unwrap()
    );
}

#[test]
fn out_of_range_values_are_clamped_and_rounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edges.wav");
    let input = [1.5, -1.5, 1.0, -1.0, f32::NAN, 0.25, 1.0 / 65_536.0, -0.1];
    write_wav_16k_mono(&path, &input).unwrap();
    assert_eq!(
        raw_s16(&path),
        vec![32_767, -32_768, 32_767, -32_768, 0, 8_192, 1, -3_277]
    );
}

#[test]
fn unwritable_paths_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("x.wav");
    assert!(matches!(
        write_wav_16k_mono(&path, &[0.0; 10]),
        Err(AudioError::Io { .. })
    ));
}

/// Raw s16 values of a 44-byte-header WAV file.
fn raw_s16(path: &std::path::Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    bytes[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}
