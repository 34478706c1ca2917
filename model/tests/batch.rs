//! A batched decoder pass over several sequences equals running them one by one.

use burn::backend::Flex;
use hark_model::decoder::{Logits, Request};
use hark_model::features::log_mel;
use hark_model::nn::to_vec;
use hark_model::{SpeechModel, Task, WeightDtype};
use hark_testkit::fixtures::{self, clip};

fn model(name: &str) -> SpeechModel<Flex> {
    fixtures::model(name, WeightDtype::F32)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn batched_forward_equals_separate_forwards() {
    for name in ["e2b-shaped", "varied", "with-vision"] {
        let m = model(name);
        let pad = m.config.text.pad_token_id;
        // Three sequences at different lengths: a full prompt (last logits), a prompt prefilled
        // without logits, and a cache one decode step further (tail logits).
        let prompts: Vec<_> = ["fox", "hello", "lights"]
            .iter()
            .map(|c| {
                let audio = m.encoder.encode(&log_mel(&m.mel, &clip(c)));
                let p = m.prompt(&Task::default(), audio.dims()[0]).unwrap();
                (m.prompt_embeddings(&p, audio), p.ple_ids(pad))
            })
            .collect();
        let mut separate = Vec::new();
        let mut caches_a = Vec::new();
        for (i, (e, ids)) in prompts.iter().enumerate() {
            let mut cache = m.decoder.new_cache(8);
            if i == 2 {
                // Sequence 2 first gets its prompt, then two more tokens are run below.
                m.decoder.forward(e.clone(), ids, &mut cache, Logits::None);
            }
            caches_a.push(cache);
        }
        let steps = [5u32, 9];
        let inputs: Vec<(burn::tensor::Tensor<Flex, 2>, Vec<u32>, Logits)> = vec![
            (prompts[0].0.clone(), prompts[0].1.clone(), Logits::Last),
            (prompts[1].0.clone(), prompts[1].1.clone(), Logits::None),
            (
                m.decoder.embed_tokens(&steps),
                steps.to_vec(),
                Logits::Tail(2),
            ),
        ];
        for ((e, ids, l), cache) in inputs.iter().zip(caches_a.iter_mut()) {
            separate.push(m.decoder.forward(e.clone(), ids, cache, *l).map(to_vec));
        }
        // The same three, in one batched pass on fresh copies of the starting caches.
        let mut caches_b = Vec::new();
        for (i, (e, ids)) in prompts.iter().enumerate() {
            let mut cache = m.decoder.new_cache(8);
            if i == 2 {
                m.decoder.forward(e.clone(), ids, &mut cache, Logits::None);
            }
            caches_b.push(cache);
        }
        let requests: Vec<Request<'_, Flex>> = inputs
            .iter()
            .zip(caches_b.iter_mut())
            .map(|((e, ids, l), cache)| Request {
                embeds: e.clone(),
                ple_ids: ids,
                cache,
                logits: *l,
            })
            .collect();
        let batched: Vec<Option<Vec<f32>>> = m
            .decoder
            .forward_batch(requests)
            .into_iter()
            .map(|o| o.map(to_vec))
            .collect();
        for (i, (s, b)) in separate.iter().zip(&batched).enumerate() {
            match (s, b) {
                (None, None) => {}
                (Some(s), Some(b)) => {
                    let scale = s.iter().fold(0f32, |m, v| m.max(v.abs()));
                    assert!(
                        max_diff(s, b) <= 1e-5 * scale,
                        "{name} seq {i}: {}",
                        max_diff(s, b)
                    );
                }
                _ => panic!("{name} seq {i}: logits presence differs"),
            }
        }
        // And the caches hold the same state: one more step on each gives the same logits.
        for (i, (ca, cb)) in caches_a.iter_mut().zip(caches_b.iter_mut()).enumerate() {
            assert_eq!(ca.len(), cb.len());
            let e = m.decoder.embed_tokens(&[7]);
            let a = to_vec(
                m.decoder
                    .forward(e.clone(), &[7], ca, Logits::Last)
                    .unwrap(),
            );
            let b = to_vec(m.decoder.forward(e, &[7], cb, Logits::Last).unwrap());
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                max_diff(&a, &b) <= 1e-5 * scale,
                "{name} seq {i} after: {}",
                max_diff(&a, &b)
            );
        }
    }
}
