//! How `hark` ends: an error printed once, with its causes, and quiet on a closed pipe.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The error and its causes joined by ": ", each message once. Many library errors already
/// write their source into their own message (`"{path}: {source}"`) and also return it from
/// `source()`; anyhow's `{:#}` would then print that text twice, so a cause whose message the
/// text so far already ends with, or contains, is left out.
pub fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if message.is_empty() || text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// Whether the error is stdout's reader having gone away (`hark … | head`).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs `job` on every file. A file that fails is reported and the rest still get done; the
/// result is then an error saying how many failed, so the exit status is not 0. One file's
/// error is simply the result. A closed stdout stops everything at once.
pub fn for_each_file(
    files: &[PathBuf],
    mut job: impl FnMut(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let [file] = files {
        return job(file);
    }
    let mut failed = 0;
    for file in files {
        match job(file) {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => return Err(e),
            Err(e) => {
                eprintln!("{}: {}", error_label(), chain_text(&e));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files could not be transcribed", files.len());
    }
    Ok(())
}

/// "error", in bold red when stderr is a terminal (never escapes in a redirected log).
fn error_label() -> &'static str {
    if std::io::stderr().is_terminal() {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    }
}

/// The exit status for `result`, after printing its error (in red on a terminal).
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    if is_broken_pipe(&error) {
        // The reader has all it wanted; as for any Unix filter, that is not an error.
        return ExitCode::SUCCESS;
    }
    eprintln!("{}: {}", error_label(), chain_text(&error));
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot bind 127.0.0.1:1: {source}")]
    struct Bind {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let io_text = io.to_string();
        let error = anyhow::Error::new(Bind { source: io }).context("cannot start harkd");
        assert_eq!(
            chain_text(&error),
            format!("cannot start harkd: cannot bind 127.0.0.1:1: {io_text}")
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&plain), "outer: inner");
    }

    #[test]
    fn a_broken_pipe_is_recognised_through_context() {
        let error = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("cannot write the transcript");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
