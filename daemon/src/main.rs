//! `harkd`: parse flags, read the configuration, start logging and metrics, serve.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hark_daemon::config::LogFormat;
use hark_daemon::{Cli, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harkd: error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: errors that already quote their
/// cause (`cannot listen on …: Address already in use`) do not get it appended again.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli)?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    init_logging(config.log_format, cli.verbose);
    let metrics = hark_daemon::metrics::install().context("cannot install the metrics recorder")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("harkd-io")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(hark_daemon::run(config, Some(metrics)))?;
    Ok(())
}

fn init_logging(format: LogFormat, verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HARKD_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},symphonia=off,burn=warn,cubecl=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
