//! `hark transcribe --server URL`: files transcribed by a running harkd instead of a model
//! loaded in this process. Each file is one session, sent as fast as the daemon takes it.

use std::path::Path;

use anyhow::{Context, Result};
use hark_protocol::Task;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::formats::{Segment, Transcript, join_text};
use crate::input::{AudioInput, InputArgs};
use crate::live;
use crate::output::FileOutput;
use crate::remote::{Endpoint, SessionEvent, SessionOptions, run_session, seconds};

/// One file's result in JSON.
#[derive(Serialize)]
struct RemoteFile<'a> {
    file: String,
    model: &'a str,
    audio_seconds: f64,
    text: &'a str,
    segments: &'a [Segment],
    session_id: &'a str,
}

/// What the remote path needs from `hark transcribe`'s flags.
pub struct RemoteJob<'a> {
    /// harkd's address.
    pub server: &'a str,
    /// Bearer token.
    pub token: Option<String>,
    /// Spoken language, BCP 47 tag.
    pub language: &'a str,
    /// Translate into this language (BCP 47 tag) instead of transcribing.
    pub translate_to: Option<&'a str>,
    /// The files.
    pub files: &'a [std::path::PathBuf],
    /// Where results go.
    pub output: FileOutput,
}

/// Transcribes every file through harkd, writing each result as it completes.
pub fn run(job: RemoteJob<'_>) -> Result<()> {
    let endpoint = Endpoint::new(job.server, job.token.clone())?;
    let mut opts = SessionOptions::new("transcribe");
    opts.language = Some(job.language.to_owned());
    if let Some(target) = job.translate_to {
        opts.task = Task::Translate;
        opts.target_language = Some(target.to_owned());
    }
    // Only finals are printed: no partial needs decoding.
    opts.partials = false;
    // Files go faster than real time: the daemon must not call that lagging.
    opts.source = hark_protocol::AudioSource::File;
    let rt = live::runtime()?;
    crate::exit::for_each_file(job.files, |file| {
        rt.block_on(transcribe_file(&endpoint, &opts, file, &job.output))
            .with_context(|| format!("cannot transcribe {}", file.display()))
    })
}

async fn transcribe_file(
    endpoint: &Endpoint,
    opts: &SessionOptions,
    file: &Path,
    output: &FileOutput,
) -> Result<()> {
    let input = AudioInput::start(
        &InputArgs {
            inputs: vec![file.to_owned()],
            fast: true,
            device: None,
        },
        live::FAST_FRAME,
    )?;
    let (tx, rx) = mpsc::channel(16);
    let audio = live::forward_audio(input, tx);
    let mut segments = Vec::new();
    let summary = run_session(endpoint, opts, rx, |event| match event {
        SessionEvent::Final(f) => segments.extend(Segment::from_final(&f)),
        SessionEvent::Warning(w) => tracing::warn!("harkd: {} ({})", w.message, w.code),
        _ => {}
    })
    .await?;
    live::audio_outcome(audio).await?;
    let text = join_text(&segments);
    let audio_seconds = seconds(summary.acked_samples);
    let json = RemoteFile {
        file: file.display().to_string(),
        model: &summary.model,
        audio_seconds,
        text: &text,
        segments: &segments,
        session_id: &summary.session_id,
    };
    output.write(file, &text, &json, || {
        Transcript::new(
            file.display().to_string(),
            Some(summary.model.clone()),
            audio_seconds,
            segments.clone(),
        )
    })
}
