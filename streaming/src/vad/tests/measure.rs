//! Figures behind the default settings: per-frame decision rates and onset delays.
//! Run with `--nocapture` to see them; the assertions pin the properties the defaults rely on.

use super::super::classify::{Classifier, Verdict};
use super::super::detector::VoiceDetector;
use super::super::gate::make_detector;
use super::super::{GateConfig, WebRtcVad};
use super::*;

fn verdicts(
    detector: Box<dyn VoiceDetector>,
    samples: &[f32],
    config: &GateConfig,
) -> Vec<Verdict> {
    let mut c = Classifier::new(config, detector);
    let n = c.frame_len();
    samples
        .chunks_exact(n)
        .map(|f| c.classify(f, &[]).expect("valid frame"))
        .collect()
}

/// Per-frame decisions of the detector alone, and of the gate's classifier (detector plus
/// energy test), from two fresh instances fed the same frames.
fn decisions(make: &MakeDetector, samples: &[f32], config: &GateConfig) -> Vec<(bool, bool)> {
    let mut alone = make();
    let n = alone.frame_len();
    let pcm = |f: &[f32]| {
        f.iter()
            .map(|s| (s * 32768.0).round() as i16)
            .collect::<Vec<_>>()
    };
    let scores = samples
        .chunks_exact(n)
        .map(|f| alone.speech_score(&pcm(f)).expect("valid frame"));
    let verdicts = verdicts(make(), samples, config);
    scores
        .zip(verdicts)
        .map(|(s, v)| (s >= config.speech_threshold, v.onset))
        .collect()
}

/// Percentages of frames the detector alone, and detector plus energy test, call speech.
fn rates(d: &[(bool, bool)]) -> (f64, f64) {
    let pct = |n: usize| 100.0 * n as f64 / d.len().max(1) as f64;
    (
        pct(d.iter().filter(|d| d.0).count()),
        pct(d.iter().filter(|d| d.1).count()),
    )
}

type MakeDetector = Box<dyn Fn() -> Box<dyn VoiceDetector>>;

fn detectors() -> Vec<(String, MakeDetector)> {
    let mut out: Vec<(String, MakeDetector)> = Vec::new();
    for aggr in 0..=3u8 {
        for ms in [10, 20, 30] {
            out.push((
                format!("webrtc a{aggr} {ms}ms"),
                Box::new(move || Box::new(WebRtcVad::new(aggr, ms).expect("valid"))),
            ));
        }
    }
    #[cfg(feature = "earshot")]
    out.push((
        "earshot 16ms".into(),
        Box::new(|| Box::new(super::super::EarshotVad::new())),
    ));
    out
}

/// Speech clip between 2 s of silence, optionally with the fixture noise under everything.
pub(super) fn padded(clip: &[f32], noise_gain: f32) -> (Vec<f32>, usize) {
    let mut out = silence(2.0);
    out.extend_from_slice(clip);
    out.extend(silence(2.0));
    if noise_gain > 0.0 {
        let noise = fixture("noise");
        for (i, s) in out.iter_mut().enumerate() {
            *s += noise_gain * noise[i % noise.len()];
        }
    }
    (out, 32_000 + speech_bounds(clip).0)
}

