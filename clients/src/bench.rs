//! `hark bench`: time each stage of the speech path at the real E2B shapes, on random weights
//! built in memory (speed does not depend on weight values), and optionally the Hugging Face
//! reference on the same shapes and audio in the same run.
//!
//! Stages, each the median of `--runs` warm runs after one warm-up run:
//! mel features; audio encoder (tower + `embed_audio`); audio prefill (the audio tokens through
//! the decoder's cache-owning layers, as the streaming engine appends them); prompt prefill (the
//! whole prompt, logits of the last position, as offline transcription does); greedy decode
//! (ms per token over the first `--decode-steps` steps, forced past any stop token).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use hark_model::decoder::Logits;
use hark_model::features::log_mel;
use hark_model::nn::to_vec;
use hark_model::packed_cache;
use hark_model::{
    BackendKind, BackendTask, Checkpoint, Kernels, SpeechModel, Task, WeightsChoice, run_on,
};
use hark_testkit::synthetic;
use serde::Serialize;
use serde_json::Value;

use crate::model_args::BackendArg;
use crate::stream_bench::{self, StreamRun};

/// A speech clip from the reference fixtures (espeak-ng, 5.6 s), looped to the bench length.
const DEFAULT_CLIP: &[u8] = include_bytes!("../../tests/fixtures/audio/april.wav");
/// The Hugging Face side of `--compare-hf`, run with the given Python.
const HF_SCRIPT: &str = include_str!("../../tools/bench/hf_reference.py");

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Model shapes: `e2b` (the release), `tiny` (E2B's layout, small), or a config.json path.
    #[arg(long, default_value = "e2b")]
    pub config: String,
    /// Keep only this many decoder layers (the layer pattern and the share of KV-shared layers
    /// are kept), e.g. to fit f32 weights in memory.
    #[arg(long)]
    pub text_layers: Option<usize>,
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = BackendArg::Flex)]
    pub backend: BackendArg,
    /// Precision of matmul weights: auto, f32, f16, bf16, q8, q4.
    #[arg(long, default_value_t = WeightsChoice::Auto)]
    pub weights: WeightsChoice,
    /// Audio file (default: a speech fixture clip), looped or cut to --seconds.
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Seconds of audio (one span: at most 30).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm runs per stage; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Greedy steps timed per decode run.
    #[arg(long, default_value_t = 32)]
    pub decode_steps: usize,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Build the synthetic weights in memory instead of writing them once to the cache
    /// directory and memory-mapping them (load time and memory are then not a real load's).
    #[arg(long)]
    pub in_memory: bool,
    /// Also run one stream through the streaming engine (VAD off, then on; partials on;
    /// 320 ms chunks) on a simulated real-time clock: compute real-time factor, onset → first
    /// partial, end of speech → final.
    #[arg(long)]
    pub stream: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the bench inputs (config.json, samples.f32, prompt.json) to this directory, for
    /// tools/bench/hf_reference.py.
    #[arg(long)]
    pub save_inputs: Option<PathBuf>,
    /// Then run the Hugging Face reference (tools/bench/hf_reference.py) with this Python
    /// (transformers 5.23.0 + torch) on the same shapes and audio, and print both side by side.
    #[arg(long, value_name = "PYTHON")]
    pub compare_hf: Option<PathBuf>,
}

/// What `hark bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub backend: String,
    pub weights: String,
    /// `cpu` (Hark's packed CPU kernels) or `burn` (Burn's matmul on the device).
    pub kernels: String,
    pub threads: usize,
    /// The CPU's model name and the kernel path Hark's matmuls take on it.
    pub cpu: String,
    pub audio_seconds: f64,
    pub audio_tokens: usize,
    pub prompt_tokens: usize,
    pub runs: usize,
    pub decode_steps: usize,
    /// Bytes of the stored checkpoint (bf16), built in memory.
    pub checkpoint_gb: f64,
    pub build_s: f64,
    pub load_s: f64,
    pub mel_ms: f64,
    pub encoder_ms: f64,
    pub encoder_ms_per_audio_s: f64,
    pub audio_prefill_ms: f64,
    pub audio_prefill_tokens_per_s: f64,
    pub prompt_prefill_ms: f64,
    pub decode_ms_per_token: f64,
    /// mel + encoder + prompt prefill + `decode_steps` decode steps.
    pub end_to_end_ms: f64,
    pub rss_after_load_gb: f64,
    pub peak_rss_gb: f64,
    /// One-minute load average of the machine before building the model and after the last
    /// run (other work on the machine skews every figure).
    pub load_avg_before: f64,
    pub load_avg_after: f64,
    /// Every warm run, per stage (decode: ms per token).
    pub samples_ms: StageSamples,
    /// `--stream`: one stream through the streaming engine, VAD off and on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stream: Vec<StreamRun>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StageSamples {
    pub mel: Vec<f64>,
    pub encoder: Vec<f64>,
    pub audio_prefill: Vec<f64>,
    pub prompt_prefill: Vec<f64>,
    pub decode_per_token: Vec<f64>,
}

