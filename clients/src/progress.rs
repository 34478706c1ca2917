//! Progress of a long offline job: a bar on a terminal, a log line now and then otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::duration::readable;

/// Nothing is shown for a job that finishes sooner than this.
const QUIET_FOR: Duration = Duration::from_secs(3);
/// Without a terminal, at most one line per this long (`HARK_PROGRESS_INTERVAL_MS` changes it).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Progress through one file's audio, in seconds of audio.
pub struct Progress {
    label: String,
    total_s: f64,
    started: Instant,
    quiet_for: Duration,
    view: View,
}

enum View {
    /// A bar drawn on stderr once the job has run `quiet_for`.
    Bar(ProgressBar),
    /// Lines on stderr, `every` apart.
    Lines { every: Duration, last: Instant },
}

impl Progress {
    /// Progress over `total_s` seconds of audio of `label`; a bar when stderr is a terminal.
    pub fn new(label: String, total_s: f64) -> Self {
        let interval = std::env::var("HARK_PROGRESS_INTERVAL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        let started = Instant::now();
        let view = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some((total_s * 1000.0) as u64),
                ProgressDrawTarget::hidden(),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {percent:>3}% {msg} (eta {eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(label.clone());
            View::Bar(bar)
        } else {
            View::Lines {
                every: interval.unwrap_or(LOG_EVERY),
                last: started,
            }
        };
        Self {
            label,
            total_s,
            started,
            quiet_for: interval.map_or(QUIET_FOR, |i| i.min(QUIET_FOR)),
            view,
        }
    }

    /// The job has reached `done_s` seconds of the audio.
    pub fn update(&mut self, done_s: f64) {
        let now = Instant::now();
        if now - self.started < self.quiet_for {
            return;
        }
        match &mut self.view {
            View::Bar(bar) => {
                if bar.is_hidden() {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
                bar.set_position((done_s * 1000.0) as u64);
            }
            View::Lines { every, last } => {
                if now - *last >= *every {
                    *last = now;
                    eprintln!(
                        "hark: {}: {} of {} of audio ({:.0} %) after {}",
                        self.label,
                        readable(done_s),
                        readable(self.total_s),
                        100.0 * done_s / self.total_s.max(1e-9),
                        readable((now - self.started).as_secs_f64()),
                    );
                }
            }
        }
    }

    /// The job is over: the bar goes away.
    pub fn finish(self) {
        if let View::Bar(bar) = self.view {
            bar.finish_and_clear();
        }
    }
}
