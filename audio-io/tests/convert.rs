//! Conversion to 16 kHz mono: length, exactness, chunking independence and signal quality.

mod common;

use common::{best_correlation, bits, fixture, goertzel, rms_diff, sine};
use hark_audio_io::{
    AudioError, DecodedAudio, StreamConverter, decode_file, expected_output_len, to_mono_16k,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Pushes `input` in chunks of the given sizes (cycled), then finishes.
fn convert_chunked(rate: u32, channels: u16, input: &[f32], chunks: &[usize]) -> Vec<f32> {
    let mut converter = StreamConverter::new(rate, channels).unwrap();
    let mut out = Vec::new();
    let mut rest = input;
    for &size in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(size.min(rest.len()));
        converter.push(now, &mut out);
        rest = later;
    }
    converter.finish(&mut out).unwrap();
    out
}

#[test]
fn mono_16k_passes_through_bit_exactly() {
    let audio = decode_file(fixture("hello.wav")).unwrap();
    assert_eq!((audio.sample_rate, audio.channels), (16_000, 1));
    let out = to_mono_16k(&audio).unwrap();
    assert_eq!(bits(&out), bits(&audio.samples));
    // Also in odd chunks, including values at the edges of the range and negative zero.
    let mut edge = vec![1.0, -1.0, -0.0, 0.0, f32::MIN_POSITIVE, 0.999_999_9];
    edge.extend_from_slice(&audio.samples);
    let chunked = convert_chunked(16_000, 1, &edge, &[1, 3, 777]);
    assert_eq!(bits(&chunked), bits(&edge));
}

#[test]
fn stereo_16k_is_the_channel_average() {
    let left = sine(440.0, 16_000, 0.1, 0.5, 1);
    let right = sine(1000.0, 16_000, 0.1, 0.25, 1);
    let stereo: Vec<f32> = left
        .iter()
        .zip(&right)
        .flat_map(|(&l, &r)| [l, r])
        .collect();
    let out = convert_chunked(16_000, 2, &stereo, &[3]); // splits frames across pushes
    let expected: Vec<f32> = left
        .iter()
        .zip(&right)
        .map(|(&l, &r)| (l + r) / 2.0)
        .collect();
    assert_eq!(bits(&out), bits(&expected));
}

#[test]
fn out_of_range_and_nan_inputs_are_sanitised() {
    let input = [2.0, -3.0, f32::NAN, 0.5, f32::INFINITY, f32::NEG_INFINITY];
    let out = convert_chunked(16_000, 1, &input, &[6]);
    assert_eq!(out, vec![1.0, -1.0, 0.0, 0.5, 1.0, -1.0]);
    let loud = sine(1000.0, 44_100, 0.2, 1.5, 1);
    let out = convert_chunked(44_100, 1, &loud, &[512]);
    assert!(out.iter().all(|s| (-1.0..=1.0).contains(s)));
}

#[test]
fn output_length_is_the_rounded_rate_ratio_for_any_chunking() {
    let mut rng = StdRng::seed_from_u64(7);
    let rates = [
        8_000, 11_025, 12_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 192_000,
        44_101,
    ];
    for rate in rates {
        for channels in [1u16, 2] {
            // An awkward length that is not a multiple of any block size.
            let frames = rate as usize * 3 / 4 + 17;
            let input: Vec<f32> = (0..frames * usize::from(channels))
                .map(|_| rng.random_range(-0.5..0.5))
                .collect();
            let expected = expected_output_len(frames as u64, rate) as usize;
            let expected_rounded = (frames as f64 * 16_000.0 / f64::from(rate)).round() as usize;
            assert_eq!(expected, expected_rounded);
            for chunks in [&[1usize][..], &[7, 1, 160], &[4096], &[usize::MAX]] {
                let out = convert_chunked(rate, channels, &input, chunks);
                assert_eq!(
                    out.len(),
                    expected,
                    "rate {rate}, {channels} ch, chunks {chunks:?}"
                );
            }
        }
    }
}

#[test]
fn chunked_conversion_equals_one_shot_exactly() {
    let audio = decode_file(fixture("hello-44k1-stereo.wav")).unwrap();
    let one_shot = to_mono_16k(&audio).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..4 {
        let chunks: Vec<usize> = (0..64).map(|_| rng.random_range(1..3000)).collect();
        let chunked = convert_chunked(44_100, 2, &audio.samples, &chunks);
        assert_eq!(bits(&chunked), bits(&one_shot), "chunks {:?}", &chunks[..8]);
    }
    let single_samples = convert_chunked(44_100, 2, &audio.samples, &[1]);
    assert_eq!(bits(&single_samples), bits(&one_shot));
}