/// The inputs both sides of a comparison run on.
struct Inputs {
    config: Value,
    samples: Vec<f32>,
    prompt_ids: Vec<u32>,
    audio_at: usize,
    audio_len: usize,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.runs == 0 || args.decode_steps == 0 {
        bail!("--runs and --decode-steps must be at least 1");
    }
    if !(args.seconds > 0.0 && args.seconds <= 30.0) {
        bail!("--seconds must be in (0, 30]: the bench times one audio span");
    }
    let kind = match args.backend {
        BackendArg::Flex => BackendKind::Flex,
        BackendArg::Ndarray => BackendKind::NdArray,
        BackendArg::Cuda => BackendKind::Cuda,
    };
    let (report, inputs) = run_on(kind, Job { args: &args, kind })??;
    // The model is gone by now: the reference gets the memory to itself.
    let inputs_dir = match (&args.save_inputs, &args.compare_hf) {
        (Some(dir), _) => Some((dir.clone(), false)),
        (None, Some(_)) => Some((
            std::env::temp_dir().join(format!("hark-bench-{}", std::process::id())),
            true,
        )),
        (None, None) => None,
    };
    if let Some((dir, _)) = &inputs_dir {
        save_inputs(dir, &inputs)?;
    }
    let hf = match (&args.compare_hf, &inputs_dir) {
        (Some(python), Some((dir, _))) => Some(run_reference(python, dir, &args)),
        _ => None,
    };
    if let Some((dir, true)) = &inputs_dir {
        std::fs::remove_dir_all(dir).ok();
    }
    let hf = hf.transpose()?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let out = match &hf {
            Some(hf) => serde_json::json!({ "hark": report, "hf": hf }),
            None => serde_json::to_value(&report)?,
        };
        writeln!(stdout, "{out}")?;
    } else {
        write!(stdout, "{}", table(&report, hf.as_ref()))?;
    }
    Ok(())
}

struct Job<'a> {
    args: &'a BenchArgs,
    kind: BackendKind,
}

impl BackendTask for Job<'_> {
    type Output = Result<(BenchReport, Inputs)>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        measure::<B>(self.args, self.kind, &device)
    }
}

