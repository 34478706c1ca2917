//! The engine's workers, with scripted stream drivers (exact control over what a stream does)
//! and with the fixture model (finals equal the offline transcript).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burn::backend::Flex;
use hark_model::{Checkpoint, GenerateOptions, SpeechModel, Task, WeightDtype};
use hark_streaming::engine::{
    Engine, EngineConfig, LinkClosed, Output, StreamDriver, StreamFactory, StreamLink,
    stream_factory,
};
use hark_streaming::{ErrorCode, Event, Final, FinalReason, Partial, StreamConfig, StreamError};

/// A stream that reports how much audio it has seen. A sample equal to `PANIC` makes it
/// panic; `delay` makes every push slow (a stream behind real time).
struct Scripted {
    seen: u64,
    segment: u64,
    delay: Duration,
    partials_allowed: Arc<Mutex<Vec<bool>>>,
}

const PANIC: f32 = 0.123_456;

impl StreamDriver for Scripted {
    fn push(
        &mut self,
        samples: &[f32],
        allow_partials: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), StreamError> {
        if samples.contains(&PANIC) {
            panic!("scripted failure");
        }
        std::thread::sleep(self.delay);
        self.partials_allowed.lock().unwrap().push(allow_partials);
        self.seen += samples.len() as u64;
        if allow_partials {
            out.push(Event::Partial(Partial {
                segment_id: self.segment,
                committed: String::new(),
                tentative: self.seen.to_string(),
                start: 0.0,
                end: self.seen as f64 / 16_000.0,
            }));
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        self.finalize(FinalReason::Flush, out);
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        self.finalize(FinalReason::EndOfStream, out);
    }
}

impl Scripted {
    fn finalize(&mut self, reason: FinalReason, out: &mut Vec<Event>) {
        out.push(Event::Final(Final {
            segment_id: self.segment,
            text: self.seen.to_string(),
            token_ids: Vec::new(),
            token_logprobs: Vec::new(),
            start: 0.0,
            end: self.seen as f64 / 16_000.0,
            reason,
        }));
        self.segment += 1;
    }
}

fn scripted(delay: Duration) -> (StreamFactory, Arc<Mutex<Vec<bool>>>) {
    let allowed = Arc::new(Mutex::new(Vec::new()));
    let log = allowed.clone();
    let factory: StreamFactory = Arc::new(move |_cfg| {
        Ok(Box::new(Scripted {
            seen: 0,
            segment: 0,
            delay,
            partials_allowed: log.clone(),
        }) as Box<dyn StreamDriver>)
    });
    (factory, allowed)
}

async fn outputs_until_end(link: &mut StreamLink) -> Vec<Output> {
    let mut out = Vec::new();
    while let Some(o) = tokio::time::timeout(Duration::from_secs(60), link.recv())
        .await
        .expect("no hang")
    {
        out.push(o);
    }
    out
}

fn final_events(outputs: &[Output]) -> Vec<&Final> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event {
                event: Event::Final(f),
                ..
            } => Some(f),
            _ => None,
        })
        .collect()
}

fn finals(outputs: &[Output]) -> Vec<String> {
    final_events(outputs)
        .into_iter()
        .map(|f| f.text.clone())
        .collect()
}

/// Worker statistics are booked after the work they describe: wait up to a second for
/// `done` to hold (the caller asserts it afterwards).
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn flush_is_acknowledged_after_the_audio_before_it() {
    let (factory, _) = scripted(Duration::ZERO);
    let engine = Engine::start(factory, EngineConfig::default());
    let mut link = engine.open(StreamConfig::default()).unwrap();
    link.push(&vec![0.0; 5_000]).await.unwrap();
    let token = link.flush();
    link.push(&vec![0.0; 3_000]).await.unwrap();
    link.close();
    let out = outputs_until_end(&mut link).await;
    // Final of the flushed segment, the acknowledgement, then the last segment and the end.
    let flushed = out
        .iter()
        .position(|o| matches!(o, Output::Flushed { token: t, position: 5_000 } if *t == token))
        .expect("flushed at 5000");
    assert!(
        matches!(&out[flushed - 1], Output::Event { event: Event::Final(f), .. } if f.text == "5000" && f.reason == FinalReason::Flush)
    );
    assert_eq!(finals(&out), ["5000", "8000"]);
    assert_eq!(out.last(), Some(&Output::Finished { position: 8_000 }));
    assert_eq!(link.processed(), 8_000);
}

