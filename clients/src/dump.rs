//! `hark dump`: every stage of the speech path for one clip, in the tensor contract the
//! reference fixtures use (`tests/fixtures/README.md`), written to a file or compared with
//! golden references (`--against`).

mod compare;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use hark_model::speech::DumpTensors;
use hark_model::{BackendTask, SpeechModel, Task, WeightDtype, run_on};
use safetensors::{Dtype, tensor::TensorView};

use crate::model_args::ModelArgs;
use compare::{ClipReport, F16_TOLERANCE, F32_TOLERANCE, Golden, Tolerance};

#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The clip (at most one 30 s span; any format and rate, converted to 16 kHz mono); with
    /// `--against DIR`, the directory holding `<clip>.wav` for each reference.
    #[arg(long)]
    pub audio: PathBuf,
    /// Output safetensors file.
    #[arg(long, required_unless_present = "against")]
    pub out: Option<PathBuf>,
    /// Compare with a golden reference (`tests/fixtures/golden/<model>/<clip>.safetensors`),
    /// or every reference in a directory, instead of writing a file: prints per-stage cosine,
    /// max |Δ| and greedy ids as JSON and fails when a stage is out of tolerance. The greedy
    /// steps are the reference's.
    #[arg(long, conflicts_with = "out")]
    pub against: Option<PathBuf>,
    /// Tolerance for `--against` (default: f32 with f32 weights, else f16).
    #[arg(long, value_enum, requires = "against")]
    pub tolerance: Option<ToleranceArg>,
    /// Greedy steps to run.
    #[arg(long, default_value_t = 12)]
    pub max_new_tokens: usize,
    /// Instruction after the audio (default: the English ASR instruction).
    #[arg(long)]
    pub prompt: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ToleranceArg {
    F32,
    F16,
}

struct Job(DumpArgs);

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect()
}

impl BackendTask for Job {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let kind = args.model.backend()?;
        let ckpt = args.model.checkpoint()?;
        let weights = kind.weights(args.model.weights, ckpt.tensors.parameters())?;
        let name = ckpt.name.clone();
        let model = SpeechModel::<B>::load(ckpt, &device, weights)
            .with_context(|| format!("cannot load model {name}"))?;
        let task = match &args.prompt {
            Some(text) => Task::Custom(text.clone()),
            None => Task::default(),
        };
        match (&args.against, &args.out) {
            (Some(against), _) => {
                let tol = match args.tolerance {
                    Some(ToleranceArg::F32) => F32_TOLERANCE,
                    Some(ToleranceArg::F16) => F16_TOLERANCE,
                    None if weights.dtype == WeightDtype::F32 => F32_TOLERANCE,
                    None => F16_TOLERANCE,
                };
                let started = Instant::now();
                let clips = clips_against(against, &args.audio)?;
                let mut reports = Vec::new();
                for (clip, golden_path, audio) in &clips {
                    let golden = Golden::read(golden_path)?;
                    let samples = hark_audio_io::load_mono_16k(audio)
                        .with_context(|| format!("cannot read {}", audio.display()))?;
                    let d = model.dump(&samples, &task, golden.steps()?)?;
                    reports.push(compare::compare_clip(
                        clip,
                        &d,
                        model.mel.n_mels,
                        &golden,
                        &tol,
                    )?);
                }
                print_comparison(
                    &name,
                    &kind.to_string(),
                    weights.dtype,
                    &tol,
                    &reports,
                    started,
                )
            }
            (None, Some(out)) => {
                let samples = hark_audio_io::load_mono_16k(&args.audio)
                    .with_context(|| format!("cannot read {}", args.audio.display()))?;
                let d = model.dump(&samples, &task, args.max_new_tokens)?;
                write_dump(&d, model.mel.n_mels, out)
            }
            (None, None) => bail!("give --out FILE or --against GOLDEN"),
        }
    }
}