fn measure<B: Backend>(
    args: &BenchArgs,
    kind: BackendKind,
    device: &B::Device,
) -> Result<(BenchReport, Inputs)> {
    let (name, config, generation) = model_config(args)?;
    let samples = bench_audio(args)?;
    let load_avg_before = load_avg().unwrap_or(f64::NAN);

    let started = Instant::now();
    let ckpt = synthetic_checkpoint(args, &name, &config, generation.as_ref())?;
    let build_s = started.elapsed().as_secs_f64();
    // Building the weights is not loading them: the peak memory reported is the model's.
    reset_peak_rss();
    let (checkpoint_bytes, params) = ckpt
        .tensors
        .names()
        .filter_map(|n| Some((ckpt.tensors.shape(n)?, ckpt.tensors.dtype(n)?)))
        .fold((0usize, 0usize), |(bytes, params), (shape, dtype)| {
            let n: usize = shape.iter().product();
            let size = match dtype {
                hark_model::checkpoint::StoredDtype::F32 => 4,
                _ => 2,
            };
            (bytes + n * size, params + n)
        });
    let weights = kind.weights(args.weights, params)?;
    let started = Instant::now();
    let model = Arc::new(
        SpeechModel::<B>::load(ckpt, device, weights)
            .with_context(|| format!("cannot load the {name} model"))?,
    );
    let load_s = started.elapsed().as_secs_f64();
    let rss_after_load_gb = rss_gb("VmRSS:").unwrap_or(f64::NAN);
    tracing::info!("built {name} in {build_s:.1} s, loaded in {load_s:.1} s");

    let sync = || B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"));
    let mut s = StageSamples::default();
    let task = Task::default();
    let pad = model.config.text.pad_token_id;
    let decoder = &model.decoder;
    let mut logits_last = Vec::new();
    let mut prompt = None;
    let mut prompt_cache = None;
    for run in 0..=args.runs {
        let warm = run > 0;
        let t = Instant::now();
        let frames = log_mel(&model.mel, &samples);
        push(warm, &mut s.mel, t);

        let t = Instant::now();
        let audio = model.encoder.encode(&frames);
        sync()?;
        push(warm, &mut s.encoder, t);
        let n_audio = audio.dims()[0];
        let p = model.prompt(&task, n_audio)?;

        // Audio prefill: the prefix, then the audio tokens alone, cache-owning layers only.
        let mut cache = decoder.new_cache(p.ids.len() + args.decode_steps);
        let prefix = p.prefix();
        decoder.forward(
            decoder.embed_tokens(prefix),
            prefix,
            &mut cache,
            Logits::None,
        );
        sync()?;
        let t = Instant::now();
        decoder.forward(audio.clone(), &vec![pad; n_audio], &mut cache, Logits::None);
        sync()?;
        push(warm, &mut s.audio_prefill, t);

        // Prompt prefill: what offline transcription does before the first greedy step.
        let mut cache = decoder.new_cache(p.ids.len() + args.decode_steps);
        let t = Instant::now();
        let embeds = model.prompt_embeddings(&p, audio);
        let out = decoder
            .forward(embeds, &p.ple_ids(pad), &mut cache, Logits::Last)
            .context("the decoder returned no logits")?;
        logits_last = to_vec(out);
        push(warm, &mut s.prompt_prefill, t);
        prompt_cache = Some(cache);
        prompt = Some(p);
    }
    let prompt = prompt.context("no run")?;
    let mut cache = prompt_cache.context("no run")?;

    // Decode: greedy steps from the prompt's cache, as `decode_greedy` runs them, never
    // stopping early. The warm-up run is short: decode is the slow stage.
    for run in 0..=args.runs {
        let steps = if run == 0 {
            args.decode_steps.min(4)
        } else {
            args.decode_steps
        };
        cache.truncate(prompt.ids.len());
        let mut next = model.pick(&logits_last).0;
        let t = Instant::now();
        for _ in 0..steps {
            let out = decoder
                .forward(
                    decoder.embed_tokens(&[next]),
                    &[next],
                    &mut cache,
                    Logits::Last,
                )
                .context("the decoder returned no logits")?;
            next = model.pick(&to_vec(out)).0;
        }
        if run > 0 {
            s.decode_per_token
                .push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
    }

    let stream = if args.stream {
        let runs = [false, true]
            .into_iter()
            .map(|vad| stream_bench::run(&model, &samples, vad, args.decode_steps))
            .collect::<Result<Vec<_>>>()?;
        sync()?;
        runs
    } else {
        Vec::new()
    };

    let audio_seconds = samples.len() as f64 / hark_model::SAMPLE_RATE as f64;
    let (mel_ms, encoder_ms) = (median(&s.mel), median(&s.encoder));
    let (audio_prefill_ms, prompt_prefill_ms) =
        (median(&s.audio_prefill), median(&s.prompt_prefill));
    let decode_ms_per_token = median(&s.decode_per_token);
    let report = BenchReport {
        model: name,
        backend: kind.name().to_string(),
        weights: weights.dtype.to_string(),
        kernels: match weights.kernels {
            Kernels::Host => "cpu",
            Kernels::Burn => "burn",
        }
        .to_string(),
        threads: cpu_threads(),
        cpu: cpu_name(),
        audio_seconds,
        audio_tokens: prompt.audio_len,
        prompt_tokens: prompt.ids.len(),
        runs: args.runs,
        decode_steps: args.decode_steps,
        checkpoint_gb: checkpoint_bytes as f64 / 1e9,
        build_s,
        load_s,
        mel_ms,
        encoder_ms,
        encoder_ms_per_audio_s: encoder_ms / audio_seconds,
        audio_prefill_ms,
        audio_prefill_tokens_per_s: prompt.audio_len as f64 / (audio_prefill_ms / 1e3),
        prompt_prefill_ms,
        decode_ms_per_token,
        end_to_end_ms: mel_ms
            + encoder_ms
            + prompt_prefill_ms
            + decode_ms_per_token * args.decode_steps as f64,
        rss_after_load_gb,
        peak_rss_gb: rss_gb("VmHWM:").unwrap_or(f64::NAN),
        load_avg_before,
        load_avg_after: load_avg().unwrap_or(f64::NAN),
        samples_ms: s,
        stream,
    };
    let inputs = Inputs {
        config,
        samples,
        prompt_ids: prompt.ids.clone(),
        audio_at: prompt.audio_at,
        audio_len: prompt.audio_len,
    };
    Ok((report, inputs))
}

/// The synthetic checkpoint: in memory with `--in-memory`, else written once to a directory
/// under the cache and memory-mapped from there, as a downloaded model is (so load time and
/// resident memory are a real load's, and the packed-weight cache applies).
fn synthetic_checkpoint(
    args: &BenchArgs,
    name: &str,
    config: &Value,
    generation: Option<&Value>,
) -> Result<Checkpoint> {
    let dir = match (args.in_memory, packed_cache::cache_root()) {
        (false, Some(root)) => {
            let id = packed_cache::fnv1a(config.to_string().as_bytes());
            root.join(format!("bench/{id:016x}-seed{}", args.seed))
        }
        _ => {
            return synthetic::checkpoint(name, config, generation, args.seed)
                .with_context(|| format!("cannot build the {name} model"));
        }
    };
    if !dir.join("model.safetensors").exists() {
        eprintln!("writing the {name} weights to {}", dir.display());
        synthetic::write_dir(&dir, config, generation, args.seed)
            .with_context(|| format!("cannot write the {name} model"))?;
    }
    let mut ckpt =
        Checkpoint::open(&dir).with_context(|| format!("cannot open {}", dir.display()))?;
    ckpt.name = name.to_string();
    Ok(ckpt)
}

/// Reset the process's peak resident memory (Linux: `5` to `/proc/self/clear_refs`).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        tracing::debug!("cannot reset the peak RSS: {e}");
    }
}

