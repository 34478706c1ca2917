//! Long streams, span-limit splits, chunking invariance and flush.

use proptest::prelude::*;

use super::measure::padded;
use super::*;

const MS: u64 = 16;

/// About `seconds` of uninterrupted talk: the clips' speech back to back with 0.1 s pauses,
/// between 1 s of silence.
fn long_talk(seconds: f32) -> Vec<f32> {
    let clips: Vec<Vec<f32>> = SPEECH_CLIPS
        .iter()
        .map(|c| {
            let clip = fixture(c);
            let (first, last) = speech_bounds(&clip);
            clip[first..last].to_vec()
        })
        .collect();
    let mut audio = silence(1.0);
    for clip in clips.iter().cycle() {
        if audio.len() as f32 >= (seconds + 1.0) * 16_000.0 {
            break;
        }
        audio.extend_from_slice(clip);
        audio.extend(silence(0.1));
    }
    audio.extend(silence(1.0));
    audio
}

/// RMS of the 80 ms around `at`.
fn rms_around(audio: &[f32], at: u64) -> f32 {
    let at = at as usize;
    let w = &audio[at.saturating_sub(640)..(at + 640).min(audio.len())];
    (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt()
}

/// Checks a long-talk run: one utterance covering all speech, pieces within the limit, cuts
/// in pauses.
fn check_long_talk(config: &GateConfig, audio: &[f32], events: &[GateEvent]) -> Vec<Piece> {
    let pieces = check_events(events, audio);
    let segs = segments(&pieces);
    let (first, last) = speech_bounds(audio);
    assert_eq!(segs.len(), 1, "{:?}: {segs:?}", config.detector);
    assert!(
        segs[0].0 <= first as u64 && segs[0].1 >= last as u64,
        "speech outside {segs:?}"
    );
    let limit = u64::from(config.max_segment_ms) * MS;
    let min_pieces = (segs[0].1 - segs[0].0).div_ceil(limit) as usize;
    assert!(pieces.len() >= min_pieces, "{} pieces", pieces.len());
    for p in &pieces {
        assert!(p.end - p.start <= limit, "piece {p:?} longer than {limit}");
    }
    for p in pieces.iter().filter(|p| p.after_split) {
        let rms = rms_around(audio, p.start);
        assert!(rms < 1e-3, "split at {} is not quiet: rms {rms}", p.start);
    }
    pieces
}

#[test]
fn a_seventy_second_utterance_is_split_at_pauses_without_losing_a_sample() {
    let audio = long_talk(70.0);
    for config in configs() {
        let started = std::time::Instant::now();
        let events = run(&config, &audio, 3_000);
        let speed = audio.len() as f64 / 16_000.0 / started.elapsed().as_secs_f64();
        let pieces = check_long_talk(&config, &audio, &events);
        let lens: Vec<f64> = pieces
            .iter()
            .map(|p| (p.end - p.start) as f64 / 16_000.0)
            .collect();
        println!(
            "{:?}: pieces of {lens:.2?} s, gate at {speed:.0}x real time",
            config.detector
        );
        assert_eq!(pieces.len(), 3);
        // Each cut sits in the last 5 s before the limit.
        for p in &pieces[..2] {
            assert!(p.end - p.start >= 25_000 * MS);
        }
    }
}

#[test]
fn flush_closes_the_open_segment_and_keeps_listening() {
    let clip = fixture("april");
    let (audio, first) = padded(&clip, 0.0);
    for config in configs() {
        let mut gate = SpeechGate::new(config.clone()).expect("valid config");
        let mut events = Vec::new();
        // Closed: flush does nothing.
        gate.push(&audio[..first], &mut events).expect("finite");
        gate.flush(&mut events);
        assert_eq!(events, vec![]);
        // Mid-speech, off the frame grid: the segment ends exactly at the flush point.
        let cut = first + 16_000 + 77;
        gate.push(&audio[first..cut], &mut events).expect("finite");
        assert!(gate.is_open());
        gate.flush(&mut events);
        assert!(!gate.is_open());
        assert_eq!(
            events.last(),
            Some(&GateEvent::SpeechEnd {
                end_sample: cut as u64
            })
        );
        check_events(&events, &audio);
        // Speech goes on: a new segment starts where the flushed one ended, nothing lost.
        gate.push(&audio[cut..], &mut events).expect("finite");
        gate.finish(&mut events);
        let segs = segments(&check_events(&events, &audio));
        assert_eq!(segs.len(), 2, "{:?}: {segs:?}", config.detector);
        assert_eq!(segs[1].0, cut as u64, "{:?}", config.detector);
        assert!(segs[1].1 >= (32_000 + speech_bounds(&clip).1) as u64);
    }
}

#[test]
fn flush_in_trailing_silence_ends_where_speech_stopped() {
    let clip = fixture("hello");
    let (audio, _) = padded(&clip, 0.0);
    let last = 32_000 + speech_bounds(&clip).1;
    let config = GateConfig::default();
    let mut gate = SpeechGate::new(config.clone()).expect("valid config");
    let mut events = Vec::new();
    // 400 ms after the speech: past the hangover, short of the endpoint.
    let now = last + 400 * MS as usize;
    gate.push(&audio[..now], &mut events).expect("finite");
    assert!(gate.is_open());
    gate.flush(&mut events);
    let Some(GateEvent::SpeechEnd { end_sample }) = events.last().cloned() else {
        panic!("no end: {events:?}")
    };
    assert!(
        end_sample < now as u64 - 100 * MS,
        "held-back silence was sent"
    );
    assert!(end_sample >= last as u64);
    check_events(&events, &audio);
}

/// The 70 s stream chopped into the given chunk sizes (cycled).
fn run_chunked(config: &GateConfig, audio: &[f32], sizes: &[usize]) -> Vec<GateEvent> {
    let mut gate = SpeechGate::new(config.clone()).expect("valid config");
    let mut events = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at == audio.len() {
            break;
        }
        let end = (at + size).min(audio.len());
        gate.push(&audio[at..end], &mut events).expect("finite");
        at = end;
    }
    gate.finish(&mut events);
    events
}

