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
    /// Feed the file through the streaming engine in chunks of this many milliseconds and
    /// print its finals (with --no-vad they equal the offline transcription).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub stream_chunk_ms: Option<u32>,
    /// With --stream-chunk-ms: pace the chunks at real time instead of as fast as possible.
    #[arg(long, requires = "stream_chunk_ms")]
    pub realtime: bool,
    /// With --stream-chunk-ms: no voice-activity gating (the whole file is speech).
    #[arg(long, requires = "stream_chunk_ms")]
    pub no_vad: bool,
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
struct StreamedFile<'a> {
    file: String,
    model: &'a str,
    audio_seconds: f64,
    text: String,
    finals: Vec<hark_streaming::Final>,
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
        let model = std::sync::Arc::new(model);
        for file in &args.files {
            let samples = hark_audio_io::load_mono_16k(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            if let Some(chunk_ms) = args.stream_chunk_ms {
                let finals = stream_file(&model, &args, &task, &samples, chunk_ms)
                    .with_context(|| format!("cannot transcribe {}", file.display()))?;
                let text = finals
                    .iter()
                    .map(|f| f.text.as_str())
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                if args.json {
                    let result = StreamedFile {
                        file: file.display().to_string(),
                        model: &model.name,
                        audio_seconds: samples.len() as f64 / SAMPLE_RATE as f64,
                        text,
                        finals,
                    };
                    serde_json::to_writer(&mut stdout, &result)?;
                    writeln!(stdout)?;
                } else if args.files.len() > 1 {
                    writeln!(stdout, "{}: {text}", file.display())?;
                } else {
                    writeln!(stdout, "{text}")?;
                }
                continue;
            }
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

/// Feed a clip through the streaming engine in chunks; the finals, in order.
fn stream_file<B: Backend>(
    model: &std::sync::Arc<hark_model::SpeechModel<B>>,
    args: &TranscribeArgs,
    task: &Task,
    samples: &[f32],
    chunk_ms: u32,
) -> Result<Vec<hark_streaming::Final>> {
    let cfg = hark_streaming::StreamConfig {
        task: task.clone(),
        vad: if args.no_vad {
            None
        } else {
            Some(Default::default())
        },
        // Only finals are printed: no partial is decoded.
        partials: false,
        max_new_tokens: args.max_new_tokens,
        ..Default::default()
    };
    let mut stream = hark_streaming::Stream::new(model.clone(), cfg)?;
    let chunk = (chunk_ms as usize * SAMPLE_RATE as usize / 1000).max(1);
    let started = std::time::Instant::now();
    let mut events = Vec::new();
    for (i, piece) in samples.chunks(chunk).enumerate() {
        if args.realtime {
            // Chunk i is available once its last sample has been "spoken".
            let due =
                std::time::Duration::from_secs_f64(((i + 1) * chunk) as f64 / SAMPLE_RATE as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        stream.push(piece, false, &mut events)?;
    }
    stream.close(&mut events);
    Ok(events
        .into_iter()
        .filter_map(|e| match e {
            hark_streaming::Event::Final(f) => Some(f),
            _ => None,
        })
        .collect())
}

pub fn run(args: TranscribeArgs) -> Result<()> {
    let kind = args.model.backend()?;
    run_on(kind, Job(args))?
}