fn push(warm: bool, into: &mut Vec<f64>, since: Instant) {
    if warm {
        into.push(since.elapsed().as_secs_f64() * 1e3);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A line of /proc/self/status (`VmRSS:`, `VmHWM:`) in GB; Linux only.
fn rss_gb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0 / 1e9)
}

/// The CPU model (Linux `/proc/cpuinfo`) and the instruction set the kernels dispatch to.
fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{model}, {} kernels", hark_kernels::detected_isa().name())
}

/// One-minute load average (Linux).
fn load_avg() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Threads the CPU backends compute with: rayon's pool size.
fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The name, `config.json` and `generation_config.json` values of the model to build.
fn model_config(args: &BenchArgs) -> Result<(String, Value, Option<Value>)> {
    let (mut name, mut config, generation) = match args.config.as_str() {
        "e2b" => (
            "synthetic-e2b".to_string(),
            synthetic::e2b_config_json(),
            Some(synthetic::e2b_generation_config_json()),
        ),
        "tiny" => (
            "synthetic-tiny".to_string(),
            synthetic::tiny_config_json(),
            Some(synthetic::e2b_generation_config_json()),
        ),
        path => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {path}"))?;
            let config: Value =
                serde_json::from_str(&text).with_context(|| format!("{path}: invalid JSON"))?;
            (format!("synthetic ({path})"), config, None)
        }
    };
    if let Some(n) = args.text_layers {
        with_text_layers(&mut config, n)?;
        name = format!("{name}, {n} decoder layers");
    }
    Ok((name, config, generation))
}

/// Keep the first `n` decoder layers; KV-shared layers keep their share of the stack (E2B:
/// 20 of 35), rounded down, and fewer if a shared layer would find no owner of its kind.
fn with_text_layers(config: &mut Value, n: usize) -> Result<()> {
    let t = &mut config["text_config"];
    let layers = t["num_hidden_layers"]
        .as_u64()
        .context("config has no text_config.num_hidden_layers")? as usize;
    if n == 0 || n > layers {
        bail!("--text-layers must be in 1..={layers}");
    }
    let mut shared = t["num_kv_shared_layers"].as_u64().unwrap_or(0) as usize * n / layers;
    if let Some(types) = t["layer_types"].as_array_mut() {
        types.truncate(n);
        // As HF (and Hark) resolve it: the last layer is always a full-attention one.
        if let Some(last) = types.last_mut() {
            *last = "full_attention".into();
        }
        let orphan = |shared: usize| {
            types[n - shared..]
                .iter()
                .any(|t| !types[..n - shared].contains(t))
        };
        while shared > 0 && orphan(shared) {
            shared -= 1;
        }
    }
    t["num_hidden_layers"] = n.into();
    t["num_kv_shared_layers"] = shared.into();
    Ok(())
}

