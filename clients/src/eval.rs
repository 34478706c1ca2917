//! `hark eval`: word error rate over a manifest, offline and through the streaming engine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use hark_model::{BackendTask, GenerateOptions, SAMPLE_RATE, SpeechModel, Task, run_on};
use serde::{Deserialize, Serialize};

use crate::model_args::ModelArgs;
use crate::offline::transcribe_recording;
use crate::transcribe::{finals_text, stream_file};

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSON lines, one utterance each: `text` (the reference) and `audio` or `path` (relative
    /// to the manifest's folder); `id` is optional.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Spoken language: a BCP 47 tag (en, pt-BR) or an English name (`hark languages`).
    #[arg(long, default_value = "en", value_parser = crate::language::language)]
    pub language: hark_model::language::Language,
    /// Streaming chunk size, ms (the engine runs with VAD and partials on, as in harkd).
    #[arg(long, default_value_t = 320, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub stream_chunk_ms: u32,
    /// Only the offline pass.
    #[arg(long)]
    pub no_stream: bool,
    /// Only the first N utterances.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Token budget per utterance.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// One JSON object per utterance, then a summary object, instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    audio: Option<PathBuf>,
    #[serde(default)]
    path: Option<PathBuf>,
    text: String,
}

/// Reads a manifest; paths come back resolved against its folder.
fn read_manifest(path: &Path) -> Result<Vec<(String, PathBuf, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Entry = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a manifest entry", path.display(), i + 1))?;
        let Some(audio) = e.audio.or(e.path) else {
            bail!("{}:{}: no `audio` or `path`", path.display(), i + 1);
        };
        let id = e.id.unwrap_or_else(|| {
            audio.file_stem().map_or_else(
                || format!("{}", i + 1),
                |s| s.to_string_lossy().into_owned(),
            )
        });
        out.push((id, base.join(audio), e.text));
    }
    if out.is_empty() {
        bail!("the manifest {} lists no utterances", path.display());
    }
    Ok(out)
}

/// Standard WER normalisation: lower case, punctuation removed (apostrophes inside words
/// kept), whitespace collapsed.
pub fn normalise(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let inside_word = i > 0
            && i + 1 < chars.len()
            && chars[i - 1].is_alphanumeric()
            && chars[i + 1].is_alphanumeric();
        if c.is_alphanumeric() || (c == '\'' && inside_word) {
            cleaned.extend(c.to_lowercase());
        } else {
            cleaned.push(' ');
        }
    }
    cleaned.split_whitespace().map(str::to_owned).collect()
}

/// Word-level Levenshtein distance (substitutions + deletions + insertions).
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut cur = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        cur[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[hypothesis.len()]
}

#[derive(Debug, Serialize)]
struct Utterance<'a> {
    id: &'a str,
    reference: &'a str,
    offline: String,
    offline_errors: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    streaming: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streaming_errors: Option<usize>,
    words: usize,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    model: String,
    utterances: usize,
    words: usize,
    audio_seconds: f64,
    offline_errors: usize,
    offline_wer: f64,
    offline_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    streaming_errors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streaming_wer: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streaming_seconds: Option<f64>,
}

struct Job(EvalArgs);

impl BackendTask for Job {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let mut entries = read_manifest(&args.manifest)?;
        if let Some(n) = args.limit {
            entries.truncate(n);
        }
        let model = Arc::new(args.model.load::<B>(args.model.backend()?, &device)?);
        let summary = evaluate(&model, &args, &entries)?;
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&summary)?)?;
        } else {
            let pct = |e: usize| 100.0 * e as f64 / summary.words.max(1) as f64;
            writeln!(
                out,
                "{} utterances, {} words, {:.1} s of audio",
                summary.utterances, summary.words, summary.audio_seconds
            )?;
            writeln!(
                out,
                "offline   WER {:6.2} %  ({} errors, {:.1} s)",
                pct(summary.offline_errors),
                summary.offline_errors,
                summary.offline_seconds
            )?;
            if let (Some(e), Some(t)) = (summary.streaming_errors, summary.streaming_seconds) {
                writeln!(
                    out,
                    "streaming WER {:6.2} %  ({e} errors, {t:.1} s, {} ms chunks, VAD on)",
                    pct(e),
                    args.stream_chunk_ms
                )?;
            }
        }
        Ok(())
    }
}

