//! Tests of the gate on the espeak-ng fixture clips, silence and noise.

mod clips;
mod errors;
mod measure;
mod segments;
mod stream;

use std::path::PathBuf;

use super::{GateConfig, GateEvent, SpeechGate};

/// 16 kHz mono fixture clip as `f32` in `[-1, 1]`.
pub(super) fn fixture(name: &str) -> Vec<f32> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/audio")
        .join(format!("{name}.wav"));
    let mut reader = hound::WavReader::open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16)
    );
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("readable sample")) / 32768.0)
        .collect()
}

/// The default config and, with the `earshot` feature, the same with earshot.
pub(super) fn configs() -> Vec<GateConfig> {
    let mut out = vec![GateConfig::default()];
    if cfg!(feature = "earshot") {
        out.push(GateConfig {
            detector: super::DetectorKind::Earshot,
            ..GateConfig::default()
        });
    }
    out
}

/// The speech clips of the fixture manifest.
pub(super) const SPEECH_CLIPS: [&str; 5] = ["fox", "callback", "lights", "hello", "april"];

/// Index of the first and one past the last sample louder than -60 dBFS.
pub(super) fn speech_bounds(samples: &[f32]) -> (usize, usize) {
    let loud = |s: &f32| s.abs() >= 1e-3;
    let first = samples.iter().position(loud).expect("clip has sound");
    let last = samples.iter().rposition(loud).expect("clip has sound");
    (first, last + 1)
}

pub(super) fn silence(seconds: f32) -> Vec<f32> {
    vec![0.0; (seconds * 16_000.0) as usize]
}

/// Runs a fresh default-configured gate (with `config`) over `samples` in chunks of
/// `chunk` samples and finishes the stream.
pub(super) fn run(config: &GateConfig, samples: &[f32], chunk: usize) -> Vec<GateEvent> {
    let mut gate = SpeechGate::new(config.clone()).expect("valid config");
    let mut events = Vec::new();
    for part in samples.chunks(chunk.max(1)) {
        gate.push(part, &mut events).expect("finite audio");
    }
    gate.finish(&mut events);
    events
}

/// One segment piece as the engine would see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Piece {
    pub start: u64,
    pub end: u64,
    /// Whether the piece began at a split rather than at a `SpeechStart`.
    pub after_split: bool,
}

/// Checks the event grammar and that every `Audio` sample equals the input at its position
/// and tiles its segment exactly; returns the segment pieces.
pub(super) fn check_events(events: &[GateEvent], input: &[f32]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut open: Option<(u64, bool)> = None;
    let mut next_audio = 0u64;
    let mut last_end = 0u64;
    for event in events {
        match event {
            GateEvent::SpeechStart { start_sample } => {
                assert!(open.is_none(), "start inside a segment: {event:?}");
                assert!(
                    *start_sample >= last_end,
                    "segment overlaps the previous one"
                );
                open = Some((*start_sample, false));
                next_audio = *start_sample;
            }
            GateEvent::Audio {
                start_sample,
                samples,
            } => {
                assert!(open.is_some(), "audio outside a segment at {start_sample}");
                assert_eq!(*start_sample, next_audio, "audio has a gap or overlap");
                assert!(!samples.is_empty(), "empty audio event");
                let at = *start_sample as usize;
                assert!(
                    samples[..] == input[at..at + samples.len()],
                    "audio at {at} differs from the input"
                );
                next_audio += samples.len() as u64;
            }
            GateEvent::SegmentSplit { at_sample } => {
                let (start, after_split) = open.expect("split outside a segment");
                assert!(
                    *at_sample > start && *at_sample <= next_audio,
                    "split out of range"
                );
                pieces.push(Piece {
                    start,
                    end: *at_sample,
                    after_split,
                });
                open = Some((*at_sample, true));
            }
            GateEvent::SpeechEnd { end_sample } => {
                let (start, after_split) = open.take().expect("end outside a segment");
                assert_eq!(
                    *end_sample, next_audio,
                    "segment end is not where its audio ends"
                );
                assert!(*end_sample > start, "empty segment piece");
                pieces.push(Piece {
                    start,
                    end: *end_sample,
                    after_split,
                });
                last_end = *end_sample;
            }
        }
    }
    assert!(open.is_none(), "segment left open after finish");
    pieces
}

/// Whole segments (pieces joined across splits) as `(start, end)`.
pub(super) fn segments(pieces: &[Piece]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for p in pieces {
        match out.last_mut() {
            Some(last) if p.after_split => {
                assert_eq!(last.1, p.start);
                last.1 = p.end;
            }
            _ => out.push((p.start, p.end)),
        }
    }
    out
}

/// Colours of synthetic steady noise.
#[derive(Debug, Clone, Copy)]
pub(super) enum Noise {
    /// White noise through a one-pole low-pass (like the fixture's noise clip).
    LowPassed,
    /// Equal energy per octave, as most room and fan noise roughly is.
    Pink,
    /// Integrated white noise: rumble.
    Brown,
}

/// `seconds` of seeded steady noise at `rms_dbfs`.
pub(super) fn synthetic_noise(kind: Noise, seconds: f32, rms_dbfs: f32, seed: u64) -> Vec<f32> {
    let mut state = seed.max(1);
    let mut white = move || {
        // xorshift64*: deterministic and good enough for noise.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let n = (seconds * 16_000.0) as usize;
    let mut y = [0.0f32; 7];
    let mut out: Vec<f32> = (0..n)
        .map(|_| {
            let x = white();
            match kind {
                Noise::LowPassed => {
                    y[0] += 0.25 * (x - y[0]);
                    y[0]
                }
                Noise::Pink => {
                    // Paul Kellet's refined pink filter.
                    y[0] = 0.99886 * y[0] + x * 0.0555179;
                    y[1] = 0.99332 * y[1] + x * 0.0750759;
                    y[2] = 0.96900 * y[2] + x * 0.153852;
                    y[3] = 0.86650 * y[3] + x * 0.3104856;
                    y[4] = 0.55000 * y[4] + x * 0.5329522;
                    y[5] = -0.7616 * y[5] - x * 0.0168980;
                    let p = y[..6].iter().sum::<f32>() + y[6] + x * 0.5362;
                    y[6] = x * 0.115926;
                    p
                }
                Noise::Brown => {
                    y[0] = 0.995 * y[0] + 0.05 * x;
                    y[0]
                }
            }
        })
        .collect();
    let rms = (out.iter().map(|s| s * s).sum::<f32>() / n as f32).sqrt();
    let gain = 10f32.powf(rms_dbfs / 20.0) / rms;
    out.iter_mut().for_each(|s| *s *= gain);
    out
}