fn chunking_audio() -> Vec<f32> {
    // Two utterances, the second under noise, with pauses long and short.
    let mut audio = padded(&fixture("fox"), 0.0).0;
    audio.extend(padded(&fixture("lights"), 1.0).0);
    audio
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn events_do_not_depend_on_chunking(
        sizes in prop::collection::vec(prop_oneof![1usize..8, 8usize..700, 700usize..40_000], 1..12),
        earshot in any::<bool>(),
    ) {
        let audio = chunking_audio();
        let configs = configs();
        let config = &configs[usize::from(earshot) % configs.len()];
        let one_shot = run(config, &audio, audio.len());
        prop_assert!(!one_shot.is_empty());
        let chunked = run_chunked(config, &audio, &sizes);
        prop_assert!(chunked == one_shot, "events differ for chunk sizes {:?}", sizes);
    }

    #[test]
    fn any_valid_config_keeps_the_invariants_on_a_long_stream(
        frame_ms in prop::sample::select(vec![10u32, 20, 30]),
        aggressiveness in 0u8..=3,
        max_segment_ms in 4_000u32..12_000,
        lookback_pct in 10u32..=50,
        pre_roll_ms in 0u32..=1_000,
        endpoint_silence_ms in 200u32..=1_500,
        hangover_pct in 0u32..=90,
    ) {
        let config = GateConfig {
            aggressiveness,
            frame_ms,
            max_segment_ms,
            split_lookback_ms: max_segment_ms * lookback_pct / 100,
            pre_roll_ms,
            endpoint_silence_ms,
            hangover_ms: (endpoint_silence_ms - frame_ms) * hangover_pct / 100,
            ..GateConfig::default()
        };
        let audio = long_talk(20.0);
        let events = run(&config, &audio, 2_500);
        // Grammar, exact audio tiling and the span limit hold for every setting.
        let pieces = check_events(&events, &audio);
        let limit = u64::from(max_segment_ms) * MS;
        for p in &pieces {
            prop_assert!(p.end - p.start <= limit);
        }
        prop_assert!(!pieces.is_empty());
    }
}
