//! Natively quantized releases, loaded as they are, against transformers running the same
//! weights dequantized (`tools/reference/make_quantized.py`):
//!
//! * `models/quant-gguf/model.gguf`: CrispASR's `gemma4e2b` GGUF layout with Q8_0, Q4_K (and
//!   its Q4_0 fallback), F16, BF16 and F32 tensors, beside only `tokenizer.json`;
//! * `models/quant-gptq/`: a W4A16 AutoRound (GPTQ v1 packing) checkpoint, group 128,
//!   symmetric, decoder linears packed, the rest bf16.
//!
//! Hark dequantizes exactly (the same f32 values gguf-py and auto-round produce) and computes
//! in f32, so the tolerances are golden.rs's f32 ones: per stage cosine ≥ 0.99999 and
//! max |Δ| ≤ 1e-3 × max |reference|, prompt ids identical, greedy ids identical while the
//! reference top-2 margin exceeds 0.05.

use std::path::PathBuf;

use burn::backend::Flex;
use hark_model::checkpoint::{StoredFormat, TensorStore};
use hark_model::gguf::GgufProblem;
use hark_model::quant::GgmlType;
use hark_model::speech::DumpTensors;
use hark_model::weights::Matrix;
use hark_model::{Checkpoint, LoadError, SpeechModel, Task, WeightDtype};
use hark_testkit::fixtures;
use hark_testkit::similarity::Similarity;
use safetensors::SafeTensors;

const CLIPS: [&str; 2] = ["hello", "lights"];
const COSINE: f64 = 0.99999;
const REL_MAX: f64 = 1e-3;
const MARGIN: f32 = 0.05;

fn model_dir(name: &str) -> PathBuf {
    fixtures::dir().join("models").join(name)
}

struct Golden(Vec<u8>);

impl Golden {
    fn load(model: &str, clip: &str) -> Self {
        let path = fixtures::dir().join(format!("golden/{model}/{clip}.safetensors"));
        Self(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }
    fn raw(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("golden lacks {name}"));
        (t.shape().to_vec(), t.data().to_vec())
    }
    fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, data) = self.raw(name);
        let v = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (shape, v)
    }
    fn i64(&self, name: &str) -> Vec<i64> {
        self.raw(name)
            .1
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn valid(&self, name: &str) -> usize {
        self.f32(name).1.iter().filter(|&&m| m != 0.0).count()
    }
}

/// Cosine similarity (1 for two zero vectors).
fn cosine(got: &[f32], want: &[f32]) -> f64 {
    Similarity::of(got, want).cosine
}

/// Cosine and max |Δ| / max |reference| of the first `n` values; asserts the tolerances.
fn compare(stage: &str, got: &[f32], want: &[f32], n: usize) -> (f64, f64) {
    assert!(got.len() >= n && want.len() >= n, "{stage}: too few values");
    let Similarity {
        cosine,
        rel_max_diff: rel,
        ..
    } = Similarity::of(&got[..n], &want[..n]);
    assert!(cosine >= COSINE, "{stage}: cosine {cosine} < {COSINE}");
    assert!(
        rel <= REL_MAX,
        "{stage}: max |Δ| is {rel} of max |ref| (> {REL_MAX})"
    );
    (cosine, rel)
}

