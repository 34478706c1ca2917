//! `hark transcribe`: audio files in, text out.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use hark_model::{BackendTask, GenerateOptions, SAMPLE_RATE, Task, run_on};
use serde::Serialize;

use crate::model_args::ModelArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    Transcribe,
    Translate,
}

#[derive(Debug, Clone, Args)]
pub struct TranscribeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Audio files (WAV, FLAC, MP3, Ogg…; any sample rate and channel count).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Spoken language, as named in the instruction (e.g. English, French).
    #[arg(long, default_value = "English")]
    pub language: String,
    /// Transcribe, or transcribe then translate into --target-language.
    #[arg(long, value_enum, default_value_t = TaskArg::Transcribe)]
    pub task: TaskArg,
    /// Language to translate into (with --task translate).
    #[arg(long, required_if_eq("task", "translate"))]
    pub target_language: Option<String>,
    /// Print one JSON object per file (text, token ids, spans, timings).
    #[arg(long)]
    pub json: bool,
    /// Token budget per ≤ 30 s audio span.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
}

impl TranscribeArgs {
    pub fn task(&self) -> Task {
        match self.task {
            TaskArg::Transcribe => Task::Transcribe {
                language: self.language.clone(),
            },
            TaskArg::Translate => Task::Translate {
                source: self.language.clone(),
                target: self
                    .target_language
                    .clone()
                    .unwrap_or_else(|| "English".into()),
            },
        }
    }
}

#[derive(Serialize)]
struct FileResult<'a> {
    file: String,
    model: &'a str,
    audio_seconds: f64,
    #[serde(flatten)]
    transcript: hark_model::Transcript,
}

struct Job(TranscribeArgs);

impl BackendTask for Job {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let model = args.model.load::<B>(args.model.backend()?, &device)?;
        let task = args.task();
        let opts = GenerateOptions {
            max_new_tokens: args.max_new_tokens,
        };
        let mut stdout = std::io::stdout().lock();
        for file in &args.files {
            let samples = hark_audio_io::load_mono_16k(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let transcript = model
                .transcribe(&samples, &task, &opts)
                .with_context(|| format!("cannot transcribe {}", file.display()))?;
            if args.json {
                let result = FileResult {
                    file: file.display().to_string(),
                    model: &model.name,
                    audio_seconds: samples.len() as f64 / SAMPLE_RATE as f64,
                    transcript,
                };
                serde_json::to_writer(&mut stdout, &result)?;
                writeln!(stdout)?;
            } else if args.files.len() > 1 {
                writeln!(stdout, "{}: {}", file.display(), transcript.text)?;
            } else {
                writeln!(stdout, "{}", transcript.text)?;
            }
        }
        Ok(())
    }
}

pub fn run(args: TranscribeArgs) -> Result<()> {
    let kind = args.model.backend()?;
    run_on(kind, Job(args))?
}
