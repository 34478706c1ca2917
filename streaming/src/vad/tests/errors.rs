//! Configuration parsing, validation and bad input.

use super::super::{DetectorKind, VadError, VoiceDetector, WebRtcVad};
use super::*;

#[test]
fn a_gate_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<SpeechGate>();
    assert_send::<WebRtcVad>();
    #[cfg(feature = "earshot")]
    assert_send::<super::super::EarshotVad>();
}

#[test]
fn config_files_name_only_what_they_change() {
    let config: GateConfig =
        serde_json::from_str(r#"{"endpoint_silence_ms": 800, "detector": "earshot"}"#)
            .expect("valid json");
    assert_eq!(config.endpoint_silence_ms, 800);
    assert_eq!(config.detector, DetectorKind::Earshot);
    assert_eq!(config.pre_roll_ms, GateConfig::default().pre_roll_ms);
    let unknown = serde_json::from_str::<GateConfig>(r#"{"silence_ms": 800}"#);
    assert!(unknown.is_err());
}

#[test]
fn defaults_match_the_openai_server_vad() {
    let d = GateConfig::default();
    assert_eq!(
        (d.endpoint_silence_ms, d.pre_roll_ms, d.max_segment_ms),
        (500, 300, 30_000)
    );
    assert_eq!(d.validate(), Ok(()));
}

#[test]
fn out_of_range_settings_are_refused_by_name() {
    let d = GateConfig::default;
    let cases: Vec<(GateConfig, &str)> = vec![
        (
            GateConfig {
                aggressiveness: 4,
                ..d()
            },
            "aggressiveness",
        ),
        (
            GateConfig {
                frame_ms: 15,
                ..d()
            },
            "frame_ms",
        ),
        (
            GateConfig {
                speech_threshold: 1.5,
                ..d()
            },
            "speech_threshold",
        ),
        (
            GateConfig {
                sustain_threshold: f32::NAN,
                ..d()
            },
            "sustain_threshold",
        ),
        (
            GateConfig {
                sustain_threshold: 0.9,
                ..d()
            },
            "sustain_threshold",
        ),
        (
            GateConfig {
                onset_window_ms: 5_000,
                ..d()
            },
            "onset_window_ms",
        ),
        (
            GateConfig {
                min_speech_ms: 300,
                ..d()
            },
            "min_speech_ms",
        ),
        (
            GateConfig {
                endpoint_silence_ms: 0,
                ..d()
            },
            "endpoint_silence_ms",
        ),
        (
            GateConfig {
                hangover_ms: 500,
                ..d()
            },
            "hangover_ms",
        ),
        (
            GateConfig {
                pre_roll_ms: 60_000,
                ..d()
            },
            "pre_roll_ms",
        ),
        (
            GateConfig {
                max_segment_ms: 500,
                ..d()
            },
            "max_segment_ms",
        ),
        (
            GateConfig {
                split_lookback_ms: 20_000,
                ..d()
            },
            "split_lookback_ms",
        ),
        (
            GateConfig {
                noise_floor_window_ms: 0,
                ..d()
            },
            "noise_floor_window_ms",
        ),
        (
            GateConfig {
                noise_margin_db: -1.0,
                ..d()
            },
            "noise_margin_db",
        ),
        (
            GateConfig {
                min_energy_dbfs: f32::INFINITY,
                ..d()
            },
            "min_energy_dbfs",
        ),
    ];
    for (config, field) in cases {
        match SpeechGate::new(config) {
            Err(VadError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            Err(other) => panic!("{field}: unexpected error {other}"),
            Ok(_) => panic!("{field}: accepted"),
        }
    }
}

#[cfg(not(feature = "earshot"))]
#[test]
fn earshot_needs_its_feature() {
    let config = GateConfig {
        detector: DetectorKind::Earshot,
        ..GateConfig::default()
    };
    assert!(matches!(
        SpeechGate::new(config),
        Err(VadError::DetectorUnavailable("earshot"))
    ));
}

#[test]
fn webrtc_refuses_bad_frames_without_panicking() {
    assert!(WebRtcVad::new(2, 25).is_err());
    assert!(WebRtcVad::new(7, 20).is_err());
    let mut vad = WebRtcVad::new(2, 20).expect("valid");
    assert_eq!(vad.frame_len(), 320);
    for len in [0, 1, 160, 319, 321, 480] {
        let frame = vec![0i16; len];
        assert_eq!(
            vad.speech_score(&frame),
            Err(VadError::FrameLength {
                expected: 320,
                got: len
            })
        );
    }
    // Still usable, and extreme samples are fine.
    assert_eq!(vad.speech_score(&[0; 320]), Ok(0.0));
    let square: Vec<i16> = (0..320)
        .map(|i| if i % 20 < 10 { i16::MAX } else { i16::MIN })
        .collect();
    assert!(vad.speech_score(&square).is_ok());
}

#[test]
fn non_finite_samples_are_refused_before_anything_is_consumed() {
    let mut gate = SpeechGate::new(GateConfig::default()).expect("valid config");
    let mut events = Vec::new();
    gate.push(&[0.0; 100], &mut events).expect("finite");
    let mut bad = vec![0.1f32; 50];
    bad[17] = f32::NAN;
    assert_eq!(
        gate.push(&bad, &mut events),
        Err(VadError::NonFiniteSample { index: 17 })
    );
    bad[17] = f32::NEG_INFINITY;
    assert_eq!(
        gate.push(&bad, &mut events),
        Err(VadError::NonFiniteSample { index: 17 })
    );
    assert_eq!(gate.position(), 100);
    // The gate carries on; samples beyond [-1, 1] are clipped for the detector only.
    gate.push(&[3.0; 1_000], &mut events).expect("finite");
    assert_eq!(gate.position(), 1_100);
}

#[test]
fn audio_after_finish_is_refused() {
    let mut gate = SpeechGate::new(GateConfig::default()).expect("valid config");
    let mut events = Vec::new();
    gate.finish(&mut events);
    assert_eq!(gate.push(&[0.0; 10], &mut events), Err(VadError::Finished));
    gate.finish(&mut events);
    assert_eq!(events, vec![]);
}

/// A detector that fails on its third frame.
struct Failing(u32);

impl VoiceDetector for Failing {
    fn frame_len(&self) -> usize {
        320
    }

    fn speech_score(&mut self, _: &[i16]) -> Result<f32, VadError> {
        self.0 += 1;
        if self.0 == 3 {
            Err(VadError::DetectorFailed("broken".into()))
        } else {
            Ok(1.0)
        }
    }
}

#[test]
fn a_failing_detector_stops_the_gate_with_its_error() {
    let mut gate =
        SpeechGate::with_detector(GateConfig::default(), Box::new(Failing(0))).expect("valid");
    let mut events = Vec::new();
    let err = gate.push(&[0.0; 2_000], &mut events);
    assert_eq!(err, Err(VadError::DetectorFailed("broken".into())));
    assert_eq!(gate.push(&[0.0; 10], &mut events), Err(VadError::Poisoned));
}

#[test]
fn detectors_with_unusable_frame_lengths_are_refused() {
    struct Odd;
    impl VoiceDetector for Odd {
        fn frame_len(&self) -> usize {
            0
        }
        fn speech_score(&mut self, _: &[i16]) -> Result<f32, VadError> {
            Ok(0.0)
        }
    }
    assert!(matches!(
        SpeechGate::with_detector(GateConfig::default(), Box::new(Odd)),
        Err(VadError::InvalidConfig {
            field: "detector",
            ..
        })
    ));
}
