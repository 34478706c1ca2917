//! Finals depend on the audio alone: the same clip pushed at once, in odd chunk sizes, with
//! partials decoded or shed, and through the engine beside other streams gives the same finals,
//! byte for byte (the embedded demo model, which produces real words and close calls between
//! hypotheses).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use burn::backend::Flex;
use hark_model::{SpeechModel, WeightDtype};
use hark_streaming::engine::{Engine, EngineConfig, Output, stream_factory};
use hark_streaming::{Event, Final, GateConfig, Stream, StreamConfig};

type Model = Arc<SpeechModel<Flex>>;

fn demo_model() -> Model {
    let ckpt = hark_model::embedded::default_checkpoint().unwrap();
    Arc::new(SpeechModel::load(ckpt, &Default::default(), WeightDtype::F32).unwrap())
}

fn clip(name: &str) -> Vec<f32> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/audio/{name}.wav"));
    hark_audio_io::load_mono_16k(path).unwrap()
}

/// What a final is made of, without the reason: text, token ids, start and end (as text).
type FinalKey = (String, Vec<u32>, String, String);

/// A final's [`FinalKey`] (a flush and an end of stream end a segment alike).
fn key(f: &Final) -> FinalKey {
    (
        f.text.clone(),
        f.token_ids.clone(),
        format!("{:.4}", f.start),
        format!("{:.4}", f.end),
    )
}

/// Feed `samples` in pieces of the sizes `sizes` cycles through; `allow` says for each piece
/// whether partials may be decoded (as the engine decides from the backlog).
fn finals_direct(
    model: &Model,
    cfg: &StreamConfig,
    samples: &[f32],
    sizes: &[usize],
    allow: impl Fn(usize) -> bool,
) -> (Vec<FinalKey>, usize) {
    let mut stream = Stream::new(model.clone(), cfg.clone()).unwrap();
    let mut events = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < samples.len() {
        let n = sizes[i % sizes.len()].min(samples.len() - at);
        stream
            .push(&samples[at..at + n], allow(i), &mut events)
            .unwrap();
        at += n;
        i += 1;
    }
    stream.close(&mut events);
    let partials = events
        .iter()
        .filter(|e| matches!(e, Event::Partial(_)))
        .count();
    let finals = events
        .iter()
        .filter_map(|e| match e {
            Event::Final(f) => Some(key(f)),
            _ => None,
        })
        .collect();
    (finals, partials)
}

fn configs() -> Vec<(&'static str, StreamConfig)> {
    vec![
        (
            "ungated",
            StreamConfig {
                vad: None,
                ..StreamConfig::default()
            },
        ),
        (
            "gated",
            StreamConfig {
                vad: Some(GateConfig::default()),
                ..StreamConfig::default()
            },
        ),
    ]
}

