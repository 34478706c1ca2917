//! `hark meeting`: a timestamped transcript of the microphone or of recordings, through
//! harkd, that survives a dropped connection.
//!
//! The session runner keeps the audio the daemon has not acknowledged and resumes the session
//! after a drop (or replays from the last finished point into a fresh one), so no audio is lost
//! or transcribed twice and timestamps stay continuous. With `--output` the transcript file is
//! rewritten after every segment, so a crash loses nothing already transcribed. Files get a
//! progress bar; every run ends with a summary.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;

use crate::duration::readable;
use crate::formats::{Format, Segment, SessionInfo, Transcript, clock, write_transcript};
use crate::input::{AudioInput, InputArgs};
use crate::live;
use crate::remote::{
    ServerArgs, SessionEvent, SessionOptions, SessionSummary, run_session, seconds,
};

/// Flags of `hark meeting`.
#[derive(Debug, Clone, Args)]
pub struct MeetingArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Transcript file, rewritten after every segment [default: stdout, at the end].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Transcript format [default: from --output's extension, else md].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Spoken language: a BCP 47 tag (en, de, pt-BR) or an English name (`hark languages`);
    /// default: the server's.
    #[arg(long, value_parser = crate::language::tag)]
    pub language: Option<String>,
    /// Silence in ms that ends a segment; default: the server's.
    #[arg(long, value_name = "MS")]
    pub endpointing_ms: Option<u32>,
    /// How long to keep trying to reach harkd again after the connection drops, s.
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub reconnect_for: u64,
    /// No progress bar or live segments on stderr (the summary is still printed).
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `hark meeting`.
pub fn run(args: MeetingArgs) -> Result<()> {
    let endpoint = args.server.endpoint()?;
    let format = args
        .format
        .or_else(|| args.output.as_deref().and_then(Format::from_path))
        .unwrap_or(Format::Md);
    let mut opts = SessionOptions::new("meeting");
    opts.language = args.language.clone();
    opts.endpointing_ms = args.endpointing_ms;
    // A transcript needs finals only; partials would cost the daemon decoding work.
    opts.partials = false;
    opts.reconnect_for = Duration::from_secs(args.reconnect_for);
    if args.input.fast {
        // A file sent faster than real time: the daemon must not call that lagging.
        opts.source = hark_protocol::AudioSource::File;
    }

    let input = AudioInput::start(&args.input, live::frame_for(args.input.fast))?;
    let source = input.description().to_owned();
    let bar = progress_bar(input.total_samples(), args.quiet);
    bar.println(format!("hark meeting: {source} → {}", endpoint.url()));
    let started = Instant::now();
    let rt = live::runtime()?;
    let mut segments: Vec<Segment> = Vec::new();
    let mut model = None;
    let mut write_error = None;
    let outcome: Result<SessionSummary> = rt.block_on(async {
        live::stop_on_signal(input.stopper());
        let (tx, rx) = mpsc::channel(64);
        let audio = live::forward_audio(input, tx);
        let result = run_session(&endpoint, &opts, rx, |event| match event {
            SessionEvent::Ready(ready) => model = Some(ready.model),
            SessionEvent::Final(f) => {
                bar.set_position(bar.position().max((f.end * 1000.0) as u64));
                if let Some(s) = Segment::from_final(&f) {
                    bar.println(format!("[{}] {}", clock(s.start), s.text));
                    segments.push(s);
                    bar.set_message(format!("{} segments", segments.len()));
                    if let Some(path) = &args.output {
                        let t = transcript(&source, &model, &segments, None);
                        if let Err(e) = save(path, format, &t) {
                            write_error.get_or_insert(e);
                        }
                    }
                }
            }
            SessionEvent::SpeechStarted(at) | SessionEvent::SpeechStopped(at) => {
                bar.set_position(bar.position().max((at * 1000.0) as u64));
            }
            SessionEvent::Disconnected(why) => {
                bar.println(format!("connection to harkd lost ({why}); reconnecting…"));
            }
            SessionEvent::Reconnected { resumed, lost_s } => {
                bar.println(if resumed {
                    "reconnected: session resumed, no audio lost".to_owned()
                } else if lost_s > 0.0 {
                    format!("reconnected in a new session; {lost_s:.1} s of audio were lost")
                } else {
                    "reconnected in a new session; unfinished audio sent again".to_owned()
                });
            }
            SessionEvent::Warning(w) => tracing::warn!("harkd: {} ({})", w.message, w.code),
            _ => {}
        })
        .await;
        let summary = result?;
        live::audio_outcome(audio).await?;
        Ok(summary)
    });
    bar.finish_and_clear();
    let summary = match outcome {
        Ok(summary) => summary,
        Err(e) => {
            // Keep what was transcribed before the failure.
            if !segments.is_empty() {
                let t = transcript(&source, &model, &segments, None);
                let kept = match &args.output {
                    Some(path) => save(path, format, &t).map(|()| path.display().to_string()),
                    None => write_transcript(&mut std::io::stdout().lock(), format, &t)
                        .map(|()| "stdout".to_owned())
                        .map_err(Into::into),
                };
                if let Ok(place) = kept {
                    eprintln!(
                        "hark meeting: the {} segments transcribed so far are in {place}",
                        segments.len()
                    );
                }
            }
            return Err(e);
        }
    };
    if let Some(e) = write_error {
        return Err(e);
    }
    let info = SessionInfo {
        session_id: summary.session_id.clone(),
        sent_samples: summary.sent_samples,
        acked_samples: summary.acked_samples,
        resumed: summary.resumed,
        restarted: summary.restarted,
        lost_samples: summary.lost_samples,
    };
    let t = transcript(&source, &model, &segments, Some(info));
    let place = match &args.output {
        Some(path) => {
            save(path, format, &t)?;
            path.display().to_string()
        }
        None => {
            write_transcript(&mut std::io::stdout().lock(), format, &t)?;
            "stdout".to_owned()
        }
    };
    eprintln!("{}", summary_line(&summary, started.elapsed(), &place));
    Ok(())
}

fn transcript(
    source: &str,
    model: &Option<String>,
    segments: &[Segment],
    session: Option<SessionInfo>,
) -> Transcript {
    let audio_s = match &session {
        Some(info) => seconds(info.acked_samples),
        None => segments.last().map_or(0.0, |s| s.end),
    };
    let mut t = Transcript::new(source.to_owned(), model.clone(), audio_s, segments.to_vec());
    t.session = session;
    t
}

/// Writes the transcript next to `path` and renames it into place, so readers never see a
/// half-written file.
fn save(path: &Path, format: Format, t: &Transcript) -> Result<()> {
    let tmp = path.with_extension(format!("{}.partial", format.extension()));
    let mut file = std::fs::File::create(&tmp)
        .with_context(|| format!("cannot write the transcript to {}", tmp.display()))?;
    write_transcript(&mut file, format, t)?;
    file.flush()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write the transcript to {}", path.display()))
}

/// The closing line: how much audio, how fast, how many segments and reconnections.
fn summary_line(s: &SessionSummary, took: Duration, place: &str) -> String {
    let audio = seconds(s.acked_samples);
    let took_s = took.as_secs_f64().max(1e-3);
    let mut line = format!(
        "hark meeting: transcribed {} of audio in {} ({:.1}× real time), {} segment{}",
        readable(audio),
        readable(took_s),
        audio / took_s,
        s.segments,
        if s.segments == 1 { "" } else { "s" }
    );
    let reconnects = s.resumed + s.restarted;
    if reconnects > 0 {
        line.push_str(&format!(
            ", {reconnects} reconnection{} ({} resumed)",
            if reconnects == 1 { "" } else { "s" },
            s.resumed
        ));
    }
    if s.lost_samples > 0 {
        line.push_str(&format!(", {:.1} s of audio lost", seconds(s.lost_samples)));
    }
    line.push_str(&format!("; transcript: {place}"));
    line
}

/// A bar in stream milliseconds for files, a spinner for the microphone; hidden when stderr
/// is not a terminal or with --quiet.
fn progress_bar(total_samples: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    }
    let bar = match total_samples {
        Some(total) => {
            let bar = ProgressBar::new(total * 1000 / u64::from(crate::input::RATE));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{wide_bar}] {percent:>3}% {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} recording {elapsed_precise} {msg}")
                    .expect("a valid template"),
            );
            bar
        }
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(resumed: u32, restarted: u32, lost: u64) -> SessionSummary {
        SessionSummary {
            session_id: "s-1".into(),
            model: "m".into(),
            acked_samples: 16_000 * 125,
            sent_samples: 16_000 * 125,
            segments: 7,
            resumed,
            restarted,
            lost_samples: lost,
        }
    }

    #[test]
    fn the_summary_says_what_happened() {
        let line = summary_line(&summary(0, 0, 0), Duration::from_secs(25), "m.md");
        assert_eq!(
            line,
            "hark meeting: transcribed 2 min 05 s of audio in 25.0 s (5.0× real time), 7 \
             segments; transcript: m.md"
        );
        let line = summary_line(&summary(1, 1, 8_000), Duration::from_secs(25), "stdout");
        assert!(
            line.contains(", 2 reconnections (1 resumed), 0.5 s of audio lost; transcript: stdout"),
            "{line}"
        );
    }

    #[test]
    fn saving_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let seg = |id, text: &str| Segment {
            id,
            start: id as f64,
            end: id as f64 + 0.5,
            text: text.into(),
        };
        let mut segments = vec![seg(0, "one")];
        save(
            &path,
            Format::Json,
            &transcript("x", &None, &segments, None),
        )
        .unwrap();
        segments.push(seg(1, "two"));
        save(
            &path,
            Format::Json,
            &transcript("x", &None, &segments, None),
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["text"], "one two");
        assert_eq!(v["audio_s"], 1.5);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