fn check_clip(model: &SpeechModel<Flex>, golden_name: &str, clip: &str) {
    let golden = Golden::load(golden_name, clip);
    let samples = fixtures::clip(clip);
    let want_ids = golden.i64("generated_ids");
    let dump: DumpTensors = model
        .dump(&samples, &Task::default(), want_ids.len())
        .unwrap();
    let frames = golden.valid("mel_mask");
    let tokens = golden.valid("subsample_mask");
    assert_eq!(dump.mel_frames, frames, "{clip}: mel frames");
    assert_eq!(dump.audio_tokens, tokens, "{clip}: audio tokens");
    let stage = |name: &str, got: &[f32], rows: usize| {
        let (shape, want) = golden.f32(name);
        let width: usize = shape[1..].iter().product();
        compare(
            &format!("{golden_name}/{clip}/{name}"),
            got,
            &want,
            rows * width,
        )
    };
    stage("mel", &dump.mel, frames);
    stage("subsample", &dump.subsample, tokens);
    for (i, layer) in dump.audio_layers.iter().enumerate() {
        stage(&format!("audio_layer.{i}"), layer, tokens);
    }
    stage("audio_tower", &dump.audio_tower, tokens);
    stage("audio_embeds", &dump.audio_embeds, tokens);
    let prompt: Vec<i64> = dump.prompt_ids.iter().map(|&i| i as i64).collect();
    assert_eq!(prompt, golden.i64("prompt_ids"), "{clip}: prompt ids");
    let (shape, logits) = golden.f32("prompt_logits_last");
    let (cos, rel) = compare(
        &format!("{golden_name}/{clip}/prompt_logits_last"),
        &dump.generation.prompt_logits_last,
        &logits,
        shape[0],
    );
    let (_, margins) = golden.f32("generated_margins");
    let firm = margins
        .iter()
        .position(|&m| m <= MARGIN)
        .unwrap_or(margins.len())
        .min(want_ids.len());
    let got: Vec<i64> = dump.generation.ids.iter().map(|&i| i as i64).collect();
    assert!(got.len() >= firm, "{clip}: generated {} ids", got.len());
    assert_eq!(got[..firm], want_ids[..firm], "{clip}: greedy ids");
    eprintln!(
        "{golden_name}/{clip}: ok (logits cosine {cos:.7}, max |Δ| {rel:.1e} of max; greedy ids firm for {firm} of {} steps)",
        want_ids.len()
    );
}

fn load(ckpt: Checkpoint) -> SpeechModel<Flex> {
    SpeechModel::<Flex>::load(ckpt, &Default::default(), WeightDtype::F32).unwrap()
}

fn formats(store: &TensorStore) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for name in store.names() {
        let label = match store.format(name).unwrap() {
            StoredFormat::Float(d) => format!("{d:?}"),
            StoredFormat::Ggml(t) => t.name().to_string(),
            StoredFormat::Gptq4 { group_size } => format!("GPTQ4/g{group_size}"),
        };
        *counts.entry(label).or_default() += 1;
    }
    counts
}

#[test]
fn gguf_with_only_a_tokenizer_beside_it_matches_transformers() {
    // The directory holds the .gguf and tokenizer.json: the configuration comes from the
    // GGUF metadata (hf-config/ below it is not read).
    let ckpt = Checkpoint::open(&model_dir("quant-gguf")).unwrap();
    let counts = formats(&ckpt.tensors);
    eprintln!("quant-gguf tensors by type: {counts:?}");
    for t in ["Q8_0", "Q4_K", "Q4_0", "F16", "BF16", "F32"] {
        assert!(
            counts.contains_key(t),
            "the fixture should hold {t} tensors"
        );
    }
    assert_eq!(ckpt.name, "model");
    let model = load(ckpt);
    for clip in CLIPS {
        check_clip(&model, "quant-gguf", clip);
    }
}

#[test]
fn gguf_with_config_json_beside_it_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let src = model_dir("quant-gguf");
    std::fs::copy(src.join("model.gguf"), dir.path().join("e2b-q.gguf")).unwrap();
    std::fs::copy(
        src.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    for f in [
        "config.json",
        "generation_config.json",
        "processor_config.json",
    ] {
        std::fs::copy(src.join("hf-config").join(f), dir.path().join(f)).unwrap();
    }
    // `--model` takes the file's path as it takes a directory.
    let file = dir.path().join("e2b-q.gguf");
    let resolved = hark_model::hub::resolve_in(file.to_str().unwrap(), None, "main").unwrap();
    assert_eq!(resolved, file);
    let from_json = Checkpoint::open(&resolved).unwrap();
    let from_meta = Checkpoint::open(&src.join("model.gguf")).unwrap();
    assert_eq!(from_json.name, "e2b-q");
    // The metadata-built configuration resolves to the same model as config.json (the stop
    // ids differ: generation_config.json lists one more).
    let (a, b) = (&from_json.config, &from_meta.config);
    assert_eq!(a.text.layers, b.text.layers);
    assert_eq!(
        (
            a.text.hidden_size,
            a.text.vocab_size,
            a.text.ple_dim,
            a.text.tie_word_embeddings
        ),
        (
            b.text.hidden_size,
            b.text.vocab_size,
            b.text.ple_dim,
            b.text.tie_word_embeddings
        )
    );
    assert_eq!(format!("{:?}", a.audio), format!("{:?}", b.audio));
    assert_eq!(
        format!("{:?}", a.audio_tokens),
        format!("{:?}", b.audio_tokens)
    );
    assert!(
        b.stop_token_ids
            .iter()
            .all(|id| a.stop_token_ids.contains(id))
    );
    let model = load(from_json);
    for clip in CLIPS {
        check_clip(&model, "quant-gguf", clip);
    }
}

