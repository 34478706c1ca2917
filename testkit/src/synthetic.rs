//! A Gemma 4 speech checkpoint built entirely in memory: config, random weights, tokenizer.
//!
//! For benchmarks and tests at the real shapes without the real weights (speed does not depend
//! on weight values). The weights are seeded noise with the per-tensor scales of the fixture
//! generator (`tools/reference/make_fixtures.py`, `scale_weights`), so activations stay O(1)
//! through every layer. They are stored in bf16 like the release, as one safetensors buffer the
//! model reads exactly as it reads a file; the list of tensors comes from the same functions
//! [`SpeechModel::load`](hark_model::SpeechModel::load) validates against, so it cannot drift.
//!
//! The tokenizer is not Gemma's (its 262 144-entry vocabulary is not available here): it is a
//! word-level vocabulary of the chat prompts' words, with Gemma 4's special tokens, `\n`,
//! `user` and `model` at their released ids (docs/model.md §5.1) and the audio ids the config
//! names.
//! Every prompt word is one token, so the ASR prompt has about as many text tokens as with the
//! real tokenizer: 74 against 70 for the rendered ASR prompt (see [`tokenizer_json`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use half::bf16;
use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};
use serde_json::{Value, json};

use hark_model::checkpoint::{Checkpoint, TensorStore};
use hark_model::config::{Gemma4ConfigJson, GenerationConfigJson, ModelConfig};
use hark_model::error::LoadError;
use hark_model::prompt::{Task, render};
use hark_model::tokenizer::TextTokenizer;
use hark_model::{decoder, encoder};