#[test]
fn decision_rates_and_onsets() {
    let config = GateConfig::default();
    let noise = fixture("noise");
    let quiet = silence(2.0);
    let long_noise: Vec<f32> = [Noise::LowPassed, Noise::Pink, Noise::Brown]
        .iter()
        .enumerate()
        .flat_map(|(i, &kind)| synthetic_noise(kind, 20.0, -34.0, i as u64 + 1))
        .collect();
    let clips: Vec<Vec<f32>> = SPEECH_CLIPS.iter().map(|c| fixture(c)).collect();
    println!(
        "per-frame speech %, detector alone / with energy test; onset = first voiced frame - first \
         sound, ms, per clip (clean | fixture noise under speech)"
    );
    println!(
        "{:<16} {:>13} {:>13} {:>13} {:>8} | onset",
        "detector", "speech", "noise.wav", "synth noise", "silence"
    );
    for (name, make) in detectors() {
        let mut speech = Vec::new();
        for clip in &clips {
            let v = decisions(&make, clip, &config);
            let n = make().frame_len();
            let (first, last) = speech_bounds(clip);
            speech.extend_from_slice(&v[first / n..(last / n).min(v.len())]);
        }
        let (sd, sg) = rates(&speech);
        let (nd, ng) = rates(&decisions(&make, &noise, &config));
        let (ld, lg) = rates(&decisions(&make, &long_noise, &config));
        let (qd, _) = rates(&decisions(&make, &quiet, &config));
        let mut onsets = [Vec::new(), Vec::new()];
        for clip in &clips {
            for (k, gain) in [0.0, 1.0].into_iter().enumerate() {
                let (audio, first) = padded(clip, gain);
                let n = make().frame_len();
                let delay = verdicts(make(), &audio, &config)
                    .iter()
                    .position(|v| v.onset)
                    .map_or("none".to_owned(), |f| {
                        format!("{:.0}", ((f * n) as f64 - first as f64) / 16.0)
                    });
                onsets[k].push(delay);
            }
        }
        println!(
            "{name:<16} {sd:>5.1}/{sg:>5.1} {nd:>5.1}/{ng:>5.1} {ld:>5.1}/{lg:>5.1} {qd:>8.1} | {} | {}",
            onsets[0].join(" "),
            onsets[1].join(" "),
        );
        assert_eq!(qd, 0.0, "{name}: digital silence scored as speech");
        if name == "webrtc a2 20ms" {
            // The defaults: nearly all speech frames voiced, no noise frame.
            assert!(sg > 90.0 && ng == 0.0 && lg == 0.0, "{sg} {ng} {lg}");
        }
    }
}

/// Longest run of frames inside the speech span that do not keep a segment open, in ms.
fn longest_gap_ms(v: &[Verdict], n: usize, first: usize, last: usize) -> f64 {
    let (mut run, mut best) = (0usize, 0usize);
    for v in &v[first / n..(last / n).min(v.len())] {
        run = if v.sustain { 0 } else { run + 1 };
        best = best.max(run);
    }
    (best * n) as f64 / 16.0
}

#[test]
fn segment_bounds_on_padded_clips() {
    for config in configs() {
        println!(
            "{}: segments of each padded clip: (start - first sound, end - last sound) in ms",
            config.detector.name()
        );
        for (gain, label) in [
            (0.0, "clean"),
            (1.0, "noise x1"),
            (2.0, "noise x2"),
            (3.0, "noise x3"),
        ] {
            let mut line = Vec::new();
            for name in SPEECH_CLIPS {
                let clip = fixture(name);
                let (audio, first) = padded(&clip, gain);
                let last = first - speech_bounds(&clip).0 + speech_bounds(&clip).1;
                let pieces = check_events(&run(&config, &audio, 4096), &audio);
                let segs: Vec<String> = segments(&pieces)
                    .iter()
                    .map(|&(s, e)| {
                        format!(
                            "({:.0},{:.0})",
                            (s as f64 - first as f64) / 16.0,
                            (e as f64 - last as f64) / 16.0
                        )
                    })
                    .collect();
                let detector = make_detector(&config).expect("valid config");
                let n = detector.frame_len();
                let v = verdicts(detector, &audio, &config);
                let gap = longest_gap_ms(&v, n, first, last);
                let speech_rms =
                    10.0 * (clip.iter().map(|s| s * s).sum::<f32>() / clip.len() as f32).log10();
                let snr = speech_rms - (-34.0 + 20.0 * f32::log10(gain.max(1e-9)));
                line.push(format!(
                    "{name} {} gap {gap:.0} snr {snr:.0}",
                    segs.join(" ")
                ));
            }
            println!("{label:<9} {}", line.join(" | "));
        }
    }
}