fn evaluate<B: Backend>(
    model: &Arc<SpeechModel<B>>,
    args: &EvalArgs,
    entries: &[(String, PathBuf, String)],
) -> Result<Summary> {
    let task = Task::Transcribe {
        language: args.language.name.to_owned(),
    };
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
    };
    let mut summary = Summary {
        model: model.name.clone(),
        streaming_errors: (!args.no_stream).then_some(0),
        streaming_seconds: (!args.no_stream).then_some(0.0),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    for (id, path, reference) in entries {
        let samples = hark_audio_io::load_mono_16k(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        summary.audio_seconds += samples.len() as f64 / SAMPLE_RATE as f64;
        let ref_words = normalise(reference);

        let started = Instant::now();
        // Exactly what `hark transcribe` does with the file.
        let offline = transcribe_recording(model, &samples, &task, &opts, true, |_| {})
            .with_context(|| format!("cannot transcribe {}", path.display()))?
            .text;
        summary.offline_seconds += started.elapsed().as_secs_f64();
        let offline_errors = word_errors(&ref_words, &normalise(&offline));
        summary.offline_errors += offline_errors;

        let (streaming, streaming_errors) = if args.no_stream {
            (None, None)
        } else {
            let cfg = hark_streaming::StreamConfig {
                task: task.clone(),
                vad: Some(Default::default()),
                partials: true,
                max_new_tokens: args.max_new_tokens,
                ..Default::default()
            };
            let started = Instant::now();
            let finals = stream_file(model, cfg, &samples, args.stream_chunk_ms, false)
                .with_context(|| format!("cannot stream {}", path.display()))?;
            *summary.streaming_seconds.as_mut().expect("set") += started.elapsed().as_secs_f64();
            let text = finals_text(&finals);
            let errors = word_errors(&ref_words, &normalise(&text));
            *summary.streaming_errors.as_mut().expect("set") += errors;
            (Some(text), Some(errors))
        };
        summary.utterances += 1;
        summary.words += ref_words.len();
        let u = Utterance {
            id,
            reference,
            offline,
            offline_errors,
            streaming,
            streaming_errors,
            words: ref_words.len(),
        };
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&u)?)?;
        } else {
            let stream = match (&u.streaming, u.streaming_errors) {
                (Some(t), Some(e)) => format!(" | stream ({e}) {t}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{id}: ref {:?} | offline ({}) {:?}{stream}",
                u.reference, u.offline_errors, u.offline
            )?;
        }
    }
    let words = summary.words.max(1) as f64;
    summary.offline_wer = summary.offline_errors as f64 / words;
    summary.streaming_wer = summary.streaming_errors.map(|e| e as f64 / words);
    Ok(summary)
}

pub fn run(args: EvalArgs) -> Result<()> {
    let kind = args.model.backend()?;
    run_on(kind, Job(args))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        normalise(s)
    }

    #[test]
    fn normalisation_drops_case_and_punctuation() {
        assert_eq!(
            words("Turn on the LIGHTS, please!  It's 5 o'clock."),
            [
                "turn", "on", "the", "lights", "please", "it's", "5", "o'clock"
            ]
        );
        assert_eq!(words(" 'quoted' — text "), ["quoted", "text"]);
        assert!(words("...").is_empty());
    }

    #[test]
    fn word_errors_count_edits() {
        let r = words("the cat sat on the mat");
        assert_eq!(word_errors(&r, &r), 0);
        assert_eq!(word_errors(&r, &words("the cat sat on mat")), 1); // deletion
        assert_eq!(word_errors(&r, &words("the cat sat on the red mat")), 1); // insertion
        assert_eq!(word_errors(&r, &words("a cat sat in the mat")), 2); // substitutions
        assert_eq!(word_errors(&r, &[]), 6);
        assert_eq!(word_errors(&[], &words("noise")), 1);
    }

    #[test]
    fn manifest_paths_resolve_against_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.jsonl");
        std::fs::write(
            &m,
            "{\"audio\": \"a.wav\", \"text\": \"one\"}\n\n{\"id\": \"x\", \"path\": \"/abs/b.wav\", \"text\": \"two\"}\n",
        )
        .unwrap();
        let e = read_manifest(&m).unwrap();
        assert_eq!(e[0], ("a".into(), dir.path().join("a.wav"), "one".into()));
        assert_eq!(
            e[1],
            ("x".into(), PathBuf::from("/abs/b.wav"), "two".into())
        );
        std::fs::write(&m, "{\"text\": \"no audio\"}\n").unwrap();
        assert!(
            read_manifest(&m)
                .unwrap_err()
                .to_string()
                .contains("no `audio`")
        );
        std::fs::write(&m, "").unwrap();
        assert!(read_manifest(&m).is_err());
    }
}