/// `config.json` of google/gemma-4-E2B-it's speech path (docs/model.md §2 and §4). The vision tower
/// is left out: Hark never runs it, so the synthetic checkpoint carries no vision weights.
pub fn e2b_config_json() -> Value {
    let layer_types: Vec<&str> = (0..35)
        .map(|i| {
            if i % 5 == 4 {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    json!({
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "audio_config": {
            "model_type": "gemma4_audio",
            "hidden_size": 1024, "num_hidden_layers": 12, "num_attention_heads": 8,
            "hidden_act": "silu", "subsampling_conv_channels": [128, 32], "conv_kernel_size": 5,
            "residual_weight": 0.5, "attention_chunk_size": 12, "attention_context_left": 13,
            "attention_context_right": 0, "attention_logit_cap": 50.0,
            "attention_invalid_logits_value": -1.0e9, "use_clipped_linears": true,
            "rms_norm_eps": 1e-6, "gradient_clipping": 1.0e10, "output_proj_dims": 1536
        },
        "text_config": {
            "model_type": "gemma4_text",
            "vocab_size": 262144, "vocab_size_per_layer_input": 262144,
            "hidden_size": 1536, "intermediate_size": 6144, "num_hidden_layers": 35,
            "num_attention_heads": 8, "num_key_value_heads": 1, "num_global_key_value_heads": null,
            "head_dim": 256, "global_head_dim": 512, "hidden_activation": "gelu_pytorch_tanh",
            "sliding_window": 512, "layer_types": layer_types,
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {
                    "rope_type": "proportional", "partial_rotary_factor": 0.25,
                    "rope_theta": 1000000.0
                }
            },
            "hidden_size_per_layer_input": 256, "num_kv_shared_layers": 20,
            "use_double_wide_mlp": true, "attention_k_eq_v": false, "enable_moe_block": false,
            "final_logit_softcapping": 30.0, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 131072, "tie_word_embeddings": true,
            "attention_bias": false, "use_bidirectional_attention": null,
            "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2
        },
        "vision_config": null,
        "boa_token_id": 256000, "eoa_token_id": 258883, "audio_token_id": 258881,
        "boi_token_id": 255999, "eoi_token_id": 258882, "image_token_id": 258880,
        "video_token_id": 258884,
        "eos_token_id": [1, 106], "bos_token_id": 2, "pad_token_id": 0,
        "tie_word_embeddings": true
    })
}

/// `generation_config.json` of the release (docs/model.md §5.5).
pub fn e2b_generation_config_json() -> Value {
    json!({
        "bos_token_id": 2, "pad_token_id": 0, "eos_token_id": [1, 106, 50],
        "do_sample": true, "temperature": 1.0, "top_k": 64, "top_p": 0.95
    })
}

/// A small model laid out like E2B: the (S,S,S,S,F) pattern, KV sharing, the double-wide MLP,
/// per-layer embeddings, clipped audio linears and E2B's vocabulary and special ids (the
/// shapes of the `e2b-shaped` fixture otherwise). Builds in well under a second.
pub fn tiny_config_json() -> Value {
    let mut c = e2b_config_json();
    let layer_types: Vec<&str> = (0..10)
        .map(|i| {
            if i % 5 == 4 {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    let t = &mut c["text_config"];
    for (key, value) in [
        ("hidden_size", json!(64)),
        ("intermediate_size", json!(96)),
        ("num_hidden_layers", json!(10)),
        ("num_attention_heads", json!(4)),
        ("head_dim", json!(32)),
        ("global_head_dim", json!(64)),
        ("sliding_window", json!(24)),
        ("layer_types", json!(layer_types)),
        ("num_kv_shared_layers", json!(5)),
        ("hidden_size_per_layer_input", json!(16)),
    ] {
        t[key] = value;
    }
    let a = &mut c["audio_config"];
    for (key, value) in [
        ("hidden_size", json!(64)),
        ("num_hidden_layers", json!(3)),
        ("num_attention_heads", json!(4)),
        ("output_proj_dims", json!(64)),
    ] {
        a[key] = value;
    }
    c
}

/// Build a checkpoint from a `config.json` value (and optionally a `generation_config.json`
/// value): random bf16 weights for every tensor the model loads, drawn from `seed`, and the
/// word-level tokenizer of [`tokenizer_json`].
pub fn checkpoint(
    name: &str,
    config: &Value,
    generation: Option<&Value>,
    seed: u64,
) -> Result<Checkpoint, LoadError> {
    let label = |file: &str| PathBuf::from(format!("<synthetic {name}>/{file}"));
    let json_err = |file: &str| {
        let path = label(file);
        move |source| LoadError::Json { path, source }
    };
    let config_json: Gemma4ConfigJson =
        serde_json::from_value(config.clone()).map_err(json_err("config.json"))?;
    let generation: Option<GenerationConfigJson> = generation
        .map(|g| serde_json::from_value(g.clone()))
        .transpose()
        .map_err(json_err("generation_config.json"))?;
    let resolved =
        ModelConfig::resolve(&config_json, generation.as_ref(), None).map_err(|source| {
            LoadError::Config {
                path: label("config.json"),
                source,
            }
        })?;
    let tokenizer_path = label("tokenizer.json");
    let tokenizer = tokenizer_json(config).map_err(|detail| LoadError::Tokenizer {
        path: tokenizer_path.clone(),
        detail,
    })?;
    let tokenizer =
        TextTokenizer::from_bytes(tokenizer.to_string().as_bytes(), &tokenizer_path, &resolved)?;
    let tensors = TensorStore::from_owned(
        &label("model.safetensors").display().to_string(),
        safetensors_bytes(&resolved, seed)?,
    )?;
    Ok(Checkpoint {
        name: name.to_string(),
        config: resolved,
        tokenizer,
        tensors,
    })
}

/// Write the checkpoint [`checkpoint`] builds to `dir` in the Hugging Face layout
/// (`config.json`, `generation_config.json`, `tokenizer.json`, `model.safetensors`), so it can
/// be opened like a downloaded one: memory-mapped, as a real model is loaded. The weights file
/// is written last, under a temporary name, so a half-written directory is never taken for
/// a whole one.
pub fn write_dir(
    dir: &Path,
    config: &Value,
    generation: Option<&Value>,
    seed: u64,
) -> Result<(), LoadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let write_json = |file: &str, value: &Value| {
        let path = dir.join(file);
        std::fs::write(&path, value.to_string()).map_err(io(&path))
    };
    write_json("config.json", config)?;
    if let Some(g) = generation {
        write_json("generation_config.json", g)?;
    }
    let tokenizer = tokenizer_json(config).map_err(|detail| LoadError::Tokenizer {
        path: dir.join("tokenizer.json"),
        detail,
    })?;
    write_json("tokenizer.json", &tokenizer)?;
    let config_json: Gemma4ConfigJson =
        serde_json::from_value(config.clone()).map_err(|source| LoadError::Json {
            path: dir.join("config.json"),
            source,
        })?;
    let generation: Option<GenerationConfigJson> = generation
        .map(|g| serde_json::from_value(g.clone()))
        .transpose()
        .map_err(|source| LoadError::Json {
            path: dir.join("generation_config.json"),
            source,
        })?;
    let resolved =
        ModelConfig::resolve(&config_json, generation.as_ref(), None).map_err(|source| {
            LoadError::Config {
                path: dir.join("config.json"),
                source,
            }
        })?;
    let bytes = safetensors_bytes(&resolved, seed)?;
    let tmp = dir.join("model.safetensors.partial");
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    let path = dir.join("model.safetensors");
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Every tensor the speech model loads for `config`, with its shape (what
/// [`SpeechModel::load`](hark_model::SpeechModel::load) checks the checkpoint against).
pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let mut expected = encoder::expected_tensors(
        &config.audio,
        config.features.feature_size,
        config.text.hidden_size,
    );
    expected.extend(decoder::expected_tensors(&config.text));
    expected
}

// ---------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------

/// Elements filled per work item: small enough to balance the threads, large enough that the
/// queue costs nothing.
const CHUNK: usize = 1 << 20;

/// One safetensors buffer holding random bf16 values for every expected tensor. The header is
/// written first and the values are generated straight into the buffer, on all cores.
pub fn safetensors_bytes(config: &ModelConfig, seed: u64) -> Result<Vec<u8>, LoadError> {
    let expected = expected_tensors(config);
    let bad = |detail: String| LoadError::Safetensors {
        path: PathBuf::from("<synthetic>/model.safetensors"),
        detail,
    };
    let mut infos = Vec::with_capacity(expected.len());
    let mut offset = 0;
    for (name, shape) in &expected {
        let bytes = shape.iter().product::<usize>() * 2;
        infos.push((
            name.clone(),
            TensorInfo {
                dtype: Dtype::BF16,
                shape: shape.clone(),
                data_offsets: (offset, offset + bytes),
            },
        ));
        offset += bytes;
    }
    let metadata = Metadata::new(None, infos).map_err(|e| bad(e.to_string()))?;
    let mut header = serde_json::to_vec(&metadata).map_err(|e| bad(e.to_string()))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let data_start = 8 + header.len();
    // Zeroed allocation: the pages are only touched when the values are written.
    let mut buffer = vec![0u8; data_start + offset];
    buffer[..8].copy_from_slice(&(header.len() as u64).to_le_bytes());
    buffer[8..data_start].copy_from_slice(&header);

    let scales = Scales {
        text_hidden: config.text.hidden_size,
        ple_dim: config.text.ple_dim,
    };
    let mut jobs = Vec::new();
    let mut rest = &mut buffer[data_start..];
    for (name, shape) in &expected {
        let (data, tail) = rest.split_at_mut(shape.iter().product::<usize>() * 2);
        rest = tail;
        let range = scales.range(name, shape, seed);
        let name_seed = seed ^ fnv1a(name.as_bytes());
        for (i, chunk) in data.chunks_mut(CHUNK * 2).enumerate() {
            jobs.push(Job {
                chunk,
                range,
                seed: mix(name_seed, i as u64),
            });
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let queue = Mutex::new(jobs.into_iter());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let job = queue.lock().expect("no job panics").next();
                    match job {
                        Some(job) => fill_bf16(job.chunk, job.range, job.seed),
                        None => break,
                    }
                }
            });
        }
    });
    Ok(buffer)
}

struct Job<'a> {
    chunk: &'a mut [u8],
    range: (f32, f32),
    seed: u64,
}