#[test]
fn gptq_matches_transformers() {
    let ckpt = Checkpoint::open(&model_dir("quant-gptq")).unwrap();
    let counts = formats(&ckpt.tensors);
    eprintln!("quant-gptq tensors by format: {counts:?}");
    assert!(
        counts.get("GPTQ4/g128").is_some_and(|&n| n >= 20),
        "{counts:?}"
    );
    // The packed parts appear as one weight each.
    let names: Vec<&str> = ckpt.tensors.names().collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".qweight") || n.ends_with(".scales"))
    );
    let model = load(ckpt);
    for clip in CLIPS {
        check_clip(&model, "quant-gptq", clip);
    }
}

/// Every quantized matrix as the packed kernels get it (`TensorStore::packed`), against the
/// exact dequantization: the weights (lossless for Q8_0, Q4_0 and symmetric GPTQ; Q4_K within
/// the f16 rounding of its two per-sub-block products, `d·sc`, whose 15 steps span the
/// sub-block's range ≤ 2·max|w|, and `dmin·m` ≤ max|w|: |Δ| ≤ 3·2⁻¹¹·max|w| per row), and
/// `y = x·Wᵀ` through `PackedMatrix::matmul` for a decode-sized (n = 1, int8 activations) and
/// a prefill-sized (n = 12 > `GEMV_MAX_N`, dequantized tiles) batch against an f64 product with
/// the exact weights: cosine ≥ 0.9999 and max |Δ| ≤ 2e-2 × max |y| (n = 1), ≤ 1e-4 (n = 12;
/// 2e-3 for Q4_K, whose repacked scales carry the f16 rounding).
#[test]
fn packed_matrices_against_the_exact_dequantization() {
    for dir in ["quant-gguf", "quant-gptq"] {
        let ckpt = Checkpoint::open(&model_dir(dir)).unwrap();
        let store = &ckpt.tensors;
        let mut names: Vec<&str> = store.names().collect();
        names.sort();
        let (mut worst_q4k, mut worst_mm) = (0f64, [0f64; 2]);
        let mut checked = 0;
        for name in names {
            let format = store.format(name).unwrap();
            let Some(packed) = store.packed(name).unwrap() else {
                assert!(
                    matches!(format, StoredFormat::Float(_)),
                    "{name}: {format:?} has no blocks"
                );
                continue;
            };
            let (rows, cols) = (packed.rows(), packed.cols());
            assert_eq!(store.shape(name).unwrap(), [rows, cols]);
            let want_format = match format {
                StoredFormat::Ggml(GgmlType::Q8_0) => hark_kernels::Format::Q8,
                _ => hark_kernels::Format::Q4,
            };
            assert_eq!(packed.format(), want_format, "{name}");
            let exact = store.f32(name).unwrap();
            let mut row = vec![0f32; cols];
            for (r, w) in exact.chunks(cols).enumerate() {
                packed.row_f32(r, &mut row);
                if format == StoredFormat::Ggml(GgmlType::Q4K) {
                    let scale = w.iter().fold(0f32, |a, x| a.max(x.abs())) as f64;
                    for (a, b) in row.iter().zip(w) {
                        let d = (a - b).abs() as f64;
                        assert!(
                            d <= 3.0 * 2f64.powi(-11) * scale + 1e-9,
                            "{name} row {r}: {a} vs {b}"
                        );
                        worst_q4k = worst_q4k.max(d / scale);
                    }
                } else {
                    assert_eq!(row, w, "{name} ({format:?}) row {r} repacks without loss");
                }
            }
            // Q4_K's repacked scales differ from the exact ones by ≤ 2⁻¹¹ (see above).
            let q4k = format == StoredFormat::Ggml(GgmlType::Q4K);
            let prefill_tol = if q4k { 2e-3 } else { 1e-4 };
            let prefill = hark_kernels::GEMV_MAX_N + 4;
            for (k, (n, tol)) in [(1usize, 2e-2), (prefill, prefill_tol)]
                .into_iter()
                .enumerate()
            {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| (i * 2654435761usize % 1000) as f32 / 500.0 - 1.0)
                    .collect();
                let mut y = vec![0f32; n * rows];
                packed.matmul(&x, n, &mut y);
                let mut want = vec![0f32; n * rows];
                for j in 0..n {
                    for r in 0..rows {
                        let w = &exact[r * cols..(r + 1) * cols];
                        let xj = &x[j * cols..(j + 1) * cols];
                        want[j * rows + r] = w
                            .iter()
                            .zip(xj)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>() as f32;
                    }
                }
                let (mut dot, mut gg, mut ww, mut max_d, mut max_w) =
                    (0f64, 0f64, 0f64, 0f64, 0f64);
                for (&a, &b) in y.iter().zip(&want) {
                    let (a, b) = (a as f64, b as f64);
                    dot += a * b;
                    gg += a * a;
                    ww += b * b;
                    max_d = max_d.max((a - b).abs());
                    max_w = max_w.max(b.abs());
                }
                let (cos, rel) = (dot / (gg.sqrt() * ww.sqrt()), max_d / max_w);
                assert!(
                    cos >= 0.9999 && rel <= tol,
                    "{name} n={n}: cosine {cos}, max |Δ| {rel} of max"
                );
                worst_mm[k] = worst_mm[k].max(rel);
            }
            checked += 1;
        }
        assert!(checked >= 20, "{dir}: {checked} quantized matrices");
        eprintln!(
            "{dir}: {checked} packed matrices; Q4_K→Q4 worst |Δ| {worst_q4k:.2e} of the row's max |w|; \
             matmul worst max |Δ| {:.1e} (n = 1), {:.1e} (n = 12) of max |y|",
            worst_mm[0], worst_mm[1]
        );
    }
}