/// `(clip, golden file, audio file)` for `--against`: one file, or every `*.safetensors` in a
/// directory with `<audio dir>/<clip>.wav`.
fn clips_against(against: &Path, audio: &Path) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    if !against.is_dir() {
        let clip = stem(against).context("--against names no file")?;
        return Ok(vec![(clip, against.to_owned(), audio.to_owned())]);
    }
    if !audio.is_dir() {
        bail!(
            "--against {} is a directory, so --audio must be the directory of the clips",
            against.display()
        );
    }
    let mut clips = Vec::new();
    for entry in
        std::fs::read_dir(against).with_context(|| format!("cannot list {}", against.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let clip = stem(&path).context("unnamed reference")?;
            let wav = audio.join(format!("{clip}.wav"));
            clips.push((clip, path, wav));
        }
    }
    if clips.is_empty() {
        bail!("no *.safetensors references in {}", against.display());
    }
    clips.sort();
    Ok(clips)
}

/// One JSON object on stdout; an error (non-zero exit) when any clip is out of tolerance.
fn print_comparison(
    model: &str,
    backend: &str,
    weights: WeightDtype,
    tol: &Tolerance,
    clips: &[ClipReport],
    started: Instant,
) -> Result<()> {
    let ok = clips.iter().all(|c| c.ok);
    let report = serde_json::json!({
        "model": model,
        "backend": backend,
        "weights": weights.to_string(),
        "tolerance": tol,
        "clips": clips,
        "seconds": started.elapsed().as_secs_f64(),
        "ok": ok,
    });
    println!("{report}");
    if !ok {
        let failed: Vec<&str> = clips
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.clip.as_str())
            .collect();
        bail!(
            "{model} on {backend} ({weights} weights) is out of the {} tolerance on {}",
            tol.name,
            failed.join(", ")
        );
    }
    Ok(())
}

fn write_dump(d: &DumpTensors, n_mels: usize, out: &Path) -> Result<()> {
    let (frames, tokens) = (d.mel_frames, d.audio_tokens);
    let width = |v: &[f32], rows: usize| v.len() / rows.max(1);
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![
        (
            "mel".into(),
            Dtype::F32,
            vec![frames, n_mels],
            f32_bytes(&d.mel),
        ),
        (
            "mel_mask".into(),
            Dtype::F32,
            vec![frames],
            f32_bytes(&vec![1.0; frames]),
        ),
        (
            "subsample".into(),
            Dtype::F32,
            vec![tokens, width(&d.subsample, tokens)],
            f32_bytes(&d.subsample),
        ),
        (
            "audio_tower".into(),
            Dtype::F32,
            vec![tokens, width(&d.audio_tower, tokens)],
            f32_bytes(&d.audio_tower),
        ),
        (
            "audio_embeds".into(),
            Dtype::F32,
            vec![tokens, width(&d.audio_embeds, tokens)],
            f32_bytes(&d.audio_embeds),
        ),
        (
            "prompt_ids".into(),
            Dtype::I64,
            vec![d.prompt_ids.len()],
            i64_bytes(&d.prompt_ids),
        ),
        (
            "prompt_logits_last".into(),
            Dtype::F32,
            vec![d.generation.prompt_logits_last.len()],
            f32_bytes(&d.generation.prompt_logits_last),
        ),
        (
            "generated_ids".into(),
            Dtype::I64,
            vec![d.generation.ids.len()],
            i64_bytes(&d.generation.ids),
        ),
        (
            "generated_margins".into(),
            Dtype::F32,
            vec![d.generation.margins.len()],
            f32_bytes(&d.generation.margins),
        ),
    ];
    for (i, layer) in d.audio_layers.iter().enumerate() {
        buffers.push((
            format!("audio_layer.{i}"),
            Dtype::F32,
            vec![tokens, width(layer, tokens)],
            f32_bytes(layer),
        ));
    }
    let views: HashMap<String, TensorView<'_>> = buffers
        .iter()
        .map(|(name, dtype, shape, data)| {
            Ok((name.clone(), TensorView::new(*dtype, shape.clone(), data)?))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, None, out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {} ({frames} mel frames, {tokens} audio tokens, {} prompt ids, {} generated ids)",
        out.display(),
        d.prompt_ids.len(),
        d.generation.ids.len()
    );
    Ok(())
}

pub fn run(args: DumpArgs) -> Result<()> {
    let kind = args.model.backend()?;
    run_on(kind, Job(args))?
}