/// The value scales of `scale_weights`: every matrix 1/√fan_in, norms around 1, a wide final
/// norm so logits spread over a few units, finite clip bounds that really clamp. Normal draws
/// there are uniform draws of the same standard deviation here.
struct Scales {
    text_hidden: usize,
    ple_dim: usize,
}

impl Scales {
    /// `(lo, hi)` of the uniform draw for one tensor (`lo == hi` for a constant).
    fn range(&self, name: &str, shape: &[usize], seed: u64) -> (f32, f32) {
        let normal = |std: f64| {
            let half = (std * 3f64.sqrt()) as f32;
            (-half, half)
        };
        if let Some(v) = clip_bound(name, seed) {
            return (v, v);
        }
        let is_norm =
            name.ends_with("norm.weight") || name.contains(".norm") || name.contains("layernorm");
        if name.ends_with("per_dim_scale") {
            normal(0.5)
        } else if name.ends_with("layer_scalar") {
            (0.6, 1.2)
        } else if name.ends_with("embed_tokens.weight") {
            normal(1.0 / (self.text_hidden as f64).sqrt())
        } else if name == "model.language_model.norm.weight" {
            (4.0, 7.0)
        } else if name.ends_with("embed_tokens_per_layer.weight") {
            normal(1.0 / (self.ple_dim.max(1) as f64).sqrt())
        } else if shape.len() == 1 && is_norm {
            (0.7, 1.3)
        } else if name.ends_with(".bias") {
            normal(0.1)
        } else if shape.len() >= 2 {
            let fan_in: usize = shape[1..].iter().product();
            normal(1.0 / (fan_in.max(1) as f64).sqrt())
        } else if shape.len() == 1 {
            (0.7, 1.3)
        } else {
            (0.6, 1.2)
        }
    }
}

