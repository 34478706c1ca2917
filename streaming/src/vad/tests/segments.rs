//! `speech_segments`: a whole recording cut where a live stream of it is cut.

use super::super::speech_segments;
use super::*;

fn pieces_of(config: &GateConfig, audio: &[f32], chunk: usize) -> Vec<std::ops::Range<usize>> {
    check_events(&run(config, audio, chunk), audio)
        .into_iter()
        .map(|p| p.start as usize..p.end as usize)
        .collect()
}

#[test]
fn a_recording_gets_the_pieces_a_stream_of_it_gets() {
    let mut audio = silence(1.0);
    for name in SPEECH_CLIPS {
        audio.extend(fixture(name));
        audio.extend(silence(1.2));
    }
    let config = GateConfig::default();
    let segments = speech_segments(&audio, &config).expect("valid config");
    assert_eq!(segments, pieces_of(&config, &audio, 320));
    assert_eq!(segments.len(), SPEECH_CLIPS.len(), "{segments:?}");
    assert!(segments.windows(2).all(|w| w[0].end <= w[1].start));
}

#[test]
fn noise_and_silence_give_no_segment() {
    let noise = fixture("noise");
    let config = GateConfig::default();
    for audio in [noise, silence(3.0), Vec::new()] {
        let segments = speech_segments(&audio, &config).expect("valid config");
        assert!(segments.is_empty(), "{segments:?}");
    }
}

#[test]
fn speech_without_pauses_is_cut_within_the_span_limit() {
    // Clips butted together with gaps shorter than the endpoint silence: one utterance.
    let mut audio = Vec::new();
    while audio.len() < 16_000 * 25 {
        for name in SPEECH_CLIPS {
            audio.extend(fixture(name));
            audio.extend(silence(0.1));
        }
    }
    let config = GateConfig {
        max_segment_ms: 8_000,
        split_lookback_ms: 3_000,
        ..GateConfig::default()
    };
    let segments = speech_segments(&audio, &config).expect("valid config");
    assert!(segments.len() >= 3, "{segments:?}");
    assert!(
        segments.iter().all(|s| s.len() <= 8 * 16_000),
        "{segments:?}"
    );
    assert_eq!(segments, pieces_of(&config, &audio, 16_000));
}

#[test]
fn a_bad_config_or_bad_audio_is_an_error() {
    let config = GateConfig {
        frame_ms: 15,
        ..GateConfig::default()
    };
    assert!(speech_segments(&silence(1.0), &config).is_err());
    assert!(speech_segments(&[0.0, f32::NAN], &GateConfig::default()).is_err());
}
