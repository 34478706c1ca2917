//! The full speech path at the real E2B size: a model with E2B's exact shapes and random bf16
//! weights, built in memory (`hark_model::synthetic`), loaded with f16 matmul weights as the
//! release is, transcribing 5 s of speech.
//!
//! This is the heaviest model test (≈ 15 GB of memory, ≈ 1 min on two cores): it proves the
//! shapes, the per-layer-embedding gathers, the KV sharing and the 262 144-wide head all work
//! at full size, which the small fixtures cannot.

use std::path::Path;
use std::time::Instant;

use burn::backend::Flex;
use hark_model::features::log_mel;
use hark_model::speech::StopReason;
use hark_model::{GenerateOptions, SpeechModel, Task, WeightDtype};
use hark_testkit::synthetic;

/// 5 s of speech: a fixture clip, looped.
fn five_seconds() -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/audio/fox.wav");
    let mut reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    let clip: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    clip.iter().copied().cycle().take(5 * 16_000).collect()
}

/// Peak resident memory of this process, in GB (Linux).
fn peak_rss_gb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1e6)
}

#[test]
fn e2b_sized_model_transcribes_five_seconds() {
    let started = Instant::now();
    let ckpt = synthetic::checkpoint(
        "synthetic-e2b",
        &synthetic::e2b_config_json(),
        Some(&synthetic::e2b_generation_config_json()),
        7,
    )
    .unwrap();
    let ple = "model.language_model.embed_tokens_per_layer.weight";
    assert_eq!(ckpt.tensors.shape(ple), Some(&[262_144, 35 * 256][..]));
    let built = started.elapsed();
    let model = SpeechModel::<Flex>::load(ckpt, &Default::default(), WeightDtype::F16).unwrap();
    let loaded = started.elapsed();

    let samples = five_seconds();
    let task = Task::default();
    let t = model
        .transcribe(&samples, &task, &GenerateOptions { max_new_tokens: 3 })
        .unwrap();
    let transcribed = started.elapsed();
    assert_eq!(t.spans.len(), 1);
    let span = &t.spans[0];
    assert_eq!(span.audio_tokens, 125, "25 audio tokens per second");
    assert!(!span.token_ids.is_empty() && span.token_ids.len() <= 3);
    assert!(span.token_ids.iter().all(|&id| id < 262_144));
    if span.stop == StopReason::MaxTokens {
        assert_eq!(span.token_ids.len(), 3);
    }

    // The prompt around the audio: the chat turn, then 125 placeholders between the markers.
    let prompt = model.prompt(&task, 125).unwrap();
    assert_eq!(t.timings.prompt_tokens, prompt.ids.len());
    assert_eq!(prompt.ids[..4], [2, 105, 2364, 107]);
    assert_eq!(prompt.ids[prompt.audio_at - 1], 256_000);
    let audio_ids = &prompt.ids[prompt.audio_at..prompt.audio_at + 125];
    assert!(audio_ids.iter().all(|&id| id == 258_881));
    assert_eq!(prompt.ids[prompt.audio_at + 125], 258_883);
    assert_eq!(prompt.ids[prompt.ids.len() - 3..], [105, 4368, 107]);

    // Same audio again, stage by stage: finite embeddings and logits, the same first token.
    let audio = model.encoder.encode(&log_mel(&model.mel, &samples));
    assert_eq!(audio.dims(), [125, 1536]);
    let embeds = hark_model::nn::to_vec(audio.clone());
    assert!(embeds.iter().all(|x| x.is_finite()));
    let (generation, _) = model
        .generate(&prompt, audio, &GenerateOptions { max_new_tokens: 1 })
        .unwrap();
    let logits = &generation.prompt_logits_last;
    assert_eq!(logits.len(), 262_144);
    assert!(logits.iter().all(|x| x.is_finite() && x.abs() <= 30.0));
    let (lo, hi) = logits
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    assert!(hi - lo > 1.0, "logits spread over {lo}..{hi}");
    assert_eq!(generation.ids[0], span.token_ids[0]);

    eprintln!(
        "E2B-sized synthetic model: built in {:.1} s, loaded in {:.1} s, 5 s transcribed in \
         {:.1} s ({:?}); peak RSS {:.1} GB",
        built.as_secs_f64(),
        (loaded - built).as_secs_f64(),
        (transcribed - loaded).as_secs_f64(),
        t.timings,
        peak_rss_gb().unwrap_or(f64::NAN),
    );
}