/// The clip bounds of one `ClippableLinear`, shared by its four scalars: inputs to ±U(2, 3),
/// outputs to [−1.1·U(2.5, 4), U(2.5, 4)].
fn clip_bound(name: &str, seed: u64) -> Option<f32> {
    let (module, which) = name.rsplit_once('.')?;
    if !matches!(
        which,
        "input_min" | "input_max" | "output_min" | "output_max"
    ) {
        return None;
    }
    let mut rng = SplitMix64(seed ^ fnv1a(module.as_bytes()));
    let in_lim = 2.0 + rng.unit();
    let out_lim = 2.5 + 1.5 * rng.unit();
    Some(match which {
        "input_min" => -in_lim,
        "input_max" => in_lim,
        "output_min" => -1.1 * out_lim,
        _ => out_lim,
    })
}

/// Fill bf16 little-endian values uniform over 256 evenly spaced levels of `[lo, hi]`, eight
/// draws per 64-bit word through a lookup table (plenty of resolution for benchmark weights,
/// and fast enough that writing the memory is the cost).
fn fill_bf16(out: &mut [u8], (lo, hi): (f32, f32), seed: u64) {
    let step = (hi - lo) / 256.0;
    let levels: [[u8; 2]; 256] =
        std::array::from_fn(|i| bf16::from_f32(lo + step * (i as f32 + 0.5)).to_le_bytes());
    let mut rng = SplitMix64(seed);
    let mut octets = out.chunks_exact_mut(16);
    for octet in &mut octets {
        let draws = rng.next_u64().to_le_bytes();
        for (pair, &d) in octet.chunks_exact_mut(2).zip(&draws) {
            pair.copy_from_slice(&levels[usize::from(d)]);
        }
    }
    let draws = rng.next_u64().to_le_bytes();
    for (pair, &d) in octets.into_remainder().chunks_exact_mut(2).zip(&draws) {
        pair.copy_from_slice(&levels[usize::from(d)]);
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough for weights.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn mix(a: u64, b: u64) -> u64 {
    SplitMix64(a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

/// Gemma 4's special tokens at their ids in the released vocabulary (docs/model.md §5.1).
const SPECIAL_TOKENS: [(&str, u32); 24] = [
    ("<pad>", 0),
    ("<eos>", 1),
    ("<bos>", 2),
    ("<unk>", 3),
    ("<mask>", 4),
    ("<|tool>", 46),
    ("<tool|>", 47),
    ("<|tool_call>", 48),
    ("<tool_call|>", 49),
    ("<|tool_response>", 50),
    ("<tool_response|>", 51),
    ("<|\"|>", 52),
    ("<|think|>", 98),
    ("<|channel>", 100),
    ("<channel|>", 101),
    ("<|turn>", 105),
    ("<turn|>", 106),
    ("<|image>", 255_999),
    ("<|audio>", 256_000),
    ("<|image|>", 258_880),
    ("<|audio|>", 258_881),
    ("<image|>", 258_882),
    ("<audio|>", 258_883),
    ("<|video|>", 258_884),
];

/// Ordinary tokens whose released ids docs/model.md §5.1 gives.
const KNOWN_WORDS: [(&str, u32); 3] = [("\n", 107), ("user", 2364), ("model", 4368)];

/// Where the config names a special token's id, that id wins over the released one.
const CONFIG_IDS: [(&str, &str); 10] = [
    ("<|audio>", "boa_token_id"),
    ("<|audio|>", "audio_token_id"),
    ("<audio|>", "eoa_token_id"),
    ("<audio|>", "eoa_token_index"),
    ("<|image>", "boi_token_id"),
    ("<|image|>", "image_token_id"),
    ("<image|>", "eoi_token_id"),
    ("<|video|>", "video_token_id"),
    ("<pad>", "pad_token_id"),
    ("<bos>", "bos_token_id"),
];

/// A `tokenizer.json` for `config`: a word-level model over the words of the chat prompts
/// (ASR and translation instructions), split like the pre-tokenizer splits them (`\n` alone,
/// spaces kept as a leading `▁`, each punctuation mark alone), with the special tokens at the
/// ids the config names, else at their released ids. Unknown words become `<unk>`, so any text
/// still encodes to about one token per word.
pub fn tokenizer_json(config: &Value) -> Result<Value, String> {
    let vocab_size = config["text_config"]["vocab_size"]
        .as_u64()
        .ok_or("config.json has no text_config.vocab_size")? as u32;
    let id_in = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).map(|id| id as u32);
    let mut named: HashMap<&str, u32> = HashMap::new();
    for (token, key) in CONFIG_IDS {
        let from_text = matches!(key, "pad_token_id" | "bos_token_id");
        let source = if from_text {
            &config["text_config"]
        } else {
            config
        };
        if let Some(id) = id_in(source, key) {
            named.insert(token, id);
        }
    }
    let mut vocab = Vocab::new(vocab_size);
    // Ids fixed by the config first, then the released ids where they are free, then the rest.
    for (token, _) in SPECIAL_TOKENS {
        if let Some(&id) = named.get(token) {
            vocab.place(token, id)?;
        }
    }
    let mut words: Vec<String> = KNOWN_WORDS.iter().map(|(w, _)| w.to_string()).collect();
    let prompts = [
        render(&Task::default()),
        render(&Task::Translate {
            source: "English".into(),
            target: "French".into(),
        }),
    ];
    for prompt in &prompts {
        let mut text = prompt.clone();
        for (token, _) in SPECIAL_TOKENS {
            text = text.replace(token, "\n");
        }
        words.extend(pieces(&text));
    }
    for (token, id) in SPECIAL_TOKENS.iter().chain(KNOWN_WORDS.iter()) {
        vocab.prefer(token, *id);
    }
    for (token, _) in SPECIAL_TOKENS {
        vocab.push(token)?;
    }
    for word in &words {
        vocab.push(word)?;
    }
    let added: Vec<Value> = SPECIAL_TOKENS
        .iter()
        .map(|(token, _)| {
            json!({
                "id": vocab.ids[*token], "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            })
        })
        .collect();
    let metaspace = json!({
        "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "never", "split": true
    });
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"String": "\n"}, "behavior": "Isolated", "invert": false},
                metaspace,
                {"type": "Punctuation", "behavior": "Isolated"}
            ]
        },
        "post_processor": null,
        "decoder": metaspace,
        "model": {"type": "WordLevel", "vocab": vocab.ids, "unk_token": "<unk>"}
    }))
}

