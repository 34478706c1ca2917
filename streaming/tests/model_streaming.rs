//! Streaming equals offline: the mel front-end, the encoder and the decoder caches produce the
//! offline results for any chunking of the input, and with VAD off a stream's finals are the
//! offline transcription.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use burn::backend::Flex;
use burn::tensor::Tensor;
use hark_model::decoder::Logits;
use hark_model::features::{MelExtractor, log_mel};
use hark_model::nn::to_vec;
use hark_model::{Checkpoint, GenerateOptions, SpeechModel, Task, WeightDtype};
use hark_streaming::{Event, Stream, StreamConfig};
use proptest::prelude::*;

type B = Flex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Models loaded once per test binary, by fixture name.
type Loaded = std::sync::Mutex<Vec<(String, Arc<SpeechModel<B>>)>>;

fn model(name: &str) -> Arc<SpeechModel<B>> {
    static MODELS: OnceLock<Loaded> = OnceLock::new();
    let cell = MODELS.get_or_init(Default::default);
    let mut models = cell.lock().unwrap();
    if let Some((_, m)) = models.iter().find(|(n, _)| n == name) {
        return m.clone();
    }
    let ckpt = Checkpoint::open(&fixtures().join(format!("models/{name}"))).unwrap();
    let m = Arc::new(SpeechModel::<B>::load(ckpt, &Default::default(), WeightDtype::F32).unwrap());
    models.push((name.to_string(), m.clone()));
    m
}

fn clip(name: &str) -> Vec<f32> {
    let mut r = hound::WavReader::open(fixtures().join(format!("audio/{name}.wav"))).unwrap();
    r.samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect()
}

const CLIPS: [&str; 5] = ["fox", "callback", "lights", "hello", "april"];
const MODELS: [&str; 3] = ["e2b-shaped", "varied", "with-vision"];

