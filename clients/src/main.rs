//! `hark`: the command-line face of Hark.

mod bench;
mod captions;
mod devices;
mod dictate;
mod dump;
mod duration;
mod eval;
mod exit;
mod formats;
mod input;
mod language;
mod live;
mod manual;
mod meeting;
mod model_args;
mod model_cmd;
mod offline;
mod output;
mod progress;
mod quiet_stderr;
mod remote;
mod stream_bench;
mod transcribe;
mod transcribe_remote;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hark: real-time speech transcription with Gemma 4.
#[derive(Debug, Parser)]
#[command(
    name = "hark",
    version,
    about,
    long_about = None,
    after_help = "Developer commands (not listed above): dump, eval, bench; see docs/development.md."
)]
pub(crate) struct Cli {
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Transcribe (or translate) audio files in-process.
    Transcribe(transcribe::TranscribeArgs),
    /// Write every stage of the speech path for one clip to a safetensors file.
    #[command(hide = true)]
    Dump(dump::DumpArgs),
    /// Word error rate over a manifest, offline and through the streaming engine.
    #[command(hide = true)]
    Eval(eval::EvalArgs),
    /// Inspect or download models.
    Model(model_cmd::ModelCmd),
    /// Time each stage at the real E2B shapes on random weights (optionally beside Hugging Face).
    #[command(hide = true)]
    Bench(bench::BenchArgs),
    /// Live captions from the microphone (or --input FILE) through harkd.
    Captions(captions::CaptionsArgs),
    /// List the audio input devices (for --device).
    Devices(devices::DevicesArgs),
    /// Dictation: type what you say into the focused window (push-to-talk or continuous).
    Dictate(dictate::DictateArgs),
    /// Timestamped transcript of the microphone or of recordings, through harkd.
    Meeting(meeting::MeetingArgs),
    /// List the languages --language accepts (BCP 47 tags and English names).
    Languages(language::LanguagesArgs),
    /// Print a shell completion script for hark or harkd (tools/install.sh installs them).
    #[command(hide = true)]
    Completions(manual::CompletionsArgs),
    /// Print or write the manual pages of hark or harkd (tools/install.sh installs them).
    #[command(hide = true)]
    Man(manual::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HARK_LOG")
                // symphonia logs its format probing at error level; the error Hark reports says it.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(format!("{level},symphonia=off"))
                }),
        )
        .with_writer(std::io::stderr)
        // Colour escapes only where a person sees them, not in redirected logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Transcribe(args) => transcribe::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Model(cmd) => model_cmd::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Captions(args) => captions::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Dictate(args) => dictate::run(args),
        Command::Meeting(args) => meeting::run(args),
        Command::Languages(args) => language::run(args),
        Command::Completions(args) => manual::completions(args),
        Command::Man(args) => manual::man(args),
    };
    exit::report(result)
}