#[test]
fn rows_of_quantized_matrices_are_gathered_without_expanding_them() {
    let ckpt = Checkpoint::open(&model_dir("quant-gguf")).unwrap();
    let store = &ckpt.tensors;
    // The per-layer-embedding table (gathered per token; Q4_0 here, as crispasr-quantize
    // falls back to when a row is not whole Q4_K super-blocks) and a Q4_K matrix.
    for (name, format) in [
        (
            "model.language_model.embed_tokens_per_layer.weight",
            GgmlType::Q4_0,
        ),
        (
            "model.language_model.per_layer_model_projection.weight",
            GgmlType::Q4K,
        ),
        ("model.language_model.embed_tokens.weight", GgmlType::Q8_0),
    ] {
        assert_eq!(
            store.format(name),
            Some(StoredFormat::Ggml(format)),
            "{name}"
        );
        let [rows, cols] = store.shape(name).unwrap()[..] else {
            panic!("{name}")
        };
        let all = store.f32(name).unwrap();
        let mut row = vec![0f32; cols];
        for r in [0, 1, rows / 2, rows - 1] {
            store.row_f32(name, r, &mut row).unwrap();
            assert_eq!(row, all[r * cols..(r + 1) * cols], "{name} row {r}");
        }
    }
    let ckpt = Checkpoint::open(&model_dir("quant-gptq")).unwrap();
    let name = "model.language_model.layers.0.mlp.down_proj.weight";
    let [rows, cols] = ckpt.tensors.shape(name).unwrap()[..] else {
        panic!()
    };
    let all = ckpt.tensors.f32(name).unwrap();
    let mut row = vec![0f32; cols];
    ckpt.tensors.row_f32(name, rows - 1, &mut row).unwrap();
    assert_eq!(row, all[(rows - 1) * cols..]);
    // f16 reads of a quantized weight are the f32 values rounded.
    let h = ckpt.tensors.f16(name).unwrap();
    assert_eq!(h[7].to_f32(), half::f16::from_f32(all[7]).to_f32());
}

