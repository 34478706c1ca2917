//! The same input gives the same output, bit for bit, every time (for a given build, machine
//! and thread count): issue 17 part 8.
//!
//! Nothing in the forward pass may depend on timing, allocation addresses or memory left over
//! from earlier calls: the host kernels split work only over output rows (no split reductions),
//! the `gemm` crate splits by thread count alone, and Burn's flex backend only splits full-
//! tensor sums of ≥ 4 M elements (none on this path). These tests run the offline path
//! (whole-span encoder) and the streaming encoder path many times, interleaved with other work
//! that leaves different data in the thread-local scratch buffers, on pools of 1, 2 and 3
//! threads, and compare every logit and embedding bit for bit.

use burn::backend::Flex;
use hark_model::{BackendKind, GenerateOptions, SpeechModel, Task, WeightsChoice};
use hark_testkit::fixtures;

fn demo_model(choice: WeightsChoice) -> SpeechModel<Flex> {
    let ckpt = hark_model::embedded::default_checkpoint().expect("the embedded demo model");
    let weights = BackendKind::Flex
        .weights(choice, ckpt.tensors.parameters())
        .unwrap();
    SpeechModel::load(ckpt, &Default::default(), weights).unwrap()
}

/// Every float of both paths for `clip`, as bits, plus the ids.
fn fingerprint(model: &SpeechModel<Flex>, clip: &[f32]) -> (Vec<u32>, Vec<u32>) {
    let task = Task::default();
    let dump = model.dump(clip, &task, 16).unwrap();
    let offline = model
        .transcribe(clip, &task, &GenerateOptions { max_new_tokens: 16 })
        .unwrap();
    let bits = dump
        .mel
        .iter()
        .chain(&dump.audio_embeds)
        .chain(&dump.generation.prompt_logits_last)
        .chain(&dump.generation.margins)
        .map(|v| v.to_bits())
        .collect();
    let ids = dump
        .generation
        .ids
        .iter()
        .chain(offline.spans.iter().flat_map(|s| &s.token_ids))
        .copied()
        .collect();
    (bits, ids)
}

fn repeatable(choice: WeightsChoice) {
    let model = demo_model(choice);
    let clip = fixtures::clip("numbers");
    let others = [fixtures::clip("fox"), fixtures::clip("april")];
    let runs: usize = std::env::var("HARK_DETERMINISM_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let first = fingerprint(&model, &clip);
            for run in 1..runs {
                // Other clips in between: other shapes through the same scratch buffers.
                let other = &others[run % others.len()];
                fingerprint(&model, other);
                let again = fingerprint(&model, &clip);
                assert_eq!(
                    again.1, first.1,
                    "{choice:?}, {threads} threads, run {run}: ids differ"
                );
                let at = again.0.iter().zip(&first.0).position(|(a, b)| a != b);
                assert!(
                    at.is_none(),
                    "{choice:?}, {threads} threads, run {run}: value {} of {} differs",
                    at.unwrap(),
                    first.0.len()
                );
            }
        });
    }
}

#[test]
fn f32_weights_give_bit_identical_results_every_run() {
    repeatable(WeightsChoice::Auto);
}

#[test]
fn q8_weights_give_bit_identical_results_every_run() {
    repeatable("q8".parse().unwrap());
}

#[test]
fn q4_weights_give_bit_identical_results_every_run() {
    repeatable("q4".parse().unwrap());
}