#[test]
fn sine_keeps_its_frequency_and_shape_at_every_rate() {
    for rate in [8_000, 24_000, 44_100, 48_000] {
        let input = sine(1000.0, rate, 1.0, 0.5, 2);
        let out = convert_chunked(rate, 2, &input, &[441]);
        assert_eq!(out.len(), 16_000);

        let interior = &out[800..15_200];
        let at_1k = goertzel(interior, 1000.0, 16_000);
        assert!(
            (at_1k - 0.0625).abs() < 1e-4,
            "{rate} Hz: power at 1 kHz {at_1k}"
        );
        for other in [250.0, 500.0, 1500.0, 2000.0, 3000.0, 5000.0, 7000.0] {
            let p = goertzel(interior, other, 16_000);
            assert!(p < at_1k * 1e-4, "{rate} Hz: power at {other} Hz is {p}");
        }

        // Aligned with the input: compare against the ideal 16 kHz sine sample by sample.
        let ideal = sine(1000.0, 16_000, 1.0, 0.5, 1);
        let err = rms_diff(interior, &ideal[800..15_200]);
        assert!(err < 1e-5, "{rate} Hz: rms error {err}");
    }
}

#[test]
fn content_above_8k_is_filtered_not_aliased() {
    for rate in [24_000, 44_100, 48_000] {
        // 10 kHz would fold back to 6 kHz without the anti-aliasing filter.
        let input = sine(10_000.0, rate, 0.5, 0.5, 1);
        let out = convert_chunked(rate, 1, &input, &[1000]);
        let interior = &out[400..out.len() - 400];
        let rms = (interior.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
            / interior.len() as f64)
            .sqrt();
        assert!(
            rms < 0.5 / 2f64.sqrt() * 1e-3,
            "{rate} Hz: residual rms {rms}"
        );
    }
}

#[test]
fn converter_is_reusable_after_finish() {
    let input = sine(1000.0, 48_000, 0.3, 0.5, 1);
    let mut converter = StreamConverter::new(48_000, 1).unwrap();
    let mut first = Vec::new();
    converter.push(&input, &mut first);
    converter.finish(&mut first).unwrap();
    let mut second = Vec::new();
    converter.push(&input, &mut second);
    converter.finish(&mut second).unwrap();
    assert_eq!(bits(&first), bits(&second));
}

#[test]
fn resampled_fixture_matches_the_16k_original() {
    let reference = decode_file(fixture("hello.wav")).unwrap().samples;
    for (name, min_correlation) in [("hello-44k1-stereo.wav", 0.9999), ("hello-8k.wav", 0.99)] {
        let converted = to_mono_16k(&decode_file(fixture(name)).unwrap()).unwrap();
        assert!(converted.len().abs_diff(reference.len()) <= 1, "{name}");
        let (corr, lag) = best_correlation(&reference, &converted, 40);
        assert!(
            corr > min_correlation,
            "{name}: correlation {corr} at lag {lag}"
        );
        assert!(lag.abs() <= 2, "{name}: output is shifted by {lag} samples");
    }
}

#[test]
fn unsupported_rates_and_layouts_are_rejected() {
    for rate in [1, 4_000, 7_999, 192_001, 384_000] {
        match StreamConverter::new(rate, 1) {
            Err(AudioError::UnsupportedSampleRate { rate: r, .. }) => assert_eq!(r, rate),
            other => panic!("{rate} Hz: {other:?}"),
        }
    }
    assert!(matches!(
        StreamConverter::new(0, 1),
        Err(AudioError::ZeroSampleRate)
    ));
    assert!(matches!(
        StreamConverter::new(16_000, 0),
        Err(AudioError::ZeroChannels)
    ));
    let audio = DecodedAudio {
        samples: vec![0.0; 100],
        sample_rate: 4_000,
        channels: 1,
    };
    assert!(matches!(
        to_mono_16k(&audio),
        Err(AudioError::UnsupportedSampleRate { .. })
    ));
}

#[test]
fn a_stream_ending_inside_a_frame_is_reported() {
    let mut converter = StreamConverter::new(44_100, 2).unwrap();
    let mut out = Vec::new();
    converter.push(&sine(1000.0, 44_100, 0.1, 0.5, 2), &mut out);
    converter.push(&[0.25], &mut out);
    let result = converter.finish(&mut out);
    assert!(
        matches!(
            result,
            Err(AudioError::IncompleteFrame {
                samples: 1,
                channels: 2
            })
        ),
        "{result:?}"
    );
    // Every complete frame was still converted.
    assert_eq!(out.len(), expected_output_len(4410, 44_100) as usize);
}