/// Token → id, with ids handed out below the vocabulary size.
struct Vocab {
    size: u32,
    ids: BTreeMap<String, u32>,
    taken: HashMap<u32, String>,
    next_free: u32,
}

impl Vocab {
    fn new(size: u32) -> Self {
        Self {
            size,
            ids: BTreeMap::new(),
            taken: HashMap::new(),
            next_free: 0,
        }
    }

    /// `token` must have `id`.
    fn place(&mut self, token: &str, id: u32) -> Result<(), String> {
        if id >= self.size {
            return Err(format!(
                "{token} has id {id}, outside the vocabulary of {}",
                self.size
            ));
        }
        match (self.ids.get(token), self.taken.get(&id)) {
            (Some(&have), _) if have != id => Err(format!("{token} has two ids, {have} and {id}")),
            (_, Some(other)) if other != token => {
                Err(format!("id {id} is claimed by both {other} and {token}"))
            }
            _ => {
                self.ids.insert(token.to_string(), id);
                self.taken.insert(id, token.to_string());
                Ok(())
            }
        }
    }

    /// Give `token` the id `id` if both are still free.
    fn prefer(&mut self, token: &str, id: u32) {
        if id < self.size && !self.ids.contains_key(token) && !self.taken.contains_key(&id) {
            self.ids.insert(token.to_string(), id);
            self.taken.insert(id, token.to_string());
        }
    }

