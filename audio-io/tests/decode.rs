//! Decoding: every fixture, other formats made with sox, and every kind of bad input.

mod common;

use std::path::Path;

use common::{best_correlation, bits, fixture, have_sox, sox, sox_supports};
use hark_audio_io::{AudioError, DecodedAudio, decode_bytes, decode_file};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn hello() -> DecodedAudio {
    decode_file(fixture("hello.wav")).unwrap()
}

/// A canonical 44-byte WAV header followed by `data`.
fn wav_bytes(
    format_tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    declared: u32,
    data: &[u8],
) -> Vec<u8> {
    let block_align = channels * bits / 8;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + declared).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&format_tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    v.extend_from_slice(&block_align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&declared.to_le_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn every_fixture_decodes_as_the_manifest_describes() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).unwrap()).unwrap();
    let clips = manifest.as_array().unwrap();
    assert!(clips.len() >= 9);
    for clip in clips {
        let file = clip["file"].as_str().unwrap();
        let audio = decode_file(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            u64::from(audio.sample_rate),
            clip["sample_rate"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            u64::from(audio.channels),
            clip["channels"].as_u64().unwrap(),
            "{file}"
        );
        assert!(audio.frames() > 8_000, "{file}: {} frames", audio.frames());
        assert!(
            audio.samples.iter().all(|s| (-1.0..=1.0).contains(s)),
            "{file}"
        );
    }
    let stereo = decode_file(fixture("hello-44k1-stereo.wav")).unwrap();
    assert_eq!(stereo.frames(), 46_964);
    assert_eq!(stereo.samples.len(), 2 * 46_964);
    assert!((stereo.duration_secs() - 46_964.0 / 44_100.0).abs() < 1e-9);
}

#[test]
fn s16_samples_are_scaled_by_32768() {
    let bytes = std::fs::read(fixture("hello.wav")).unwrap();
    let audio = decode_bytes(&bytes).unwrap();
    let raw: Vec<f32> = bytes[44..]
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    assert_eq!(bits(&audio.samples), bits(&raw));
}

#[test]
fn bytes_and_file_decode_identically() {
    for name in ["hello.wav", "hello-44k1-stereo.wav", "hello-8k.wav"] {
        let from_file = decode_file(fixture(name)).unwrap();
        let from_bytes = decode_bytes(&std::fs::read(fixture(name)).unwrap()).unwrap();
        assert_eq!(from_file, from_bytes, "{name}");
    }
}

/// Encodes hello.wav with sox arguments into `dir/name` and decodes it.
fn via_sox(dir: &Path, name: &str, args: &[&str]) -> DecodedAudio {
    let out = dir.join(name);
    let input = fixture("hello.wav");
    let mut all = vec![input.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(out.to_str().unwrap());
    sox(&all);
    let from_file = decode_file(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
    let from_bytes = decode_bytes(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        from_file, from_bytes,
        "{name}: file and memory decoding differ"
    );
    from_file
}

#[test]
fn lossless_encodings_decode_to_the_same_samples() {
    if !have_sox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = hello();
    let cases: &[(&str, &[&str])] = &[
        ("s16.wav", &["-b", "16", "-e", "signed-integer"]),
        ("s24.wav", &["-b", "24", "-e", "signed-integer"]),
        ("s32.wav", &["-b", "32", "-e", "signed-integer"]),
        ("f32.wav", &["-b", "32", "-e", "floating-point"]),
        ("s16.flac", &["-b", "16"]),
        ("s24.flac", &["-b", "24"]),
        ("s16.aiff", &["-b", "16"]),
        ("s16.caf", &["-b", "16", "-e", "signed-integer"]),
        ("f64.wav", &["-b", "64", "-e", "floating-point"]),
        ("alaw.wav", &["-e", "a-law"]),
    ];
    for &(name, args) in cases {
        let audio = via_sox(dir.path(), name, args);
        assert_eq!((audio.sample_rate, audio.channels), (16_000, 1), "{name}");
        if name == "alaw.wav" {
            // A-law is lossy (8-bit companded): close, not equal. hound does not read it, so
            // this also covers the WAV fallback to symphonia.
            let (corr, lag) = best_correlation(&reference.samples, &audio.samples, 0);
            assert!(corr > 0.999 && lag == 0, "{name}: correlation {corr}");
            continue;
        }
        assert_eq!(
            bits(&audio.samples),
            bits(&reference.samples),
            "{name}: samples differ"
        );
    }
}

#[test]
fn eight_bit_wav_is_close_to_the_source() {
    if !have_sox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = hello();
    let audio = via_sox(
        dir.path(),
        "u8.wav",
        &["-b", "8", "-e", "unsigned-integer", "-D"],
    );
    assert_eq!(audio.frames(), reference.frames());
    let worst = audio
        .samples
        .iter()
        .zip(&reference.samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1.0 / 128.0 + 1e-6, "worst 8-bit error {worst}");
}

#[test]
fn multichannel_and_other_rates_keep_their_layout() {
    if !have_sox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = hello();
    let audio = via_sox(dir.path(), "quad.flac", &["-r", "48000", "-c", "4", "-D"]);
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 4));
    assert_eq!(audio.frames(), (reference.frames() * 3));
    // sox copies the mono signal to every channel.
    for frame in audio.samples.chunks_exact(4).take(20_000) {
        assert!(frame.iter().all(|&s| s == frame[0]));
    }
}

