//! Every matmul-weight precision against f32 weights, on the same checkpoint and audio.
//!
//! Thresholds (cosine similarity of the last prompt position's logits and of the audio
//! embeddings to the f32 run's): f16 and bf16 ≥ 0.9995, q8 ≥ 0.999, q4 ≥ 0.99. Greedy ids equal
//! the f32 run's up to the first step whose f32 top-2 margin is below the format's margin
//! (f16/bf16/q8: 0.1, q4: 0.5 — int4 moves logits by more). The demo model is the embedded
//! default, trained here: every bound holds on it (measured: q8 logits cosine ≥ 0.99996, q4
//! ≥ 0.9956). The E2B-shaped fixture is E2B's layout at small widths with *random* weights,
//! and its decoder amplifies any weight perturbation about 40-fold: f16 rounding (5e-4
//! relative) leaves the logits at cosine 1.000000, but q8 rounding (6e-3) drops them to 0.976
//! even with the q8 weights dequantized to f32 and multiplied exactly — a property of the
//! random weights, not of the kernels. Its random encoder is less sensitive but q4's rounding
//! (≈ 10 % of a Gaussian weight's spread) still takes its output to cosine 0.94. So there the
//! f16/bf16 bounds hold for everything, the q8 bound for the encoder output, and q4 is only
//! reported.

use burn::backend::Flex;
use hark_model::speech::DumpTensors;
use hark_model::{Checkpoint, SpeechModel, Task, WeightDtype};
use hark_testkit::fixtures;
use hark_testkit::similarity::Similarity;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    Similarity::of(a, b).cosine
}

struct Bound {
    dtype: WeightDtype,
    cosine: f64,
    margin: f32,
}

const BOUNDS: [Bound; 4] = [
    Bound {
        dtype: WeightDtype::F16,
        cosine: 0.9995,
        margin: 0.1,
    },
    Bound {
        dtype: WeightDtype::BF16,
        cosine: 0.9995,
        margin: 0.1,
    },
    Bound {
        dtype: WeightDtype::Q8,
        cosine: 0.999,
        margin: 0.1,
    },
    Bound {
        dtype: WeightDtype::Q4,
        cosine: 0.99,
        margin: 0.5,
    },
];

const CLIPS: [&str; 6] = ["fox", "callback", "lights", "hello", "april", "numbers"];

fn dumps(model: &SpeechModel<Flex>) -> Vec<DumpTensors> {
    CLIPS
        .iter()
        .map(|clip| {
            let samples = fixtures::clip(clip);
            model.dump(&samples, &Task::default(), 24).unwrap()
        })
        .collect()
}

/// Which outputs the q8/q4 bounds apply to.
#[derive(Clone, Copy, PartialEq)]
enum Quantized {
    /// The encoder output and the decoder's logits and greedy ids.
    Everything,
    /// The q8 encoder output only (random weights: an ill-conditioned decoder; q4 reported).
    Q8EncoderOnly,
}

fn check(name: &str, quantized: Quantized, open: impl Fn() -> Checkpoint) {
    let reference =
        SpeechModel::<Flex>::load(open(), &Default::default(), WeightDtype::F32).unwrap();
    let want = dumps(&reference);
    drop(reference);
    for bound in BOUNDS {
        let model = SpeechModel::<Flex>::load(open(), &Default::default(), bound.dtype).unwrap();
        for (clip, (got, want)) in CLIPS.iter().zip(dumps(&model).iter().zip(&want)) {
            let embeds = cosine(&got.audio_embeds, &want.audio_embeds);
            let logits = cosine(
                &got.generation.prompt_logits_last,
                &want.generation.prompt_logits_last,
            );
            let firm = want
                .generation
                .margins
                .iter()
                .position(|&m| m < bound.margin)
                .unwrap_or(want.generation.ids.len());
            let same = got
                .generation
                .ids
                .iter()
                .zip(&want.generation.ids)
                .take_while(|(a, b)| a == b)
                .count();
            eprintln!(
                "{name} {} {clip}: audio embeds cosine {embeds:.6}, logits cosine {logits:.6}, \
                 greedy ids equal for {same} of {} steps (firm for {firm})",
                bound.dtype,
                want.generation.ids.len()
            );
            let float = matches!(bound.dtype, WeightDtype::F16 | WeightDtype::BF16);
            if quantized == Quantized::Q8EncoderOnly && bound.dtype == WeightDtype::Q4 {
                continue;
            }
            assert!(
                embeds >= bound.cosine,
                "{name} {} {clip}: audio embeddings cosine {embeds:.6} < {}",
                bound.dtype,
                bound.cosine
            );
            if !float && quantized == Quantized::Q8EncoderOnly {
                continue;
            }
            assert!(
                logits >= bound.cosine,
                "{name} {} {clip}: logits cosine {logits:.6} < {}",
                bound.dtype,
                bound.cosine
            );
            assert!(
                same >= firm,
                "{name} {} {clip}: greedy ids differ at step {same}, the f32 margins are firm for {firm}",
                bound.dtype
            );
        }
    }
}

#[test]
fn e2b_shaped_fixture_every_precision_tracks_f32() {
    check("e2b-shaped", Quantized::Q8EncoderOnly, || {
        Checkpoint::open(&fixtures::dir().join("models/e2b-shaped")).unwrap()
    });
}

#[test]
fn demo_model_every_precision_tracks_f32() {
    check("demo", Quantized::Everything, || {
        hark_model::embedded::default_checkpoint().unwrap()
    });
}