    /// Give `token` the lowest free id, unless it has one.
    fn push(&mut self, token: &str) -> Result<(), String> {
        if self.ids.contains_key(token) {
            return Ok(());
        }
        while self.taken.contains_key(&self.next_free) {
            self.next_free += 1;
        }
        if self.next_free >= self.size {
            return Err(format!(
                "a vocabulary of {} ids cannot hold the prompt words",
                self.size
            ));
        }
        let id = self.next_free;
        self.place(token, id)
    }
}

/// The pieces the pre-tokenizer of [`tokenizer_json`] cuts `text` into.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push("\n".to_string());
        }
        // Metaspace: each space becomes `▁` and starts a new piece.
        let mut words = Vec::new();
        let mut word = String::new();
        for c in line.chars() {
            if c == ' ' && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.push(if c == ' ' { '\u{2581}' } else { c });
        }
        if !word.is_empty() {
            words.push(word);
        }
        // Punctuation: every mark is a piece of its own.
        for word in words {
            let mut run = String::new();
            for c in word.chars() {
                if c.is_ascii_punctuation() {
                    if !run.is_empty() {
                        out.push(std::mem::take(&mut run));
                    }
                    out.push(c.to_string());
                } else {
                    run.push(c);
                }
            }
            if !run.is_empty() {
                out.push(run);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hark_model::tokenizer::special;

    fn tiny() -> ModelConfig {
        let json: Gemma4ConfigJson = serde_json::from_value(tiny_config_json()).unwrap();
        ModelConfig::resolve(&json, None, None).unwrap()
    }

    #[test]
    fn e2b_config_has_the_release_sizes() {
        let json: Gemma4ConfigJson = serde_json::from_value(e2b_config_json()).unwrap();
        let generation: GenerationConfigJson =
            serde_json::from_value(e2b_generation_config_json()).unwrap();
        let c = ModelConfig::resolve(&json, Some(&generation), None).unwrap();
        assert_eq!(c.text.num_layers(), 35);
        assert_eq!(c.text.first_shared_layer(), 15);
        assert_eq!(c.stop_token_ids, vec![1, 106, 50]);
        let count = |filter: &dyn Fn(&str) -> bool| -> usize {
            expected_tensors(&c)
                .iter()
                .filter(|(n, _)| filter(n))
                .map(|(_, s)| s.iter().product::<usize>())
                .sum()
        };
        // docs/model.md §4.3 and §7: PLE table 262144 × 8960, audio tower ≈ 0.3 B, decoder
        // layers ≈ 1.9 B.
        assert_eq!(
            count(&|n| n.ends_with("embed_tokens_per_layer.weight")),
            262_144 * 8960
        );
        let audio = count(&|n| n.contains("audio"));
        assert!((280_000_000..340_000_000).contains(&audio), "{audio}");
        let layers = count(&|n| n.contains("language_model.layers."));
        assert!((1_700_000_000..2_000_000_000).contains(&layers), "{layers}");
    }

    #[test]
    fn weights_are_seeded_and_scaled_like_the_fixtures() {
        let c = tiny();
        let a = safetensors_bytes(&c, 5).unwrap();
        assert_eq!(
            a,
            safetensors_bytes(&c, 5).unwrap(),
            "same seed, same bytes"
        );
        assert_ne!(a, safetensors_bytes(&c, 6).unwrap(), "another seed differs");
        let store = TensorStore::from_owned("tiny", a).unwrap();
        assert_eq!(
            store.dtype("model.language_model.norm.weight"),
            Some(hark_model::checkpoint::StoredDtype::BF16)
        );
        let std = |name: &str| {
            let v = store.f32(name).unwrap();
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        // 1/√fan_in for matrices (fan_in 64 here), 1/√hidden for the embedding.
        let q = std("model.language_model.layers.0.self_attn.q_proj.weight");
        assert!((q - 0.125).abs() < 0.01, "{q}");
        let e = std("model.language_model.embed_tokens.weight");
        assert!((e - 0.125).abs() < 0.005, "{e}");
        let norm = store.f32("model.language_model.norm.weight").unwrap();
        assert!(norm.iter().all(|&x| (4.0..=7.0).contains(&x)));
        // One module's four clip bounds agree: ±in, [−1.1·out, out].
        let p = "model.audio_tower.layers.1.self_attn.q_proj";
        let b = |s: &str| store.f32(&format!("{p}.{s}")).unwrap()[0];
        assert_eq!(b("input_min"), -b("input_max"));
        assert!((2.0..=3.0).contains(&b("input_max")));
        assert!((2.5..=4.0).contains(&b("output_max")));
        assert!((b("output_min") + 1.1 * b("output_max")).abs() < 0.05);
        let report = store.validate(&expected_tensors(&c), |_| false);
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn tokenizer_has_released_ids_and_knows_every_prompt_word() {
        let ckpt = checkpoint("tiny", &tiny_config_json(), None, 1).unwrap();
        let tok = &ckpt.tokenizer;
        for (token, id) in SPECIAL_TOKENS.iter().chain(KNOWN_WORDS.iter()) {
            assert_eq!(tok.token_id(token), Some(*id), "{token:?}");
        }
        for task in [
            Task::default(),
            Task::Translate {
                source: "English".into(),
                target: "French".into(),
            },
        ] {
            let ids = tok.encode(&render(&task)).unwrap();
            assert!(!ids.contains(&3), "an <unk> in {:?}", render(&task));
            assert_eq!(ids[..4], [2, 105, 2364, 107]);
            assert_eq!(ids[ids.len() - 3..], [105, 4368, 107]);
        }
        let ids = tok.encode(&render(&Task::default())).unwrap();
        // One token per word and mark: 74 here. Gemma's own tokenizer gives 70: its 10 s ASR
        // prompt is 321 tokens, 250 audio tokens and the two audio markers replacing one.
        assert_eq!(ids.len(), 74);
        let text = tok
            .decode(&tok.encode("Transcribe the digits 1.7 and 3").unwrap())
            .unwrap();
        assert_eq!(text, "Transcribe the digits 1.7 and 3");
        assert_eq!(tok.token_id(special::AUDIO_PLACEHOLDER), Some(258_881));
    }

    #[test]
    fn config_ids_win_and_conflicts_are_errors() {
        let mut c = tiny_config_json();
        c["audio_token_id"] = json!(20);
        let tok = tokenizer_json(&c).unwrap();
        assert_eq!(tok["model"]["vocab"]["<|audio|>"], json!(20));
        c["boa_token_id"] = json!(20);
        assert!(tokenizer_json(&c).unwrap_err().contains("claimed by both"));
        let mut small = tiny_config_json();
        small["text_config"]["vocab_size"] = json!(40);
        assert!(tokenizer_json(&small).is_err());
    }
}