// ---------------------------------------------------------------------------------------------
// Bad input: one typed error, never a panic
// ---------------------------------------------------------------------------------------------

/// The fixture GGUF with its tokenizer in a temporary directory, bytes editable.
struct GgufCopy {
    dir: tempfile::TempDir,
    bytes: Vec<u8>,
}

impl GgufCopy {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = model_dir("quant-gguf");
        std::fs::copy(
            src.join("tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        let bytes = std::fs::read(src.join("model.gguf")).unwrap();
        Self { dir, bytes }
    }
    /// Byte offset just past the (first) occurrence of `needle` in the header.
    fn after(&self, needle: &str) -> usize {
        let n = needle.as_bytes();
        self.bytes
            .windows(n.len())
            .position(|w| w == n)
            .unwrap_or_else(|| panic!("{needle} not in the file"))
            + n.len()
    }
    fn open(&self) -> Result<Checkpoint, LoadError> {
        let path = self.dir.path().join("model.gguf");
        std::fs::write(&path, &self.bytes).unwrap();
        Checkpoint::open(&path)
    }
}

fn gguf_problem(r: Result<Checkpoint, LoadError>) -> GgufProblem {
    match r {
        Err(LoadError::Gguf { problem, .. }) => problem,
        Err(e) => panic!("expected a GGUF error, got: {e}"),
        Ok(_) => panic!("expected a GGUF error, the file loaded"),
    }
}

#[test]
fn truncated_and_foreign_gguf_files_are_typed_errors() {
    let mut f = GgufCopy::new();
    let full = f.bytes.clone();
    for cut in [0, 3, 7, 20, 100, 4000, full.len() / 2, full.len() - 1] {
        f.bytes = full[..cut].to_vec();
        let p = gguf_problem(f.open());
        assert!(
            matches!(
                p,
                GgufProblem::Truncated { .. } | GgufProblem::OutOfBounds { .. }
            ),
            "cut at {cut}: {p}"
        );
    }
    f.bytes = full.clone();
    f.bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(gguf_problem(f.open()), GgufProblem::BadMagic(_)));
    f.bytes = full.clone();
    f.bytes[4] = 7;
    assert_eq!(gguf_problem(f.open()), GgufProblem::UnsupportedVersion(7));
    // Another architecture's GGUF.
    f.bytes = full.clone();
    let at = f.after("general.architecture") + 4 + 8;
    f.bytes[at..at + 9].copy_from_slice(b"gemma3nXX");
    let p = gguf_problem(f.open());
    assert!(p.to_string().contains("gemma3nXX"), "{p}");
}

