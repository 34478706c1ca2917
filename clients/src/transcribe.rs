//! `hark transcribe`: audio files in, text out.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use hark_model::language::Language;
use hark_model::{BackendTask, GenerateOptions, SAMPLE_RATE, Task, run_on};
use serde::Serialize;

use crate::formats::{Format, Segment, Transcript as Document};
use crate::model_args::ModelArgs;
use crate::offline::transcribe_recording;
use crate::output::FileOutput;
use crate::progress::Progress;

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
    /// Spoken language: a BCP 47 tag (en, fr, pt-BR) or an English name (French); `hark
    /// languages` lists them.
    #[arg(long, default_value = "en", value_parser = crate::language::language)]
    pub language: Language,
    /// Transcribe, or transcribe then translate into --target-language [default: transcribe,
    /// or translate when --target-language is given].
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Language to translate into (tag or name); implies --task translate.
    #[arg(long, required_if_eq("task", "translate"), value_parser = crate::language::language)]
    pub target_language: Option<Language>,
    /// Print one JSON object per file (text, token ids, spans, timings); same as
    /// --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format: txt (text per file), json (one object per file), srt or vtt
    /// (subtitles), md (timestamped Markdown) [default: txt].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write one file per input into this directory (<name>.<format>) instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Transcribe through a running harkd (ws://HOST:PORT) instead of loading a model here;
    /// the model flags are then unused.
    #[arg(long, value_name = "URL", conflicts_with = "stream_chunk_ms")]
    pub server: Option<String>,
    /// Bearer token for --server.
    #[arg(long, env = "HARK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
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
    /// No voice-activity gating: the whole file is speech, cut only at the model's span limit
    /// (30 s). By default the file is cut into the speech segments the streaming engine's
    /// gate finds, and silence or noise gives no text.
    #[arg(long)]
    pub no_vad: bool,
}

impl TranscribeArgs {
    /// The output format the flags ask for.
    pub fn output_format(&self) -> Format {
        match self.format {
            Some(format) => format,
            None if self.json => Format::Json,
            None => Format::Txt,
        }
    }

