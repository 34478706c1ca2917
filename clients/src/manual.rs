//! `hark completions SHELL` and `hark man`: shell completions and manual pages generated from
//! the clap definitions of `hark` and `harkd`, so they never drift from the flags.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

/// Which program's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Program {
    Hark,
    Harkd,
}

impl Program {
    fn command(self) -> clap::Command {
        match self {
            Program::Hark => crate::Cli::command(),
            Program::Harkd => hark_daemon::Cli::command(),
        }
    }
}

/// Flags of `hark completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
    /// Completions for this program.
    #[arg(long, value_enum, default_value_t = Program::Hark)]
    pub program: Program,
}

/// Flags of `hark man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The manual of this program.
    #[arg(long, value_enum, default_value_t = Program::Hark)]
    pub program: Program,
    /// Write every page (the program's and one per subcommand, `hark-transcribe.1` …) into
    /// this directory instead of the main page to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Writes the completion script to stdout.
pub fn completions(args: CompletionsArgs) -> Result<()> {
    let mut command = args.program.command();
    let name = command.get_name().to_owned();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, name, &mut out);
    out.flush()?;
    Ok(())
}

/// Writes the manual page(s).
pub fn man(args: ManArgs) -> Result<()> {
    let command = args.program.command();
    match args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write manual pages to {}", dir.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command).render(&mut out)?;
            out.flush()?;
            Ok(())
        }
    }
}
