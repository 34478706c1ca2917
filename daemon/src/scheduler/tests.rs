//! The scheduler with scripted stream drivers (exact control over what a stream does) and
//! with the fixture model (finals equal the offline transcript).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hark_streaming::{Final, FinalReason, Partial};

use super::*;

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
    while let Some(o) = tokio::time::timeout(Duration::from_secs(30), link.recv())
        .await
        .expect("no hang")
    {
        out.push(o);
    }
    out
}

fn finals(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event {
                event: Event::Final(f),
                ..
            } => Some(f.text.clone()),
            _ => None,
        })
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
    let sched = Scheduler::start(factory, SchedulerConfig::default());
    let mut link = sched.open(StreamConfig::default()).unwrap();
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
    let sched = Scheduler::start(factory, SchedulerConfig::default());
    let mut bad = sched.open(StreamConfig::default()).unwrap();
    let mut good = sched.open(StreamConfig::default()).unwrap();
    assert_eq!(bad.worker(), good.worker(), "one worker serves both");
    bad.push(&[0.0, PANIC, 0.0]).await.unwrap();
    good.push(&vec![0.0; 4_000]).await.unwrap();
    good.close();
    let bad_out = outputs_until_end(&mut bad).await;
    assert!(
        matches!(bad_out.last(), Some(Output::Event { event: Event::Error { code: hark_streaming::ErrorCode::Internal, message }, .. }) if message.contains("scripted failure")),
        "{bad_out:?}"
    );
    assert_eq!(finals(&outputs_until_end(&mut good).await), ["4000"]);
    let stats = sched.worker_stats().next().unwrap();
    assert_eq!(stats.panics.load(Ordering::Relaxed), 1);
    // The failed stream's queue is abandoned: pushing tells the session.
    assert_eq!(bad.push(&[0.0; 10]).await, Err(LinkClosed));
}

#[tokio::test]
async fn dropping_a_link_aborts_its_stream() {
    let (factory, allowed) = scripted(Duration::from_millis(5));
    let sched = Scheduler::start(factory, SchedulerConfig::default());
    let mut link = sched.open(StreamConfig::default()).unwrap();
    link.push(&vec![0.0; 160_000]).await.unwrap();
    drop(link);
    let stats = sched.worker_stats().next().unwrap();
    settle(|| stats.streams.load(Ordering::Relaxed) == 0).await;
    assert_eq!(stats.streams.load(Ordering::Relaxed), 0);
    // Aborted long before its 50 chunks were processed.
    assert!(allowed.lock().unwrap().len() < 40);
}

#[tokio::test]
async fn streams_spread_over_workers() {
    let (factory, _) = scripted(Duration::ZERO);
    let sched = Scheduler::start(
        factory,
        SchedulerConfig {
            workers: 3,
            ..SchedulerConfig::default()
        },
    );
    let links: Vec<_> = (0..6)
        .map(|_| sched.open(StreamConfig::default()).unwrap())
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
    let sched = Scheduler::start(
        factory,
        SchedulerConfig {
            shed_partials_after_ms: 400,
            ..SchedulerConfig::default()
        },
    );
    let mut link = sched.open(StreamConfig::default()).unwrap();
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
    let stats = sched.worker_stats().next().unwrap();
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
    let sched = Scheduler::start(
        factory,
        SchedulerConfig {
            queue_ms: 100,
            chunk_ms: 50,
            ..SchedulerConfig::default()
        },
    );
    let mut link = sched.open(StreamConfig::default()).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_model_finals_equal_offline() {
    use burn::backend::Flex;
    use hark_model::{Checkpoint, GenerateOptions, Task, WeightDtype};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let ckpt = Checkpoint::open(&root.join("models/e2b-shaped")).unwrap();
    let model =
        Arc::new(SpeechModel::<Flex>::load(ckpt, &Default::default(), WeightDtype::F32).unwrap());
    let sched = Scheduler::start(stream_factory(model.clone()), SchedulerConfig::default());
    let samples = hark_audio_io::load_mono_16k(root.join("audio/lights.wav")).unwrap();
    let cfg = StreamConfig {
        vad: None,
        partials: false,
        max_new_tokens: 12,
        ..StreamConfig::default()
    };
    let mut link = sched.open(cfg).unwrap();
    for piece in samples.chunks(1_234) {
        link.push(piece).await.unwrap();
    }
    link.close();
    let out = outputs_until_end(&mut link).await;
    let offline = model
        .transcribe(
            &samples,
            &Task::default(),
            &GenerateOptions { max_new_tokens: 12 },
        )
        .unwrap();
    assert_eq!(finals(&out), [offline.text]);
}