    /// The task the flags ask for: --target-language means translate, and contradicting it
    /// with --task transcribe is an error rather than a flag silently ignored.
    pub fn task(&self) -> Result<Task> {
        match (self.task, &self.target_language) {
            (Some(TaskArg::Transcribe), Some(target)) => bail!(
                "--target-language {} asks for a translation, but --task is transcribe: drop \
                 one of them",
                target.tag
            ),
            (_, Some(target)) => Ok(Task::Translate {
                source: self.language.name.to_owned(),
                target: target.name.to_owned(),
            }),
            (Some(TaskArg::Translate), None) => {
                bail!("--task translate needs --target-language")
            }
            (_, None) => Ok(Task::Transcribe {
                language: self.language.name.to_owned(),
            }),
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
        let output = FileOutput::new(args.output_format(), args.out_dir.clone(), args.files.len())?;
        let model = std::sync::Arc::new(model);
        crate::exit::for_each_file(&args.files, |file| {
            transcribe_file(&args, &model, file, &output)
        })
    }
}

/// One file, offline or through the streaming engine, written to `output`.
fn transcribe_file<B: Backend>(
    args: &TranscribeArgs,
    model: &std::sync::Arc<hark_model::SpeechModel<B>>,
    file: &Path,
    output: &FileOutput,
) -> Result<()> {
    let samples = hark_audio_io::load_mono_16k(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if samples.is_empty() {
        bail!("{} holds no audio", file.display());
    }
    let audio_seconds = samples.len() as f64 / SAMPLE_RATE as f64;
    let task = args.task()?;
    if let Some(chunk_ms) = args.stream_chunk_ms {
        let cfg = hark_streaming::StreamConfig {
            task,
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
        let finals = stream_file(model, cfg, &samples, chunk_ms, args.realtime)
            .with_context(|| format!("cannot transcribe {}", file.display()))?;
        let text = finals_text(&finals);
        let segments: Vec<Segment> = finals
            .iter()
            .filter_map(|f| {
                let text = f.text.trim();
                (!text.is_empty()).then(|| Segment {
                    id: f.segment_id,
                    start: f.start,
                    end: f.end,
                    text: text.to_owned(),
                })
            })
            .collect();
        let result = StreamedFile {
            file: file.display().to_string(),
            model: &model.name,
            audio_seconds,
            text: text.clone(),
            finals,
        };
        return output.write(file, &text, &result, || {
            document(file, &model.name, audio_seconds, segments)
        });
    }
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
    };
    let mut progress = Progress::new(file.display().to_string(), audio_seconds);
    let transcript = transcribe_recording(model, &samples, &task, &opts, !args.no_vad, |done_s| {
        progress.update(done_s)
    })
    .with_context(|| format!("cannot transcribe {}", file.display()))?;
    progress.finish();
    let text = transcript.text.clone();
    let segments: Vec<Segment> = transcript
        .spans
        .iter()
        .filter(|span| !span.text.trim().is_empty())
        .enumerate()
        .map(|(i, span)| Segment {
            id: i as u64,
            start: span.start_s,
            end: span.end_s,
            text: span.text.trim().to_owned(),
        })
        .collect();
    let result = FileResult {
        file: file.display().to_string(),
        model: &model.name,
        audio_seconds,
        transcript,
    };
    output.write(file, &text, &result, || {
        document(file, &model.name, audio_seconds, segments)
    })
}

/// A whole-file document (subtitles, Markdown) of timed segments.
fn document(file: &std::path::Path, model: &str, audio_s: f64, segments: Vec<Segment>) -> Document {
    Document::new(
        file.display().to_string(),
        Some(model.to_owned()),
        audio_s,
        segments,
    )
}

/// Feed a clip through the streaming engine (one worker, as harkd runs it) in chunks of
/// `chunk_ms`, as fast as possible or paced at real time; the finals, in order.
pub fn stream_file<B: Backend>(
    model: &std::sync::Arc<hark_model::SpeechModel<B>>,
    cfg: hark_streaming::StreamConfig,
    samples: &[f32],
    chunk_ms: u32,
    realtime: bool,
) -> Result<Vec<hark_streaming::Final>> {
    use hark_streaming::engine::{Engine, EngineConfig, Output, stream_factory};
    let engine = Engine::start(
        stream_factory(model.clone()),
        EngineConfig {
            chunk_ms,
            ..Default::default()
        },
    );
    let mut link = engine.open(cfg)?;
    // The link's push waits on the worker through tokio; nothing else runs on this thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the stream's runtime")?;
    runtime.block_on(async {
        let chunk = (chunk_ms as usize * SAMPLE_RATE as usize / 1000).max(1);
        let started = tokio::time::Instant::now();
        for (i, piece) in samples.chunks(chunk).enumerate() {
            if realtime {
                // Chunk i is available once its last sample has been "spoken".
                let due = std::time::Duration::from_secs_f64(
                    ((i + 1) * chunk) as f64 / SAMPLE_RATE as f64,
                );
                tokio::time::sleep_until(started + due).await;
            }
            // A refused push means the stream failed: its error event is among the outputs.
            if link.push(piece).await.is_err() {
                break;
            }
        }
        link.close();
        let mut finals = Vec::new();
        while let Some(output) = link.recv().await {
            match output {
                Output::Event {
                    event: hark_streaming::Event::Final(f),
                    ..
                } => finals.push(f),
                Output::Event {
                    event: hark_streaming::Event::Error { code, message },
                    ..
                } => bail!("{message} ({code:?})"),
                Output::Event { .. } | Output::Flushed { .. } => {}
                Output::Finished { .. } => return Ok(finals),
            }
        }
        bail!("the streaming engine dropped the stream")
    })
}

/// The finals' text, joined.
pub fn finals_text(finals: &[hark_streaming::Final]) -> String {
    finals
        .iter()
        .map(|f| f.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(args: TranscribeArgs) -> Result<()> {
    // Contradicting task flags are refused before any model loads.
    args.task()?;
    if let Some(server) = &args.server {
        return crate::transcribe_remote::run(crate::transcribe_remote::RemoteJob {
            server,
            token: args.token.clone(),
            language: &args.language.tag,
            translate_to: args.target_language.as_ref().map(|t| t.tag.as_str()),
            files: &args.files,
            output: FileOutput::new(args.output_format(), args.out_dir.clone(), args.files.len())?,
        });
    }
    let kind = args.model.backend()?;
    run_on(kind, Job(args))?
}
