//! `hark captions`: live captions in the terminal, and subtitle cues written while it runs.
//!
//! On a terminal the committed text stays put, the tentative tail is drawn dimmed and redrawn
//! as it is revised, and finished lines roll up. When stdout is not a terminal (or with
//! `--plain`) each finished segment is printed as one line. `--cues FILE` writes SRT or
//! WebVTT cues for every final as it arrives (`-` for stdout).

mod board;
mod terminal;

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use hark_protocol::Task;
use tokio::sync::mpsc;

use crate::formats::{CueKind, CueLayout, CueWriter, Format, Segment, clock};
use crate::input::{AudioInput, InputArgs};
use crate::live;
use crate::remote::{ServerArgs, SessionEvent, SessionOptions, run_session};
use board::Board;
use terminal::Terminal;

/// Subtitle format of `--cues`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CueFormat {
    /// SubRip.
    Srt,
    /// WebVTT.
    Vtt,
}

/// Flags of `hark captions`.
#[derive(Debug, Clone, Args)]
pub struct CaptionsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Spoken language: a BCP 47 tag (en, de, pt-BR) or an English name (`hark languages`);
    /// default: the server's.
    #[arg(long, value_parser = crate::language::tag)]
    pub language: Option<String>,
    /// Caption in this language (BCP 47 tag or English name) instead of the spoken one.
    #[arg(long, value_name = "LANG", value_parser = crate::language::tag)]
    pub translate_to: Option<String>,
    /// Live lines kept on screen under the finished ones.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    pub lines: u16,
    /// Caption width in characters; default: the terminal's width.
    #[arg(long, value_parser = clap::value_parser!(u16).range(8..))]
    pub width: Option<u16>,
    /// Write subtitle cues to this file while running (`-`: stdout, replacing the display).
    #[arg(long, value_name = "FILE")]
    pub cues: Option<PathBuf>,
    /// Format of --cues [default: from the file extension, else vtt].
    #[arg(long, value_enum, requires = "cues")]
    pub cue_format: Option<CueFormat>,
    /// Print each finished segment as one line instead of live captions (the default when
    /// stdout is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// With --plain: start each line with the segment's time.
    #[arg(long)]
    pub timestamps: bool,
    /// Silence in ms that ends a caption segment; default: the server's.
    #[arg(long, value_name = "MS")]
    pub endpointing_ms: Option<u32>,
}

/// Where the captions go.
enum Display {
    /// Redrawn live captions on a terminal.
    Live {
        board: Board,
        term: Terminal<io::Stdout>,
        fixed_width: bool,
    },
    /// One line per finished segment.
    Plain { out: io::Stdout, timestamps: bool },
    /// Nothing (the cues go to stdout).
    None,
}

impl Display {
    fn event(&mut self, event: &SessionEvent) -> io::Result<()> {
        match self {
            Display::Live {
                board,
                term,
                fixed_width,
            } => {
                if !*fixed_width && let Some(cols) = terminal::columns(io::stdout().as_raw_fd()) {
                    board.set_width(cols.saturating_sub(1));
                }
                match event {
                    SessionEvent::Partial(p) => board.partial(p),
                    SessionEvent::Final(f) => board.final_(f),
                    SessionEvent::Disconnected(why) => {
                        let frame = board.frame();
                        return term
                            .notice(&format!("connection lost: {why}; reconnecting"), &frame);
                    }
                    SessionEvent::Reconnected { resumed, .. } => {
                        let frame = board.frame();
                        let how = if *resumed { "resumed" } else { "new session" };
                        return term.notice(&format!("reconnected ({how})"), &frame);
                    }
                    _ => return Ok(()),
                }
                let frame = board.frame();
                term.draw(&frame)
            }
            Display::Plain { out, timestamps } => {
                if let SessionEvent::Final(f) = event
                    && let Some(s) = Segment::from_final(f)
                {
                    if *timestamps {
                        writeln!(out, "[{}] {}", clock(s.start), s.text)?;
                    } else {
                        writeln!(out, "{}", s.text)?;
                    }
                    out.flush()?;
                }
                Ok(())
            }
            Display::None => Ok(()),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Display::Live { board, term, .. } = self {
            let lines = board.finish();
            term.finish(&lines)?;
        }
        Ok(())
    }
}

/// Runs `hark captions`.
pub fn run(args: CaptionsArgs) -> Result<()> {
    let endpoint = args.server.endpoint()?;
    let cues_to_stdout = args.cues.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let mut cues = match &args.cues {
        Some(path) => {
            let kind = match args.cue_format {
                Some(CueFormat::Srt) => CueKind::Srt,
                Some(CueFormat::Vtt) => CueKind::Vtt,
                None => Format::from_path(path)
                    .and_then(Format::cue_kind)
                    .unwrap_or(CueKind::Vtt),
            };
            let out: Box<dyn Write> = if cues_to_stdout {
                Box::new(io::stdout())
            } else {
                Box::new(
                    File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )
            };
            Some(CueWriter::new(out, kind, CueLayout::default())?)
        }
        None => None,
    };
    let mut display = if cues_to_stdout {
        Display::None
    } else if args.plain || !io::stdout().is_terminal() {
        Display::Plain {
            out: io::stdout(),
            timestamps: args.timestamps,
        }
    } else {
        let width = args
            .width
            .map(usize::from)
            .or_else(|| terminal::columns(io::stdout().as_raw_fd()).map(|c| c.saturating_sub(1)))
            .unwrap_or(79);
        Display::Live {
            board: Board::new(width, usize::from(args.lines)),
            term: Terminal::new(io::stdout()),
            fixed_width: args.width.is_some(),
        }
    };

    let mut opts = SessionOptions::new("captions");
    opts.language = args.language.clone();
    if let Some(target) = &args.translate_to {
        opts.task = Task::Translate;
        opts.target_language = Some(target.clone());
    }
    opts.endpointing_ms = args.endpointing_ms;
    if args.input.fast {
        // A file sent faster than real time: the daemon must not call that lagging.
        opts.source = hark_protocol::AudioSource::File;
    }

    let input = AudioInput::start(&args.input, live::frame_for(args.input.fast))?;
    eprintln!(
        "hark captions: {} → {} (Ctrl-C to stop)",
        input.description(),
        endpoint.url()
    );
    let rt = live::runtime()?;
    rt.block_on(async {
        live::stop_on_signal(input.stopper());
        let (tx, rx) = mpsc::channel(64);
        let audio = live::forward_audio(input, tx);
        let mut failure: Option<io::Error> = None;
        let result = run_session(&endpoint, &opts, rx, |event| {
            if let SessionEvent::Final(f) = &event
                && let (Some(cues), Some(segment)) = (cues.as_mut(), Segment::from_final(f))
                && let Err(e) = cues.push(&segment)
            {
                failure.get_or_insert(e);
            }
            if let SessionEvent::Warning(w) = &event {
                tracing::warn!("harkd: {} ({})", w.message, w.code);
            }
            if let Err(e) = display.event(&event) {
                failure.get_or_insert(e);
            }
        })
        .await;
        display.finish()?;
        let summary = result?;
        live::audio_outcome(audio).await?;
        if let Some(e) = failure {
            return Err(e).context("cannot write the captions");
        }
        tracing::info!(
            "{} segments, {:.1} s of audio",
            summary.segments,
            crate::remote::seconds(summary.acked_samples)
        );
        Ok(())
    })
}