#[tokio::test]
async fn a_panicking_stream_is_closed_alone() {
    let (factory, _) = scripted(Duration::ZERO);
    let engine = Engine::start(factory, EngineConfig::default());
    let mut bad = engine.open(StreamConfig::default()).unwrap();
    let mut good = engine.open(StreamConfig::default()).unwrap();
    assert_eq!(bad.worker(), good.worker(), "one worker serves both");
    bad.push(&[0.0, PANIC, 0.0]).await.unwrap();
    good.push(&vec![0.0; 4_000]).await.unwrap();
    good.close();
    let bad_out = outputs_until_end(&mut bad).await;
    assert!(
        matches!(bad_out.last(), Some(Output::Event { event: Event::Error { code: ErrorCode::Internal, message }, .. }) if message.contains("scripted failure")),
        "{bad_out:?}"
    );
    assert_eq!(finals(&outputs_until_end(&mut good).await), ["4000"]);
    let stats = engine.worker_stats().next().unwrap();
    assert_eq!(stats.panics.load(Ordering::Relaxed), 1);
    // The failed stream's queue is abandoned: pushing tells the front end.
    assert_eq!(bad.push(&[0.0; 10]).await, Err(LinkClosed));
}

#[tokio::test]
async fn dropping_a_link_aborts_its_stream() {
    let (factory, allowed) = scripted(Duration::from_millis(5));
    let engine = Engine::start(factory, EngineConfig::default());
    let mut link = engine.open(StreamConfig::default()).unwrap();
    link.push(&vec![0.0; 160_000]).await.unwrap();
    drop(link);
    let stats = engine.worker_stats().next().unwrap();
    settle(|| stats.streams.load(Ordering::Relaxed) == 0).await;
    assert_eq!(stats.streams.load(Ordering::Relaxed), 0);
    // Aborted long before its 50 chunks were processed.
    assert!(allowed.lock().unwrap().len() < 40);
}

#[tokio::test]
async fn streams_spread_over_workers() {
    let (factory, _) = scripted(Duration::ZERO);
    let engine = Engine::start(
        factory,
        EngineConfig {
            workers: 3,
            ..EngineConfig::default()
        },
    );
    let links: Vec<_> = (0..6)
        .map(|_| engine.open(StreamConfig::default()).unwrap())
        .collect();
    let mut per_worker = [0; 3];
    for l in &links {
        per_worker[l.worker()] += 1;
    }
    assert_eq!(per_worker, [2, 2, 2]);
    drop(links);
}

