//! The gate on the fixture clips: silence, noise, single utterances, pauses.

use super::measure::padded;
use super::*;

const MS: u64 = 16;

fn events_for(config: &GateConfig, audio: &[f32]) -> (Vec<GateEvent>, Vec<Piece>) {
    let events = run(config, audio, 1_000);
    let pieces = check_events(&events, audio);
    (events, pieces)
}

#[test]
fn silence_produces_no_events() {
    let audio = fixture("silence");
    for config in configs() {
        for chunk in [1, 320, 32_000] {
            assert_eq!(run(&config, &audio, chunk), vec![], "{:?}", config.detector);
        }
    }
}

#[test]
fn fixture_noise_never_opens_the_gate() {
    let noise = fixture("noise");
    // Ten seconds of the clip looped, besides the clip itself.
    let looped: Vec<f32> = noise.iter().copied().cycle().take(160_000).collect();
    for config in configs() {
        assert_eq!(run(&config, &noise, 1_000), vec![], "{:?}", config.detector);
        assert_eq!(
            run(&config, &looped, 1_000),
            vec![],
            "{:?}",
            config.detector
        );
    }
}

#[test]
fn noise_never_opens_the_gate_at_any_webrtc_setting() {
    let noise = fixture("noise");
    for aggressiveness in 0..=3 {
        for frame_ms in [10, 20, 30] {
            let config = GateConfig {
                aggressiveness,
                frame_ms,
                ..GateConfig::default()
            };
            assert_eq!(
                run(&config, &noise, 4_096),
                vec![],
                "a{aggressiveness} {frame_ms} ms"
            );
        }
    }
}

#[test]
fn steady_synthetic_noise_never_opens_the_gate() {
    for config in configs() {
        for (i, kind) in [Noise::LowPassed, Noise::Pink, Noise::Brown]
            .into_iter()
            .enumerate()
        {
            for level in [-50.0, -34.0, -20.0] {
                let noise = synthetic_noise(kind, 30.0, level, 7 + i as u64);
                let events = run(&config, &noise, 4_096);
                assert_eq!(
                    events,
                    vec![],
                    "{:?} {kind:?} at {level} dBFS",
                    config.detector
                );
            }
        }
    }
}

#[test]
fn each_clip_is_one_segment_covering_its_speech() {
    for config in configs() {
        for name in SPEECH_CLIPS {
            let clip = fixture(name);
            let (first, last) = speech_bounds(&clip);
            let (_, pieces) = events_for(&config, &clip);
            let segs = segments(&pieces);
            assert_eq!(segs.len(), 1, "{name} {:?}: {segs:?}", config.detector);
            let (start, end) = segs[0];
            // The clips start within 60 ms, so the pre-roll reaches back to the stream start.
            assert_eq!(start, 0, "{name}");
            assert!(
                end >= last as u64 - 60 * MS,
                "{name}: ends at {end}, speech at {last}"
            );
            assert!(first as u64 >= start);
        }
    }
}

#[test]
fn padded_clip_onset_is_found_and_the_pre_roll_keeps_the_first_word() {
    for config in configs() {
        let pre_roll = u64::from(config.pre_roll_ms) * MS;
        let hangover = u64::from(config.hangover_ms) * MS;
        for name in SPEECH_CLIPS {
            let clip = fixture(name);
            let (audio, first) = padded(&clip, 0.0);
            let first = first as u64;
            let last = (32_000 + speech_bounds(&clip).1) as u64;
            let (events, pieces) = events_for(&config, &audio);
            let segs = segments(&pieces);
            assert_eq!(segs.len(), 1, "{name} {:?}: {segs:?}", config.detector);
            let (start, end) = segs[0];
            // The onset is the segment start plus the pre-roll; it lands within 50 ms of the
            // first sound, and the segment keeps all audio from 250 ms before it.
            let onset = start + pre_roll;
            assert!(
                onset + 50 * MS >= first && onset <= first + 50 * MS,
                "{name} {:?}: onset {onset}, first sound {first}",
                config.detector
            );
            assert!(start + 250 * MS <= first, "{name}: pre-roll too short");
            // Ends shortly after the last sound: the hangover, not the endpoint silence.
            assert!(
                end >= last,
                "{name}: segment ends at {end} before speech at {last}"
            );
            assert!(
                end <= last + hangover + 50 * MS,
                "{name}: ends late at {end}, speech {last}"
            );
            assert!(matches!(events[0], GateEvent::SpeechStart { .. }));
            assert!(matches!(events.last(), Some(GateEvent::SpeechEnd { .. })));
        }
    }
}

/// The speech of `clip` (first to last sound) twice with a pause of `gap_s` between, 2 s of
/// silence around.
fn twice(clip: &[f32], gap_s: f32) -> Vec<f32> {
    let (first, last) = speech_bounds(clip);
    let clip = &clip[first..last];
    let mut audio = silence(2.0);
    audio.extend_from_slice(clip);
    audio.extend(silence(gap_s));
    audio.extend_from_slice(clip);
    audio.extend(silence(2.0));
    audio
}

#[test]
fn a_long_pause_splits_utterances_and_a_short_one_does_not() {
    for config in configs() {
        assert_eq!(config.endpoint_silence_ms, 500);
        for name in SPEECH_CLIPS {
            let clip = fixture(name);
            let (_, pieces) = events_for(&config, &twice(&clip, 1.5));
            assert_eq!(
                segments(&pieces).len(),
                2,
                "{name} {:?} with 1.5 s gap",
                config.detector
            );
            let (_, pieces) = events_for(&config, &twice(&clip, 0.3));
            assert_eq!(
                segments(&pieces).len(),
                1,
                "{name} {:?} with 0.3 s gap",
                config.detector
            );
        }
    }
}

#[test]
fn endpoint_silence_is_configurable() {
    // A 1.1 s pause ends the segment at 500 ms endpoint silence, not at 2000 ms.
    let clip = fixture("fox");
    let audio = twice(&clip, 1.1);
    let short = GateConfig::default();
    let long = GateConfig {
        endpoint_silence_ms: 2_000,
        ..GateConfig::default()
    };
    assert_eq!(segments(&events_for(&short, &audio).1).len(), 2);
    assert_eq!(segments(&events_for(&long, &audio).1).len(), 1);
}

#[test]
fn speech_under_noise_still_opens() {
    let speech_rms = -21.0; // measured: the clips sit at -20 … -22 dBFS
    let noise_rms = -34.0; // the noise clip
    for config in configs() {
        // Noise gains 1 and 2: SNR about 13 and 7 dB.
        for gain in [1.0f32, 2.0] {
            let snr = speech_rms - noise_rms - 20.0 * gain.log10();
            for name in SPEECH_CLIPS {
                let clip = fixture(name);
                let (audio, first) = padded(&clip, gain);
                let (_, pieces) = events_for(&config, &audio);
                let segs = segments(&pieces);
                assert_eq!(
                    segs.len(),
                    1,
                    "{name} {:?} at {snr:.0} dB SNR: {segs:?}",
                    config.detector
                );
                let (start, end) = segs[0];
                assert!(
                    start <= first as u64,
                    "{name} at {snr:.0} dB: first word cut"
                );
                let last = (32_000 + speech_bounds(&clip).1) as u64;
                assert!(
                    end + 150 * MS >= last,
                    "{name} at {snr:.0} dB: ends at {end}, speech {last}"
                );
            }
        }
    }
}