#[test]
fn lossy_encodings_decode_close_to_the_source() {
    if !have_sox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = hello();
    let mut formats = vec![("hello.ogg", vec!["-C", "6"])];
    if sox_supports("mp3") {
        formats.push(("hello.mp3", vec!["-C", "128"]));
    } else {
        eprintln!("SKIPPED mp3: this sox build cannot write mp3");
    }
    for (name, args) in formats {
        let audio = via_sox(dir.path(), name, &args);
        assert_eq!((audio.sample_rate, audio.channels), (16_000, 1), "{name}");
        assert!(
            audio.frames().abs_diff(reference.frames()) < 2_000,
            "{name}: {} frames",
            audio.frames()
        );
        let (corr, lag) = best_correlation(&reference.samples, &audio.samples, 1200);
        assert!(corr > 0.95, "{name}: correlation {corr} at lag {lag}");
    }
}

#[test]
fn missing_file_is_not_found() {
    let path = fixture("no-such-clip.wav");
    match decode_file(&path) {
        Err(AudioError::NotFound { path: p }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        decode_file(dir.path()),
        Err(AudioError::Io { .. })
    ));
}

#[test]
fn non_audio_is_an_unknown_format() {
    assert!(matches!(
        decode_bytes(b""),
        Err(AudioError::UnknownFormat(_))
    ));
    let text = b"these are not the samples you are looking for\n".repeat(100);
    assert!(matches!(
        decode_bytes(&text),
        Err(AudioError::UnknownFormat(_))
    ));
    let json = std::fs::read(fixture("manifest.json")).unwrap();
    assert!(matches!(
        decode_bytes(&json),
        Err(AudioError::UnknownFormat(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.wav");
    std::fs::write(&fake, &text).unwrap();
    assert!(matches!(
        decode_file(&fake),
        Err(AudioError::UnknownFormat(_))
    ));
}

#[test]
fn truncated_wav_data_is_an_error_not_padding() {
    let bytes = std::fs::read(fixture("hello.wav")).unwrap();
    // Cut inside a sample, and cleanly between samples.
    for cut in [10_001, 20_000] {
        match decode_bytes(&bytes[..cut]) {
            Err(AudioError::Truncated {
                expected_frames,
                decoded_frames,
            }) => {
                assert_eq!(expected_frames, 17_039);
                assert_eq!(decoded_frames, (cut as u64 - 44) / 2);
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // A header promising a million frames over a few bytes of data.
    let liar = wav_bytes(1, 1, 16_000, 16, 2_000_000, &[0, 1, 2, 3]);
    assert!(matches!(
        decode_bytes(&liar),
        Err(AudioError::Truncated {
            expected_frames: 1_000_000,
            decoded_frames: 2
        })
    ));
}

#[test]
fn truncated_headers_are_malformed() {
    let bytes = std::fs::read(fixture("hello.wav")).unwrap();
    for cut in [12, 20, 30, 36, 40, 43] {
        match decode_bytes(&bytes[..cut]) {
            Err(AudioError::Malformed { .. }) => {}
            other => panic!("header cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn truncated_flac_is_an_error() {
    if !have_sox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.flac");
    sox(&[
        fixture("hello.wav").to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&path).unwrap();
    let cut = &bytes[..bytes.len() / 2];
    match decode_bytes(cut) {
        Err(AudioError::Truncated {
            expected_frames,
            decoded_frames,
        }) => {
            assert_eq!(expected_frames, 17_039);
            assert!(decoded_frames < expected_frames);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_channels_zero_rate_and_empty_audio_are_typed_errors() {
    let zero_channels = wav_bytes(1, 0, 16_000, 16, 4, &[0; 4]);
    assert!(matches!(
        decode_bytes(&zero_channels),
        Err(AudioError::ZeroChannels)
    ));
    let zero_rate = wav_bytes(1, 1, 0, 16, 4, &[0; 4]);
    assert!(matches!(
        decode_bytes(&zero_rate),
        Err(AudioError::ZeroSampleRate)
    ));
    let empty = wav_bytes(1, 1, 16_000, 16, 0, &[]);
    assert!(matches!(decode_bytes(&empty), Err(AudioError::Empty)));
    // The same checks through the symphonia path (AIFF made by sox).
    if have_sox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.aiff");
        sox(&[
            "-n",
            "-r",
            "16000",
            "-c",
            "1",
            path.to_str().unwrap(),
            "trim",
            "0",
            "0",
        ]);
        assert!(matches!(decode_file(&path), Err(AudioError::Empty)));
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(1234);
    let wav = std::fs::read(fixture("hello.wav")).unwrap();
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    // Random bytes of many lengths.
    for len in [1, 2, 3, 4, 11, 12, 13, 44, 100, 1000, 4096, 65_536] {
        inputs.push((0..len).map(|_| rng.random()).collect());
    }
    // Real magic numbers followed by random bytes.
    for magic in [
        &b"RIFF\x24\x00\x00\x00WAVEfmt "[..],
        b"fLaC",
        b"OggS",
        b"FORM\x00\x00\x10\x00AIFF",
        b"caff",
        b"ID3\x03\x00",
        b"\xff\xfb\x90\x64",
        b"\x1a\x45\xdf\xa3",
        b"\x00\x00\x00\x18ftypM4A ",
    ] {
        for len in [0, 8, 64, 3000] {
            let mut v = magic.to_vec();
            v.extend((0..len).map(|_| rng.random::<u8>()));
            inputs.push(v);
        }
    }
    // Every prefix length of a real header, and randomly corrupted copies of real files.
    for cut in 0..=64 {
        inputs.push(wav[..cut].to_vec());
    }
    let mut sources = vec![wav.clone()];
    if have_sox() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["c.flac", "c.ogg", "c.aiff"] {
            let path = dir.path().join(name);
            sox(&[
                fixture("hello.wav").to_str().unwrap(),
                path.to_str().unwrap(),
            ]);
            sources.push(std::fs::read(&path).unwrap());
        }
    }
    for source in &sources {
        for _ in 0..40 {
            let mut v = source.clone();
            for _ in 0..rng.random_range(1..20) {
                let i = rng.random_range(0..v.len().min(4096));
                v[i] = rng.random();
            }
            if rng.random_bool(0.3) {
                v.truncate(rng.random_range(0..v.len()));
            }
            inputs.push(v);
        }
    }
    let mut errors = 0;
    for input in &inputs {
        // Any result is fine as long as it is a value, not a panic or an abort.
        if let Err(e) = decode_bytes(input) {
            assert!(!e.to_string().is_empty());
            errors += 1;
        }
    }
    assert!(
        errors > inputs.len() / 2,
        "only {errors} of {} inputs were rejected",
        inputs.len()
    );
}
