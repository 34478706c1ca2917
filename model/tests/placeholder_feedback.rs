//! A generated multimodal placeholder id is fed back as transformers feeds it: as the pad id,
//! in the token embedding and in the per-layer-embedding lookup (`Gemma4Model.forward`
//! replaces every image, video and audio placeholder of `input_ids` by `pad_token_id` before
//! both lookups). The golden tests check the same against transformers' own greedy output on
//! the `sampled-*` fixture whose output contains a placeholder; this test pins the rule on
//! every path's building blocks.

use burn::backend::Flex;
use hark_model::decoder::{Logits, Request};
use hark_model::features::log_mel;
use hark_model::nn::to_vec;
use hark_model::{SpeechModel, Task, WeightDtype};
use hark_testkit::fixtures::{self, clip};

fn model(name: &str) -> SpeechModel<Flex> {
    fixtures::model(name, WeightDtype::F32)
}

/// Exact equality, reported as the largest difference rather than two vocabulary-sized dumps.
fn assert_same(got: &[f32], want: &[f32], what: &str) {
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        got.len() == want.len() && diff == 0.0,
        "{what}: logits differ (max |Δ| {diff})"
    );
}

#[test]
fn config_names_all_three_placeholders() {
    let m = model("with-vision");
    let t = &m.config.text;
    // tests/fixtures/models/with-vision/config.json: image 19, video 23, audio 20, pad 0.
    let mut ids = t.placeholder_ids.clone();
    ids.sort();
    assert_eq!(ids, vec![19, 20, 23]);
    assert_eq!(m.config.audio_tokens.placeholder, 20);
    for id in [19, 20, 23] {
        assert_eq!(t.feedback_id(id), t.pad_token_id);
    }
    for id in [0, 1, 2, 18, 21, 22, 24, 300] {
        assert_eq!(t.feedback_id(id), id, "an ordinary id is itself");
    }
}

#[test]
fn generated_placeholders_are_fed_back_as_pad() {
    let m = model("with-vision");
    let pad = m.config.text.pad_token_id;
    let audio = m.encoder.encode(&log_mel(&m.mel, &clip("hello")));
    let p = m.prompt(&Task::default(), audio.dims()[0]).unwrap();
    let mut base = m.decoder.new_cache(p.ids.len() + 8);
    m.decoder.forward(
        m.prompt_embeddings(&p, audio),
        &p.ple_ids(pad),
        &mut base,
        Logits::Last,
    );
    // What transformers computes after a generated placeholder: the pad id in both lookups.
    let mut c = base.clone();
    let want = to_vec(
        m.decoder
            .forward(m.decoder.embed_tokens(&[pad]), &[pad], &mut c, Logits::Last)
            .unwrap(),
    );
    // A raw token id that is not a placeholder gives different logits, so equality below is
    // not an accident of the weights.
    let mut c = base.clone();
    let other = to_vec(
        m.decoder
            .forward(m.decoder.embed_tokens(&[7]), &[7], &mut c, Logits::Last)
            .unwrap(),
    );
    assert!(want != other);

    for &id in &m.config.text.placeholder_ids {
        // Token embedding and PLE lookup, as the streaming segment decoder, the bench and the
        // batched engine call them: raw ids in, pad semantics out.
        let mut c = base.clone();
        let got = to_vec(
            m.decoder
                .forward(m.decoder.embed_tokens(&[id]), &[id], &mut c, Logits::Last)
                .unwrap(),
        );
        assert_same(&got, &want, &format!("placeholder {id}: direct forward"));
        let mut c = base.clone();
        let ids = [id];
        let got = m
            .decoder
            .forward_batch(vec![Request {
                embeds: m.decoder.embed_tokens(&ids),
                ple_ids: &ids,
                cache: &mut c,
                logits: Logits::Last,
            }])
            .pop()
            .unwrap()
            .map(to_vec)
            .unwrap();
        assert_same(&got, &want, &format!("placeholder {id}: batched forward"));

        // The offline greedy loop: first logits that make `id` the greedy choice.
        let mut first = vec![0f32; m.config.text.vocab_size];
        first[id as usize] = 1.0;
        let mut c = base.clone();
        let generation = m.decode_greedy(&mut c, first, 2);
        assert_eq!(generation.ids[0], id);
        let (next, margin) = m.pick(&want);
        assert_eq!(
            (generation.ids[1], generation.margins[1]),
            (next, margin),
            "placeholder {id}: the greedy step after it"
        );
    }
}