/// Cut `len` into chunks of the given sizes, cycling (sizes in samples, ≥ 1).
fn chunks(len: usize, sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < len {
        let n = sizes[i % sizes.len()].max(1).min(len - at);
        out.push(at..at + n);
        at += n;
        i += 1;
    }
    out
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    // 1 sample … 2 s.
    prop::collection::vec(
        prop_oneof![1usize..200, 200usize..4000, 4000usize..32_000],
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn streaming_mel_equals_offline_exactly(sizes in chunk_sizes(), which in 0usize..5) {
        let m = model("e2b-shaped");
        let x = clip(CLIPS[which]);
        let offline = log_mel(&m.mel, &x);
        let mut ex = MelExtractor::new(m.mel.clone());
        let mut out = Vec::new();
        for r in chunks(x.len(), &sizes) {
            ex.push(&x[r], &mut out);
        }
        prop_assert_eq!(out, offline);
    }

    #[test]
    fn streaming_encoder_equals_offline(sizes in chunk_sizes(), which in 0usize..5, which_model in 0usize..3) {
        let m = model(MODELS[which_model]);
        let x = clip(CLIPS[which]);
        let frames = log_mel(&m.mel, &x);
        let offline = to_vec(m.encoder.encode(&frames));
        let mut ex = MelExtractor::new(m.mel.clone());
        let mut state = m.encoder.new_state(false);
        let mut parts: Vec<Tensor<B, 2>> = Vec::new();
        let mut buf = Vec::new();
        for r in chunks(x.len(), &sizes) {
            buf.clear();
            ex.push(&x[r], &mut buf);
            parts.push(m.encoder.push(&mut state, &buf));
        }
        parts.push(m.encoder.finish(&mut state));
        let parts: Vec<_> = parts.into_iter().filter(|p| p.dims()[0] > 0).collect();
        let streamed = to_vec(Tensor::cat(parts, 0));
        prop_assert_eq!(streamed.len(), offline.len());
        let scale = offline.iter().fold(0f32, |a, &b| a.max(b.abs()));
        let worst = streamed.iter().zip(&offline).fold(0f32, |a, (s, o)| a.max((s - o).abs()));
        prop_assert!(worst <= 1e-5 * scale, "max |Δ| {} vs scale {}", worst, scale);
    }
}

/// Offline greedy ids (stop id removed) of a clip.
fn offline_ids(m: &SpeechModel<B>, x: &[f32], max_new: usize) -> Vec<u32> {
    let t = m
        .transcribe(
            x,
            &Task::default(),
            &GenerateOptions {
                max_new_tokens: max_new,
            },
        )
        .unwrap();
    t.spans
        .iter()
        .flat_map(|s| s.token_ids.iter().copied().filter(|&id| !m.is_stop(id)))
        .collect()
}

fn stream_finals(
    m: &Arc<SpeechModel<B>>,
    x: &[f32],
    sizes: &[usize],
    partials: bool,
    max_new: usize,
) -> (Vec<u32>, Vec<Event>) {
    let cfg = StreamConfig {
        vad: None,
        partials,
        max_new_tokens: max_new,
        partial_interval_ms: 120,
        ..Default::default()
    };
    let mut s = Stream::new(m.clone(), cfg).unwrap();
    let mut events = Vec::new();
    for r in chunks(x.len(), sizes) {
        s.push(&x[r], true, &mut events).unwrap();
    }
    s.close(&mut events);
    let ids = events
        .iter()
        .filter_map(|e| match e {
            Event::Final(f) => Some(f.token_ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    (ids, events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// VAD off, no partials: the finals are the offline transcription token for token.
    #[test]
    fn vad_off_finals_equal_offline_greedy(sizes in chunk_sizes()) {
        for name in MODELS {
            let m = model(name);
            for c in CLIPS {
                let x = clip(c);
                let want = offline_ids(&m, &x, 12);
                let (got, _) = stream_finals(&m, &x, &sizes, false, 12);
                prop_assert_eq!(got, want, "{}/{}", name, c);
            }
        }
    }
}

#[test]
fn partials_keep_committed_text_and_final_extends_it() {
    let m = model("e2b-shaped");
    for c in CLIPS {
        let x = clip(c);
        let (_, events) = stream_finals(&m, &x, &[1600], true, 12);
        let mut committed = String::new();
        let mut partials = 0;
        for e in &events {
            match e {
                Event::Partial(p) => {
                    assert!(
                        p.committed.starts_with(&committed),
                        "{c}: committed text changed: {committed:?} → {:?}",
                        p.committed
                    );
                    committed = p.committed.clone();
                    partials += 1;
                }
                Event::Final(f) => {
                    assert!(
                        f.text.starts_with(committed.trim_end()),
                        "{c}: final {:?} does not extend {committed:?}",
                        f.text
                    );
                }
                _ => {}
            }
        }
        assert!(partials > 0, "{c}: no partial");
        assert!(matches!(events.first(), Some(Event::SpeechStarted { .. })));
        assert!(matches!(events.last(), Some(Event::SpeechStopped { .. })));
    }
}

/// A 70 s stream (VAD off) is cut at the same quiet points as the offline path.
#[test]
fn long_stream_splits_like_offline() {
    let m = model("varied");
    let mut x = Vec::new();
    for c in CLIPS.iter().cycle().take(30) {
        x.extend(clip(c));
    }
    assert!(x.len() > 2 * m.max_span_samples());
    let offline = m
        .transcribe(&x, &Task::default(), &GenerateOptions { max_new_tokens: 6 })
        .unwrap();
    let (_, events) = stream_finals(&m, &x, &[16_000], false, 6);
    let finals: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Final(f) = e {
                Some(f)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(finals.len(), offline.spans.len());
    for (f, s) in finals.iter().zip(&offline.spans) {
        assert!(
            (f.start - s.start_s).abs() < 1e-9 && (f.end - s.end_s).abs() < 1e-9,
            "{f:?} vs {s:?}"
        );
        let want: Vec<u32> = s
            .token_ids
            .iter()
            .copied()
            .filter(|&id| !m.is_stop(id))
            .collect();
        assert_eq!(f.token_ids, want);
    }
}

/// Truncating the cache and re-appending gives the logits of a fresh prefill; token-by-token
/// prefill (positions far past the sliding window) gives the one-shot logits.
#[test]
fn cache_truncate_and_reappend_equals_fresh_prefill() {
    for name in MODELS {
        let m = model(name);
        let x = clip("fox");
        let audio = m.encoder.encode(&log_mel(&m.mel, &x));
        let n = audio.dims()[0];
        let prompt = m.prompt(&Task::default(), n).unwrap();
        let pad = m.config.text.pad_token_id;
        let embeds = m.prompt_embeddings(&prompt, audio.clone());
        let ple = prompt.ple_ids(pad);
        let mut fresh = m.decoder.new_cache(16);
        let want = to_vec(
            m.decoder
                .forward(embeds.clone(), &ple, &mut fresh, Logits::Last)
                .unwrap(),
        );

        // Prefix, audio in pieces, a junk continuation, truncate, then the real suffix.
        let mut cache = m.decoder.new_cache(16);
        let at = prompt.audio_at;
        m.decoder.forward(
            embeds.clone().narrow(0, 0, at),
            &ple[..at],
            &mut cache,
            Logits::None,
        );
        let mut done = 0;
        for step in [1usize, 7, 3, 100] {
            let k = step.min(n - done);
            if k == 0 {
                break;
            }
            m.decoder.forward(
                audio.clone().narrow(0, done, k),
                &vec![pad; k],
                &mut cache,
                Logits::None,
            );
            done += k;
        }
        assert_eq!(done, n);
        let mark = cache.len();
        let junk = m.decoder.embed_tokens(&[5, 6, 7, 8, 9, 10, 11]);
        m.decoder
            .forward(junk, &[5, 6, 7, 8, 9, 10, 11], &mut cache, Logits::Last);
        cache.truncate(mark);
        let rest = embeds.clone().narrow(0, at + n, prompt.ids.len() - at - n);
        let got = to_vec(
            m.decoder
                .forward(rest, &ple[at + n..], &mut cache, Logits::Last)
                .unwrap(),
        );
        // Batching positions differently changes the f32 summation order, nothing else.
        let scale = want.iter().fold(0f32, |a, &w| a.max(w.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{name}: truncate/re-append max |Δ| {worst} (scale {scale})"
        );

        // One position at a time, far beyond the sliding window.
        let mut cache = m.decoder.new_cache(4);
        let mut last = None;
        for i in 0..prompt.ids.len() {
            last = m.decoder.forward(
                embeds.clone().narrow(0, i, 1),
                &ple[i..i + 1],
                &mut cache,
                Logits::Last,
            );
        }
        let got = to_vec(last.unwrap());
        let worst = got
            .iter()
            .zip(&want)
            .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{name}: token-by-token max |Δ| {worst} (scale {scale})"
        );
    }
}

fn run_gated(m: &Arc<SpeechModel<B>>, x: &[f32], chunk: usize) -> Vec<Event> {
    let mut s = Stream::new(
        m.clone(),
        StreamConfig {
            max_new_tokens: 8,
            ..Default::default()
        },
    )
    .unwrap();
    let mut events = Vec::new();
    for c in x.chunks(chunk) {
        s.push(c, true, &mut events).unwrap();
    }
    s.close(&mut events);
    events
}

#[test]
fn silence_gives_no_events_and_noise_no_text() {
    let m = model("e2b-shaped");
    for chunk in [160, 1234, 32_000] {
        assert!(
            run_gated(&m, &clip("silence"), chunk).is_empty(),
            "silence, chunk {chunk}"
        );
        let noise = run_gated(&m, &clip("noise"), chunk);
        assert!(
            noise
                .iter()
                .all(|e| !matches!(e, Event::Partial(_) | Event::Final(_))),
            "noise: {noise:?}"
        );
    }
}

#[test]
fn speech_between_silences_gives_one_segment() {
    let m = model("e2b-shaped");
    let mut x = vec![0.0f32; 24_000];
    x.extend(clip("fox"));
    x.extend(vec![0.0f32; 24_000]);
    let events = run_gated(&m, &x, 640);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::SpeechStarted { .. } => "started",
            Event::Partial(_) => "partial",
            Event::Final(_) => "final",
            Event::SpeechStopped { .. } => "stopped",
            Event::Error { .. } => "error",
        })
        .filter(|k| *k != "partial")
        .collect();
    assert_eq!(kinds, ["started", "final", "stopped"], "{events:?}");
    let Event::SpeechStarted { at, .. } = events[0] else {
        unreachable!()
    };
    assert!(
        (1.0..1.5).contains(&at),
        "speech starts about 1.5 s in, pre-roll included: {at}"
    );
    let fin = events
        .iter()
        .find_map(|e| {
            if let Event::Final(f) = e {
                Some(f)
            } else {
                None
            }
        })
        .unwrap();
    assert!(!fin.token_ids.is_empty());
    assert!(fin.end > fin.start + 2.0 && fin.end < 1.5 + 3.3, "{fin:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Partial(_))),
        "partials while speaking"
    );
}

#[test]
fn flush_finalises_and_keeps_listening() {
    let m = model("e2b-shaped");
    let x = clip("april");
    let mut s = Stream::new(
        m.clone(),
        StreamConfig {
            max_new_tokens: 6,
            ..Default::default()
        },
    )
    .unwrap();
    let mut events = Vec::new();
    let half = x.len() / 2;
    s.push(&x[..half], true, &mut events).unwrap();
    s.flush(&mut events);
    let finals = events
        .iter()
        .filter(|e| matches!(e, Event::Final(_)))
        .count();
    assert_eq!(finals, 1, "flush closes the open segment: {events:?}");
    s.push(&x[half..], true, &mut events).unwrap();
    s.close(&mut events);
    let finals: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Final(f) = e {
                Some(f)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        finals.len(),
        2,
        "speech after the flush opens a new segment"
    );
    assert_eq!(finals[1].segment_id, finals[0].segment_id + 1);
    assert!(
        (finals[1].start - finals[0].end).abs() < 1e-9,
        "no audio lost or repeated across a flush"
    );
    assert!(
        s.push(&x[..10], true, &mut events).is_err(),
        "closed streams refuse audio"
    );
}

/// Streams on several threads whose decoder passes are batched together give exactly what
/// each gives alone (the batched pass is the same computation row by row).
#[test]
fn batched_decoder_passes_equal_direct() {
    use hark_streaming::batcher::Batcher;
    use hark_streaming::segment::DecoderExec;

    let m = model("varied");
    let batcher = Batcher::start(m.clone(), 8, std::time::Duration::from_millis(5));
    let cfg = StreamConfig {
        vad: None,
        partials: true,
        max_new_tokens: 12,
        partial_interval_ms: 120,
        ..Default::default()
    };
    let finals = |events: &[Event]| -> Vec<Vec<u32>> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Final(f) => Some(f.token_ids.clone()),
                _ => None,
            })
            .collect()
    };
    let threads: Vec<_> = CLIPS
        .iter()
        .map(|c| {
            let (m, cfg, client) = (m.clone(), cfg.clone(), batcher.client());
            let x = clip(c);
            std::thread::spawn(move || {
                let mut s = Stream::with_exec(m, cfg, DecoderExec::Batched(client)).unwrap();
                let mut events = Vec::new();
                for r in chunks(x.len(), &[3_200, 1_777]) {
                    s.push(&x[r], true, &mut events).unwrap();
                }
                s.close(&mut events);
                events
            })
        })
        .collect();
    let batched: Vec<Vec<Event>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (c, events) in CLIPS.iter().zip(&batched) {
        let (_, direct) = stream_finals(&m, &clip(c), &[3_200, 1_777], true, 12);
        assert_eq!(finals(events), finals(&direct), "{c}");
        assert!(!finals(events).concat().is_empty(), "{c}: no text");
    }
    let stats = batcher.stats();
    let (batches, sequences) = (
        stats.batches.load(std::sync::atomic::Ordering::Relaxed),
        stats.sequences.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(batches > 0, "nothing went through the batcher");
    assert!(
        sequences > batches,
        "{sequences} passes in {batches} batches: never more than one per batch"
    );
}