#[tokio::test]
async fn a_stream_behind_real_time_sheds_partials_not_finals() {
    // 20 ms per 200 ms chunk processed, shed beyond 400 ms of backlog.
    let (factory, allowed) = scripted(Duration::from_millis(20));
    let engine = Engine::start(
        factory,
        EngineConfig {
            shed_partials_after_ms: 400,
            ..EngineConfig::default()
        },
    );
    let mut link = engine.open(StreamConfig::default()).unwrap();
    link.push(&vec![0.0; 32_000]).await.unwrap();
    link.close();
    let out = outputs_until_end(&mut link).await;
    let allowed = allowed.lock().unwrap().clone();
    assert_eq!(allowed.len(), 10);
    assert!(
        !allowed[0],
        "the first chunks are far behind: partials shed"
    );
    assert!(allowed[9], "the last chunk is caught up");
    assert_eq!(finals(&out), ["32000"]);
    let stats = engine.worker_stats().next().unwrap();
    assert!(stats.shed_partials.load(Ordering::Relaxed) >= 1);
    // The worker adds a turn's busy time after the turn, i.e. after its outputs were sent:
    // give it a moment to book the last one.
    let busy_enough = || stats.busy_ns.load(Ordering::Relaxed) >= 10 * 20_000_000;
    settle(busy_enough).await;
    assert!(
        busy_enough(),
        "busy {} ns",
        stats.busy_ns.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_full_queue_makes_the_sender_wait_and_loses_nothing() {
    let (factory, _) = scripted(Duration::from_millis(2));
    let engine = Engine::start(
        factory,
        EngineConfig {
            queue_ms: 100,
            chunk_ms: 50,
            ..EngineConfig::default()
        },
    );
    let mut link = engine.open(StreamConfig::default()).unwrap();
    // 20 times the queue's capacity.
    let waited = Arc::new(AtomicBool::new(false));
    for _ in 0..20 {
        let before = std::time::Instant::now();
        link.push(&vec![0.0; 1_600]).await.unwrap();
        if before.elapsed() > Duration::from_millis(1) {
            waited.store(true, Ordering::Relaxed);
        }
    }
    link.close();
    let out = outputs_until_end(&mut link).await;
    assert_eq!(finals(&out), ["32000"]);
    assert!(waited.load(Ordering::Relaxed));
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn clip(name: &str) -> Vec<f32> {
    hark_audio_io::load_mono_16k(fixtures().join(format!("audio/{name}.wav"))).unwrap()
}

fn model() -> Arc<SpeechModel<Flex>> {
    let ckpt = Checkpoint::open(&fixtures().join("models/e2b-shaped")).unwrap();
    Arc::new(SpeechModel::load(ckpt, &Default::default(), WeightDtype::F32).unwrap())
}

fn ungated(max_new_tokens: usize) -> StreamConfig {
    StreamConfig {
        vad: None,
        partials: false,
        max_new_tokens,
        ..StreamConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_model_finals_equal_offline() {
    let m = model();
    let engine = Engine::start(stream_factory(m.clone()), EngineConfig::default());
    let samples = clip("lights");
    let mut link = engine.open(ungated(12)).unwrap();
    for piece in samples.chunks(1_234) {
        link.push(piece).await.unwrap();
    }
    link.close();
    let out = outputs_until_end(&mut link).await;
    let offline = m
        .transcribe(
            &samples,
            &Task::default(),
            &GenerateOptions { max_new_tokens: 12 },
        )
        .unwrap();
    assert_eq!(finals(&out), [offline.text]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_each_get_their_offline_transcript() {
    let m = model();
    let engine = Engine::start(
        stream_factory(m.clone()),
        EngineConfig {
            workers: 2,
            ..EngineConfig::default()
        },
    );
    let clips = ["fox", "callback", "lights", "hello"];
    let mut feeders = Vec::new();
    for c in clips {
        let mut link = engine.open(ungated(10)).unwrap();
        let x = clip(c);
        feeders.push(tokio::spawn(async move {
            for chunk in x.chunks(777) {
                link.push(chunk).await.unwrap();
            }
            link.close();
            (c, outputs_until_end(&mut link).await)
        }));
    }
    for f in feeders {
        let (c, out) = f.await.unwrap();
        let finals = final_events(&out);
        assert_eq!(finals.len(), 1, "{c}: {out:?}");
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
    let panics: u64 = engine
        .worker_stats()
        .map(|s| s.panics.load(Ordering::Relaxed))
        .sum();
    assert_eq!(panics, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audio_fails_its_stream_only() {
    let engine = Engine::start(stream_factory(model()), EngineConfig::default());
    let mut bad = engine.open(ungated(4)).unwrap();
    let mut good = engine.open(ungated(4)).unwrap();
    let x = clip("hello");
    good.push(&x[..8000]).await.unwrap();
    bad.push(&[0.1, f32::NAN, 0.2]).await.unwrap();
    good.push(&x[8000..]).await.unwrap();
    good.close();
    let bad_out = outputs_until_end(&mut bad).await;
    assert!(
        matches!(
            bad_out.last(),
            Some(Output::Event {
                event: Event::Error {
                    code: ErrorCode::BadAudio,
                    ..
                },
                ..
            })
        ),
        "{bad_out:?}"
    );
    assert_eq!(final_events(&outputs_until_end(&mut good).await).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_finalises_at_the_flushed_position() {
    let engine = Engine::start(stream_factory(model()), EngineConfig::default());
    let mut link = engine.open(ungated(4)).unwrap();
    let fox = clip("fox");
    link.push(&fox).await.unwrap();
    let token = link.flush();
    link.push(&clip("hello")).await.unwrap();
    link.close();
    let out = outputs_until_end(&mut link).await;
    assert!(
        matches!(
            &out[0],
            Output::Event {
                event: Event::SpeechStarted { .. },
                ..
            }
        ),
        "{out:?}"
    );
    let Output::Event {
        event: Event::Final(f),
        position,
        backlog,
    } = &out[1]
    else {
        panic!("{out:?}")
    };
    assert!((f.end - 3.2048).abs() < 0.01, "{f:?}");
    assert_eq!(*position, fox.len() as u64);
    // The rest of the stream was queued behind the flushed part.
    assert!(*backlog <= clip("hello").len() as u64);
    assert!(out.contains(&Output::Flushed {
        token,
        position: fox.len() as u64
    }));
    assert_eq!(final_events(&out).len(), 2, "{out:?}");
}
