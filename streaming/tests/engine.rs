//! The engine thread serving several streams at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use burn::backend::Flex;
use hark_model::{Checkpoint, GenerateOptions, SpeechModel, Task, WeightDtype};
use hark_streaming::{Emitted, Engine, EngineConfig, ErrorCode, Event, StreamConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn clip(name: &str) -> Vec<f32> {
    let mut r = hound::WavReader::open(fixtures().join(format!("audio/{name}.wav"))).unwrap();
    r.samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect()
}

fn model() -> Arc<SpeechModel<Flex>> {
    let ckpt = Checkpoint::open(&fixtures().join("models/e2b-shaped")).unwrap();
    Arc::new(SpeechModel::load(ckpt, &Default::default(), WeightDtype::F32).unwrap())
}

fn collect(rx: &mpsc::Receiver<Emitted>) -> Vec<Event> {
    let mut out = Vec::new();
    // The sender is dropped when the engine drops the stream.
    while let Ok(e) = rx.recv_timeout(Duration::from_secs(60)) {
        out.push(e.event);
    }
    out
}

#[test]
fn concurrent_streams_each_get_their_offline_transcript() {
    let m = model();
    let engine = Engine::start(m.clone(), EngineConfig::default());
    let clips = ["fox", "callback", "lights", "hello"];
    let mut receivers = Vec::new();
    let mut feeders = Vec::new();
    for c in clips {
        let (tx, rx) = mpsc::channel();
        let cfg = StreamConfig {
            vad: None,
            partials: false,
            max_new_tokens: 10,
            ..Default::default()
        };
        let mut handle = engine.open(cfg, tx).unwrap();
        let x = clip(c);
        feeders.push(std::thread::spawn(move || {
            for chunk in x.chunks(777) {
                assert_eq!(handle.push(chunk), chunk.len());
            }
            handle.close();
        }));
        receivers.push((c, rx));
    }
    for f in feeders {
        f.join().unwrap();
    }
    for (c, rx) in receivers {
        let events = collect(&rx);
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
        assert_eq!(finals.len(), 1, "{c}: {events:?}");
        let offline = m
            .transcribe(
                &clip(c),
                &Task::default(),
                &GenerateOptions { max_new_tokens: 10 },
            )
            .unwrap();
        let want: Vec<u32> = offline.spans[0]
            .token_ids
            .iter()
            .copied()
            .filter(|&i| !m.is_stop(i))
            .collect();
        assert_eq!(finals[0].token_ids, want, "{c}");
    }
    assert_eq!(
        engine
            .stats()
            .panics
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_failing_stream_does_not_touch_the_others() {
    let m = model();
    let engine = Engine::start(m, EngineConfig::default());
    let (bad_tx, bad_rx) = mpsc::channel();
    let (good_tx, good_rx) = mpsc::channel();
    let cfg = || StreamConfig {
        vad: None,
        partials: false,
        max_new_tokens: 4,
        ..Default::default()
    };
    let mut bad = engine.open(cfg(), bad_tx).unwrap();
    let mut good = engine.open(cfg(), good_tx).unwrap();
    let x = clip("hello");
    good.push(&x[..8000]);
    bad.push(&[0.1, f32::NAN, 0.2]);
    good.push(&x[8000..]);
    good.close();
    let bad_events = collect(&bad_rx);
    assert!(
        matches!(
            bad_events.last(),
            Some(Event::Error {
                code: ErrorCode::BadAudio,
                ..
            })
        ),
        "{bad_events:?}"
    );
    let good_events = collect(&good_rx);
    assert!(
        good_events.iter().any(|e| matches!(e, Event::Final(_))),
        "{good_events:?}"
    );
    drop(bad);
}

#[test]
fn flush_through_the_handle_finalises_now() {
    let m = model();
    let engine = Engine::start(m, EngineConfig::default());
    let (tx, rx) = mpsc::channel();
    let mut h = engine
        .open(
            StreamConfig {
                vad: None,
                partials: false,
                max_new_tokens: 4,
                ..Default::default()
            },
            tx,
        )
        .unwrap();
    h.push(&clip("fox"));
    h.flush();
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(matches!(first.event, Event::SpeechStarted { .. }));
    let second = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let Event::Final(f) = second.event else {
        panic!("{second:?}")
    };
    assert!((f.end - 3.2048).abs() < 0.01, "{f:?}");
    assert!((second.audio_s - 3.2048).abs() < 0.01);
    assert_eq!(second.backlog_s, 0.0);
    h.push(&clip("hello"));
    h.close();
    let rest = collect(&rx);
    assert_eq!(
        rest.iter().filter(|e| matches!(e, Event::Final(_))).count(),
        1,
        "{rest:?}"
    );
}
