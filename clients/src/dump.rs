//! `hark dump`: every stage of the speech path for one clip, in the tensor contract the
//! reference fixtures use (`tests/fixtures/README.md`).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use hark_model::{BackendTask, Task, run_on};
use safetensors::{Dtype, tensor::TensorView};

use crate::model_args::ModelArgs;

#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The clip (at most one 30 s span; any format and rate, converted to 16 kHz mono).
    #[arg(long)]
    pub audio: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Greedy steps to run.
    #[arg(long, default_value_t = 12)]
    pub max_new_tokens: usize,
    /// Instruction after the audio (default: the English ASR instruction).
    #[arg(long)]
    pub prompt: Option<String>,
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
        let model = args.model.load::<B>(args.model.backend()?, &device)?;
        let samples = hark_audio_io::load_mono_16k(&args.audio)
            .with_context(|| format!("cannot read {}", args.audio.display()))?;
        let task = match &args.prompt {
            Some(text) => Task::Custom(text.clone()),
            None => Task::default(),
        };
        let d = model.dump(&samples, &task, args.max_new_tokens)?;
        let (frames, tokens) = (d.mel_frames, d.audio_tokens);
        let width = |v: &[f32], rows: usize| v.len() / rows.max(1);
        let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "mel".into(),
                Dtype::F32,
                vec![frames, model.mel.n_mels],
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
        safetensors::serialize_to_file(views, None, &args.out)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        eprintln!(
            "wrote {} ({frames} mel frames, {tokens} audio tokens, {} prompt ids, {} generated ids)",
            args.out.display(),
            d.prompt_ids.len(),
            d.generation.ids.len()
        );
        Ok(())
    }
}

pub fn run(args: DumpArgs) -> Result<()> {
    let kind = args.model.backend()?;
    run_on(kind, Job(args))?
}
