//! Streaming latency on real-time-paced audio, and the cost of a partial update as the
//! utterance grows.
//!
//! ```sh
//! cargo bench -p hark-streaming --bench latency -- [--model DIR] [--clips a.wav,b.wav] [--chunk-ms 40]
//! ```
//!
//! Per clip (each padded with 1 s of silence on both sides, fed at real time in `--chunk-ms`
//! chunks through a VAD-gated stream with partials on) it reports: speech onset → first
//! partial, end of speech → final, and compute per second of audio. Then, for one long
//! utterance fed as fast as possible with VAD off, the wall time of each partial update against
//! the audio length so far: with the previous hypothesis verified as a draft in one pass, an
//! update re-decodes only what changed, so its cost should stay flat rather than grow with the
//! transcript. Figures are printed, never asserted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::backend::Flex;
use hark_model::{Checkpoint, SAMPLE_RATE, SpeechModel, WeightDtype};
use hark_streaming::segment::{DecoderExec, PromptParts, SegmentDecoder};
use hark_streaming::{Event, Stream, StreamConfig};

type B = Flex;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn load(path: &Path) -> Vec<f32> {
    hark_audio_io::load_mono_16k(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// First and last sample louder than −40 dBFS (speech onset and end in a clean clip).
fn speech_span(x: &[f32]) -> (usize, usize) {
    let loud = |s: &f32| s.abs() > 0.01;
    (
        x.iter().position(loud).unwrap_or(0),
        x.iter().rposition(loud).map_or(x.len(), |i| i + 1),
    )
}

fn main() {
    let model_dir = arg("--model");
    let ckpt = match &model_dir {
        Some(dir) => {
            Checkpoint::open(&hark_model::hub::resolve(dir).expect("model")).expect("checkpoint")
        }
        None => hark_model::embedded::default_checkpoint()
            .or_else(|_| Checkpoint::open(&repo().join("tests/fixtures/models/e2b-shaped")))
            .expect("a model"),
    };
    let name = ckpt.name.clone();
    let model = Arc::new(
        SpeechModel::<B>::load(ckpt, &Default::default(), WeightDtype::F32).expect("load"),
    );
    let chunk_ms: usize = arg("--chunk-ms").map_or(40, |v| v.parse().expect("--chunk-ms"));
    let clips: Vec<PathBuf> = match arg("--clips") {
        Some(list) => list.split(',').map(PathBuf::from).collect(),
        None => ["fox", "callback", "lights", "hello", "april"]
            .iter()
            .map(|c| repo().join(format!("tests/fixtures/audio/{c}.wav")))
            .collect(),
    };
    println!(
        "model: {name}; flex backend, f32 weights; chunks of {chunk_ms} ms paced at real time\n"
    );
    println!(
        "{:<12} {:>7} {:>22} {:>18} {:>22}",
        "clip", "audio s", "onset→first partial ms", "end→final ms", "compute ms per audio s"
    );
    let chunk = chunk_ms * SAMPLE_RATE as usize / 1000;
    for path in &clips {
        let speech = load(path);
        let pad = vec![0.0f32; SAMPLE_RATE as usize];
        let x: Vec<f32> = pad.iter().chain(&speech).chain(&pad).copied().collect();
        let (on, off) = speech_span(&x);
        let mut stream = Stream::new(
            model.clone(),
            StreamConfig {
                max_new_tokens: 64,
                ..Default::default()
            },
        )
        .unwrap();
        let started = Instant::now();
        let mut pushed_at = vec![Duration::ZERO; x.len().div_ceil(chunk)];
        let (mut first_partial, mut final_at) = (None, None);
        let mut compute = Duration::ZERO;
        let mut events = Vec::new();
        for (i, piece) in x.chunks(chunk).enumerate() {
            let due = Duration::from_secs_f64(((i + 1) * chunk) as f64 / SAMPLE_RATE as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            pushed_at[i] = started.elapsed();
            let t = Instant::now();
            events.clear();
            stream.push(piece, true, &mut events).unwrap();
            compute += t.elapsed();
            let now = started.elapsed();
            for e in &events {
                match e {
                    Event::Partial(_) if first_partial.is_none() => first_partial = Some(now),
                    Event::Final(_) if final_at.is_none() => final_at = Some(now),
                    _ => {}
                }
            }
        }
        let mut tail = Vec::new();
        let t = Instant::now();
        stream.close(&mut tail);
        compute += t.elapsed();
        if final_at.is_none() && tail.iter().any(|e| matches!(e, Event::Final(_))) {
            final_at = Some(started.elapsed());
        }
        let onset_time = pushed_at[on / chunk];
        let end_time = pushed_at[(off.saturating_sub(1)) / chunk];
        let ms = |d: Option<Duration>, from: Duration| {
            d.map_or("-".to_string(), |d| {
                format!("{:.0}", (d.as_secs_f64() - from.as_secs_f64()) * 1e3)
            })
        };
        let audio_s = x.len() as f64 / SAMPLE_RATE as f64;
        println!(
            "{:<12} {:>7.2} {:>22} {:>18} {:>22.1}",
            path.file_stem().unwrap().to_string_lossy(),
            audio_s,
            ms(first_partial, onset_time),
            ms(final_at, end_time),
            compute.as_secs_f64() * 1e3 / audio_s
        );
    }

    // Partial-update cost against utterance length (VAD off, as fast as possible).
    let mut long = Vec::new();
    for path in clips.iter().cycle().take(8) {
        long.extend(load(path));
    }
    long.truncate(model.max_span_samples());
    let prompt = model.prompt(&Default::default(), 0).unwrap();
    let parts = Arc::new(PromptParts::new(&prompt));
    let prefix = SegmentDecoder::prefill_prefix(&model, &parts);
    let mut seg = SegmentDecoder::new(model.clone(), parts, &prefix, 64, DecoderExec::Direct);
    println!(
        "\npartial update cost vs utterance length ({} s, one update per second of audio):",
        long.len() / SAMPLE_RATE as usize
    );
    println!(
        "{:>8} {:>12} {:>14} {:>10} {:>9}",
        "audio s", "tokens out", "update ms", "accepted", "decoded"
    );
    for (i, second) in long.chunks(SAMPLE_RATE as usize).enumerate() {
        seg.push_audio(second);
        let t = Instant::now();
        let hyp = seg.hypothesis(&[]);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "{:>8} {:>12} {:>14.1} {:>10} {:>9}",
            i + 1,
            hyp.tokens.len(),
            ms,
            hyp.accepted,
            hyp.decoded
        );
    }
}