/// `--seconds` of the chosen clip, looped or cut.
fn bench_audio(args: &BenchArgs) -> Result<Vec<f32>> {
    let clip = match &args.audio {
        Some(path) => hark_audio_io::load_mono_16k(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            let decoded = hark_audio_io::decode_bytes(DEFAULT_CLIP).context("the built-in clip")?;
            hark_audio_io::to_mono_16k(&decoded)?
        }
    };
    if clip.is_empty() {
        bail!("the audio is empty");
    }
    let n = (args.seconds * hark_model::SAMPLE_RATE as f64).round() as usize;
    Ok(clip.iter().copied().cycle().take(n).collect())
}

fn save_inputs(dir: &Path, inputs: &Inputs) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |file: &str, bytes: &[u8]| {
        let path = dir.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "config.json",
        serde_json::to_string_pretty(&inputs.config)?.as_bytes(),
    )?;
    let samples: Vec<u8> = inputs
        .samples
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write("samples.f32", &samples)?;
    let prompt = serde_json::json!({
        "ids": inputs.prompt_ids, "audio_at": inputs.audio_at, "audio_len": inputs.audio_len
    });
    write("prompt.json", prompt.to_string().as_bytes())
}

/// Run the reference script on the saved inputs; its stdout is one JSON object.
fn run_reference(python: &Path, dir: &Path, args: &BenchArgs) -> Result<Value> {
    eprintln!(
        "running the Hugging Face reference with {}",
        python.display()
    );
    let mut child = Command::new(python)
        .arg("-")
        .arg("--inputs")
        .arg(dir)
        .args(["--runs", &args.runs.to_string()])
        .args(["--decode-steps", &args.decode_steps.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(HF_SCRIPT.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the reference script failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the reference printed no JSON: {text}"))
}

/// The report as a table; with the reference's figures beside it and their ratios.
fn table(h: &BenchReport, hf: Option<&Value>) -> String {
    let f = |key: &str| hf.and_then(|v| v[key].as_f64());
    let ms = |x: f64| {
        if x >= 100.0 {
            format!("{x:.0} ms")
        } else {
            format!("{x:.1} ms")
        }
    };
    let mut out = format!(
        "hark bench: {} on {} ({} weights, {} kernels, {} threads), {:.1} s of audio = {} audio tokens, \
         {}-token prompt; median of {} warm runs; load average {:.1} → {:.1}\n\
         checkpoint {:.2} GB (bf16, built in {:.1} s), loaded in {:.1} s; CPU: {}\n\n",
        h.model,
        h.backend,
        h.weights,
        h.kernels,
        h.threads,
        h.audio_seconds,
        h.audio_tokens,
        h.prompt_tokens,
        h.runs,
        h.load_avg_before,
        h.load_avg_after,
        h.checkpoint_gb,
        h.build_s,
        h.load_s,
        h.cpu,
    );
    let ref_name = hf
        .and_then(|v| v["label"].as_str())
        .unwrap_or("reference")
        .to_string();
    let mut rows: Vec<[String; 4]> = vec![[
        "stage".into(),
        "Hark".into(),
        if hf.is_some() {
            ref_name
        } else {
            String::new()
        },
        if hf.is_some() {
            "ref / Hark".into()
        } else {
            String::new()
        },
    ]];
    let mut row =
        |stage: String, hark: f64, reference: Option<f64>, show: &dyn Fn(f64) -> String| {
            rows.push([
                stage,
                show(hark),
                match (reference, hf.is_some()) {
                    (Some(r), _) => show(r),
                    (None, true) => "—".into(),
                    (None, false) => String::new(),
                },
                reference
                    .map(|r| format!("{:.2}×", r / hark))
                    .unwrap_or_default(),
            ]);
        };
    row(
        format!("mel features ({:.1} s)", h.audio_seconds),
        h.mel_ms,
        f("mel_ms"),
        &ms,
    );
    row(
        "audio encoder + embed_audio".into(),
        h.encoder_ms,
        f("encoder_ms"),
        &ms,
    );
    row(
        "  per second of audio".into(),
        h.encoder_ms_per_audio_s,
        f("encoder_ms_per_audio_s"),
        &ms,
    );
    row(
        format!("audio prefill ({} tokens)", h.audio_tokens),
        h.audio_prefill_ms,
        f("audio_prefill_ms"),
        &|x| format!("{} ({:.0} tok/s)", ms(x), h.audio_tokens as f64 / (x / 1e3)),
    );
    row(
        format!("prompt prefill ({} tokens)", h.prompt_tokens),
        h.prompt_prefill_ms,
        f("prompt_prefill_ms"),
        &ms,
    );
    row(
        format!("decode ({} steps)", h.decode_steps),
        h.decode_ms_per_token,
        f("decode_ms_per_token"),
        &|x| format!("{x:.1} ms/token"),
    );
    row(
        format!("end to end (+{} tokens)", h.decode_steps),
        h.end_to_end_ms,
        f("end_to_end_ms"),
        &|x| format!("{:.2} s", x / 1e3),
    );
    row("peak RSS".into(), h.peak_rss_gb, f("peak_rss_gb"), &|x| {
        format!("{x:.2} GB")
    });
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !h.stream.is_empty() {
        out.push_str(&stream_bench::table(&h.stream));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BenchReport {
        BenchReport {
            model: "m".into(),
            backend: "flex".into(),
            weights: "f16".into(),
            kernels: "cpu".into(),
            threads: 2,
            cpu: "test CPU, avx2 kernels".into(),
            audio_seconds: 10.0,
            audio_tokens: 250,
            prompt_tokens: 325,
            runs: 3,
            decode_steps: 32,
            checkpoint_gb: 10.0,
            build_s: 1.0,
            load_s: 1.0,
            mel_ms: 4.0,
            encoder_ms: 400.0,
            encoder_ms_per_audio_s: 40.0,
            audio_prefill_ms: 500.0,
            audio_prefill_tokens_per_s: 500.0,
            prompt_prefill_ms: 800.0,
            decode_ms_per_token: 100.0,
            end_to_end_ms: 4404.0,
            rss_after_load_gb: 14.0,
            peak_rss_gb: 15.0,
            load_avg_before: 1.0,
            load_avg_after: 1.0,
            samples_ms: StageSamples::default(),
            stream: Vec::new(),
        }
    }

    #[test]
    fn table_shows_reference_over_hark_ratios() {
        let hf = serde_json::json!({
            "label": "HF bf16", "mel_ms": 8.0, "encoder_ms": 200.0, "prompt_prefill_ms": 800.0,
            "decode_ms_per_token": 150.0, "peak_rss_gb": 10.0
        });
        let t = table(&report(), Some(&hf));
        let line = |start: &str| {
            t.lines()
                .find(|l| l.starts_with(start))
                .unwrap()
                .to_string()
        };
        assert!(line("mel features").ends_with("2.00×"), "{t}");
        assert!(line("audio encoder").ends_with("0.50×"), "{t}");
        assert!(line("decode (32 steps)").contains("150.0 ms/token"), "{t}");
        assert!(line("decode (32 steps)").ends_with("1.50×"), "{t}");
        assert!(line("audio prefill").contains("—"), "{t}");
        assert!(line("peak RSS").ends_with("0.67×"), "{t}");
        assert!(t.contains("HF bf16"));
        let alone = table(&report(), None);
        assert!(!alone.contains('×'));
        assert!(alone.contains("(500 tok/s)"));
    }

    #[test]
    fn fewer_layers_keep_the_share_of_kv_shared_layers() {
        let mut c = synthetic::e2b_config_json();
        with_text_layers(&mut c, 10).unwrap();
        assert_eq!(c["text_config"]["num_hidden_layers"], 10);
        assert_eq!(c["text_config"]["num_kv_shared_layers"], 5);
        assert_eq!(
            c["text_config"]["layer_types"].as_array().unwrap().len(),
            10
        );
        assert!(with_text_layers(&mut c, 11).is_err());
        // Five layers of (S,S,S,S,F): a shared full layer would have no owner, so none shares.
        with_text_layers(&mut c, 5).unwrap();
        assert_eq!(c["text_config"]["num_kv_shared_layers"], 0);
        let mut c = synthetic::e2b_config_json();
        with_text_layers(&mut c, 12).unwrap();
        assert_eq!(c["text_config"]["num_kv_shared_layers"], 6);
        assert_eq!(c["text_config"]["layer_types"][11], "full_attention");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
    }
}