#[test]
fn bad_tensor_entries_are_typed_errors() {
    let mut f = GgufCopy::new();
    let full = f.bytes.clone();
    // The entry of `llm.norm.weight` (1-D F32): n_dims u32, ne0 u64, type u32, offset u64.
    let entry = f.after("llm.norm.weight");
    let (dims_at, type_at, offset_at) = (entry + 4, entry + 12, entry + 16);
    f.bytes[type_at..type_at + 4].copy_from_slice(&14u32.to_le_bytes()); // Q6_K
    let p = gguf_problem(f.open());
    assert!(
        matches!(p, GgufProblem::UnsupportedType { type_id: 14, .. }),
        "{p}"
    );
    assert!(p.to_string().contains("Q6_K"), "{p}");
    f.bytes = full.clone();
    f.bytes[type_at..type_at + 4].copy_from_slice(&77u32.to_le_bytes());
    assert!(matches!(
        gguf_problem(f.open()),
        GgufProblem::UnsupportedType { type_id: 77, .. }
    ));
    f.bytes = full.clone();
    let offset = u64::from_le_bytes(f.bytes[offset_at..offset_at + 8].try_into().unwrap());
    f.bytes[offset_at..offset_at + 8].copy_from_slice(&(offset + 4).to_le_bytes());
    assert!(matches!(
        gguf_problem(f.open()),
        GgufProblem::Misaligned { .. }
    ));
    f.bytes = full.clone();
    f.bytes[offset_at..offset_at + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    let p = gguf_problem(f.open());
    assert!(
        matches!(
            p,
            GgufProblem::Overflow(_) | GgufProblem::OutOfBounds { .. }
        ),
        "{p}"
    );
    f.bytes = full.clone();
    f.bytes[dims_at..dims_at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let p = gguf_problem(f.open());
    assert!(
        matches!(
            p,
            GgufProblem::Overflow(_) | GgufProblem::OutOfBounds { .. }
        ),
        "{p}"
    );
    f.bytes = full.clone();
    f.bytes[entry..entry + 4].copy_from_slice(&9u32.to_le_bytes()); // 9 dimensions
    assert!(matches!(
        gguf_problem(f.open()),
        GgufProblem::BadShape { .. }
    ));
    // A Q8_0 row that is not whole blocks.
    f.bytes = full.clone();
    let q8 = f.after("llm.embed_tokens.weight");
    f.bytes[q8 + 4..q8 + 12].copy_from_slice(&48u64.to_le_bytes());
    assert!(matches!(
        gguf_problem(f.open()),
        GgufProblem::BadShape { .. }
    ));
}

#[test]
fn gguf_without_its_tokenizer_or_a_needed_key_says_what_is_missing() {
    let mut f = GgufCopy::new();
    std::fs::remove_file(f.dir.path().join("tokenizer.json")).unwrap();
    match f.open() {
        Err(LoadError::Tokenizer { path, detail }) => {
            assert!(
                path.ends_with("tokenizer.json") && detail.contains("beside"),
                "{detail}"
            )
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let f2 = GgufCopy::new();
    f = f2;
    let at = f.after("gemma4e2b.llm.global_head_dim") - 1;
    f.bytes[at] = b'X';
    assert_eq!(
        gguf_problem(f.open()),
        GgufProblem::MissingKey("gemma4e2b.llm.global_head_dim".into())
    );
    // A tokenizer of another model (its special tokens sit at other ids).
    let f = GgufCopy::new();
    std::fs::copy(
        model_dir("varied").join("tokenizer.json"),
        f.dir.path().join("tokenizer.json"),
    )
    .unwrap();
    match f.open() {
        Err(LoadError::Tokenizer { detail, .. }) => {
            assert!(detail.contains("does not belong"), "{detail}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn a_renamed_gguf_tensor_is_reported_missing_and_unexpected_in_one_report() {
    let mut f = GgufCopy::new();
    let at = f.after("llm.layers.1.ffn.up.weight") - 1;
    f.bytes[at] = b'X';
    let ckpt = f.open().unwrap();
    let err = SpeechModel::<Flex>::load(ckpt, &Default::default(), WeightDtype::F32).unwrap_err();
    let LoadError::Weights(report) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        report.missing,
        ["model.language_model.layers.1.mlp.up_proj.weight"]
    );
    assert_eq!(report.unexpected, ["llm.layers.1.ffn.up.weighX"]);
}

/// The GPTQ fixture in a temporary directory with its config.json edited.
fn gptq_with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Checkpoint, LoadError> {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model_dir("quant-gptq")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    Checkpoint::open(dir.path())
}

#[test]
fn gptq_configs_are_honoured_or_refused() {
    let reference = Checkpoint::open(&model_dir("quant-gptq")).unwrap();
    let name = "model.language_model.layers.1.self_attn.q_proj.weight";
    let want = reference.tensors.f32(name).unwrap();
    // The same v1 packing declared as plain GPTQ.
    let ckpt = gptq_with(|j| {
        j["quantization_config"] = serde_json::json!({
            "quant_method": "gptq", "bits": 4, "group_size": 128, "sym": true, "desc_act": false,
            "checkpoint_format": "gptq"
        })
    })
    .unwrap();
    assert_eq!(ckpt.tensors.f32(name).unwrap(), want);
    // Declared as v2 (zero points stored as is): the stored 7s contradict it.
    let err =
        gptq_with(|j| j["quantization_config"]["packing_format"] = "auto_round:gptqmodel".into())
            .unwrap_err();
    assert!(
        matches!(err, LoadError::Quantized { .. }) && err.to_string().contains("zero"),
        "{err}"
    );
    for (key, value, says) in [
        ("bits", serde_json::json!(8), "8-bit"),
        ("sym", serde_json::json!(false), "asymmetric"),
        ("group_size", serde_json::json!(64), "qzeros has shape"),
        ("quant_method", serde_json::json!("awq"), "awq"),
    ] {
        let err = gptq_with(|j| j["quantization_config"][key] = value).unwrap_err();
        assert!(err.to_string().contains(says), "{key}: {err}");
    }
    let err = gptq_with(|j| {
        j.as_object_mut().unwrap().remove("quantization_config");
    })
    .unwrap_err();
    assert!(err.to_string().contains("no quantization_config"), "{err}");
}

/// With a quantized precision asked for (`q8`, as `auto` picks for large models on the CPU),
/// every natively quantized matrix reaches the packed kernels as stored (same format, same
/// bytes), never requantized; the float ones are packed at q8.
#[test]
fn native_blocks_load_as_stored() {
    for dir in ["quant-gguf", "quant-gptq"] {
        let ckpt = Checkpoint::open(&model_dir(dir)).unwrap();
        let store = &ckpt.tensors;
        let mut native = 0;
        for name in store.names() {
            let Some(want) = store.packed(name).unwrap() else {
                continue;
            };
            let matrix = Matrix::<Flex>::load(
                store,
                None,
                name,
                [want.rows(), want.cols()],
                WeightDtype::Q8.into(),
                &Default::default(),
            )
            .unwrap();
            let Matrix::Packed(got) = matrix else {
                panic!("{dir}/{name}: not packed for the CPU kernels");
            };
            assert_eq!(got.format(), want.format(), "{dir}/{name}");
            assert_eq!(got.as_bytes(), want.as_bytes(), "{dir}/{name}");
            native += 1;
        }
        assert!(native >= 20, "{dir}: {native} native matrices");
    }
}

/// The whole GGUF model on those packed blocks (q8 asked for), against the same file run on
/// exact f32 weights: prompt logits within cosine 0.999 and the greedy ids equal while the f32
/// margins are ≥ 0.1. (The GPTQ fixture's float audio tower is random bf16, which q8 rounding
/// moves far more than the kernels do; its blocks are checked above.)
#[test]
fn gguf_model_runs_on_native_blocks() {
    let exact = load(Checkpoint::open(&model_dir("quant-gguf")).unwrap());
    let packed = SpeechModel::<Flex>::load(
        Checkpoint::open(&model_dir("quant-gguf")).unwrap(),
        &Default::default(),
        WeightDtype::Q8,
    )
    .unwrap();
    for clip in CLIPS {
        let samples = fixtures::clip(clip);
        let want = exact.dump(&samples, &Task::default(), 12).unwrap();
        let got = packed.dump(&samples, &Task::default(), 12).unwrap();
        let cosine = cosine(
            &got.generation.prompt_logits_last,
            &want.generation.prompt_logits_last,
        );
        let firm = want
            .generation
            .margins
            .iter()
            .position(|&m| m < 0.1)
            .unwrap_or(want.generation.ids.len());
        eprintln!(
            "quant-gguf/{clip}: q8 packed vs exact f32 logits cosine {cosine:.6}, firm {firm}"
        );
        assert!(cosine >= 0.999, "quant-gguf/{clip}: cosine {cosine}");
        assert_eq!(
            got.generation.ids[..firm],
            want.generation.ids[..firm],
            "quant-gguf/{clip}: greedy ids"
        );
    }
}