#[test]
fn finals_do_not_depend_on_chunking_or_partials() {
    let model = demo_model();
    for name in ["april", "numbers", "callback"] {
        let samples = clip(name);
        for (label, cfg) in configs() {
            let offline_cfg = StreamConfig {
                partials: false,
                ..cfg.clone()
            };
            let (reference, _) =
                finals_direct(&model, &offline_cfg, &samples, &[samples.len()], |_| true);
            assert!(!reference.is_empty(), "{name} {label}");
            assert!(
                reference.iter().any(|f| !f.0.trim().is_empty()),
                "{name} {label}: the demo model says something"
            );
            type Case = (&'static str, &'static [usize], fn(usize) -> bool);
            let cases: [Case; 4] = [
                ("real-time 20 ms pieces, every partial", &[320], |_| true),
                (
                    "odd pieces, every partial",
                    &[777, 13, 4_001, 1_234],
                    |_| true,
                ),
                ("200 ms pieces, partials shed now and then", &[3_200], |i| {
                    i % 3 != 1
                }),
                (
                    "one sample at a time then big pieces",
                    &[1, 1, 1, 9_999],
                    |i| i % 2 == 0,
                ),
            ];
            for (case, sizes, allow) in cases {
                let (got, partials) = finals_direct(&model, &cfg, &samples, sizes, allow);
                assert!(partials > 0, "{name} {label} {case}: partials were decoded");
                assert_eq!(got, reference, "{name} {label}: {case}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finals_do_not_depend_on_load() {
    let model = demo_model();
    let samples = clip("april");
    let (_, cfg) = configs().remove(1);
    let (reference, _) = finals_direct(
        &model,
        &StreamConfig {
            partials: false,
            ..cfg.clone()
        },
        &samples,
        &[samples.len()],
        |_| true,
    );
    // Six streams of the same clip on two workers, each in its own piece size, with a small
    // shedding threshold so the streams behind skip partials.
    let engine = Engine::start(
        stream_factory(model.clone()),
        EngineConfig {
            workers: 2,
            shed_partials_after_ms: 100,
            ..EngineConfig::default()
        },
    );
    let mut tasks = Vec::new();
    for (i, piece) in [320usize, 777, 1_600, 4_001, 13, 16_000]
        .into_iter()
        .enumerate()
    {
        let mut link = engine.open(cfg.clone()).unwrap();
        let samples = samples.clone();
        tasks.push(tokio::spawn(async move {
            for chunk in samples.chunks(piece) {
                link.push(chunk).await.unwrap();
                if i == 0 {
                    // One stream at real time.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            link.close();
            let mut finals = Vec::new();
            while let Some(out) = tokio::time::timeout(Duration::from_secs(120), link.recv())
                .await
                .expect("no hang")
            {
                if let Output::Event {
                    event: Event::Final(f),
                    ..
                } = out
                {
                    finals.push(key(&f));
                }
            }
            (piece, finals)
        }));
    }
    for t in tasks {
        let (piece, finals) = t.await.unwrap();
        assert_eq!(finals, reference, "pieces of {piece} samples");
    }
}

/// With batching on, the decoder rows of several streams share one pass (its row count
/// depends on the load): finals must still equal the direct ones, i.e. the kernels give a row
/// the same result at any batch size on this backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_finals_equal_direct_ones() {
    use hark_streaming::batcher::Batcher;
    use hark_streaming::engine::batched_stream_factory;

    let model = demo_model();
    let (_, cfg) = configs().remove(1);
    let batcher = Batcher::start(model.clone(), 8, Duration::from_millis(3));
    let engine = Engine::start(
        batched_stream_factory(model.clone(), batcher.client()),
        EngineConfig {
            workers: 4,
            ..EngineConfig::default()
        },
    );
    let mut tasks = Vec::new();
    for (i, name) in ["april", "numbers", "callback", "april", "lights", "numbers"]
        .into_iter()
        .enumerate()
    {
        let samples = clip(name);
        let (reference, _) = finals_direct(
            &model,
            &StreamConfig {
                partials: false,
                ..cfg.clone()
            },
            &samples,
            &[samples.len()],
            |_| true,
        );
        let mut link = engine.open(cfg.clone()).unwrap();
        let piece = [320usize, 777, 1_600, 4_001, 13, 16_000][i];
        tasks.push(tokio::spawn(async move {
            for chunk in samples.chunks(piece) {
                link.push(chunk).await.unwrap();
            }
            link.close();
            let mut finals = Vec::new();
            while let Some(out) = tokio::time::timeout(Duration::from_secs(120), link.recv())
                .await
                .expect("no hang")
            {
                if let Output::Event {
                    event: Event::Final(f),
                    ..
                } = out
                {
                    finals.push(key(&f));
                }
            }
            (name, finals, reference)
        }));
    }
    for t in tasks {
        let (name, finals, reference) = t.await.unwrap();
        assert_eq!(finals, reference, "{name}, batched");
    }
    let stats = batcher.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    let sequences = stats.sequences.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sequences > batches,
        "passes of several streams were batched: {sequences} in {batches}"
    );
    drop(engine);
    drop(batcher);
}
