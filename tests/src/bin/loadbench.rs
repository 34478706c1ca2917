//! `hark-loadbench`: how many concurrent real-time streams one harkd sustains.
//!
//! Starts harkd (or uses `--server`), then runs rounds of N concurrent native sessions, each
//! streaming a clip looped to `--seconds` at real time in 100 ms frames with partials on. A
//! round is sustained when the p95 of the lag the server reports in every partial and final
//! (`lag_s`: received audio not yet processed) stays within `--lag-bound`, the p95 final
//! latency within `--final-latency-bound`, and every session got its finals. N doubles until a
//! round fails, then the gap is bisected. The first round (one stream) is the reference the
//! other rounds' final latencies are printed against. Each round also measures the time from
//! the clip's speech onset (its first loud sample, as sent at real time) to the session's first
//! partial with text. `--out FILE` writes every round and a summary (with the rounds at 1, 8
//! and the sustained N) as one JSON object.
//!
//!     cargo build --release -p hark-daemon -p hark-tests
//!     target/release/hark-loadbench                         # fixture model, this CPU
//!     target/release/hark-loadbench --model synthetic:e2b --device cuda --max-streams 512

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hark_protocol::ServerMessage;
use hark_tests::audio::Clip;
use hark_tests::harkd::Harkd;
use hark_tests::native::{self, Client, Pace};

#[derive(Debug, Parser)]
#[command(name = "hark-loadbench", about)]
struct Args {
    /// Use a running harkd (ws://HOST:PORT) instead of starting one.
    #[arg(long)]
    server: Option<String>,
    /// Model for the harkd started here (a directory, a repo id, `synthetic:e2b`); default:
    /// the e2b-shaped fixture checkpoint.
    #[arg(long)]
    model: Option<String>,
    /// Extra harkd arguments (e.g. `--device cuda`), for the harkd started here.
    #[arg(long, allow_hyphen_values = true, num_args = 1..)]
    harkd_args: Vec<String>,
    /// Clip streamed by every session (a fixture name or a WAV path), looped.
    #[arg(long, default_value = "fox")]
    clip: String,
    /// Seconds of audio each session streams per round.
    #[arg(long, default_value_t = 12.0)]
    seconds: f64,
    /// p95 lag (s) a round may reach and still count as sustained.
    #[arg(long, default_value_t = 1.0)]
    lag_bound: f64,
    /// p95 final latency (s) a round may reach and still count as sustained. The lag alone
    /// understates overload: a stream behind real time sheds its partials, so the messages
    /// that carry `lag_s` are mostly the ones sent while it was caught up.
    #[arg(long, default_value_t = 2.0)]
    final_latency_bound: f64,
    /// Largest N tried.
    #[arg(long, default_value_t = 64)]
    max_streams: usize,
    /// One JSON object per round, then a summary object.
    #[arg(long)]
    json: bool,
    /// Write every round and the summary to this file as one JSON object.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A sample this loud (of full scale) marks the speech onset.
const ONSET_LEVEL: f32 = 0.02;

/// What one round measured.
#[derive(Debug, Clone, serde::Serialize)]
struct Round {
    streams: usize,
    sustained: bool,
    /// p95 and max of `lag_s` over every partial and final of every session.
    lag_p95_s: f64,
    lag_max_s: f64,
    /// p50 and p95 of the finals' `emit_latency_s`.
    final_latency_p50_s: f64,
    final_latency_p95_s: f64,
    /// p50 and p95 over sessions of speech onset → first partial with text (wall clock).
    first_partial_p50_s: f64,
    first_partial_p95_s: f64,
    /// Sessions that got no partial with text (a random-weight `synthetic:` model decodes to
    /// ids its word-level vocabulary has no text for, so only the next figure applies there).
    sessions_without_partial: usize,
    /// p50 and p95 of speech onset → first partial of any text, empty included: the first
    /// hypothesis the server sent.
    first_hypothesis_p50_s: f64,
    first_hypothesis_p95_s: f64,
    /// Sessions that got no final or an error.
    failed_sessions: usize,
    wall_s: f64,
}

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() - 1) as f64 * p).round() as usize;
    xs[i]
}

fn looped(clip: &Clip, seconds: f64) -> Clip {
    let want = (seconds * f64::from(clip.rate)) as usize * usize::from(clip.channels);
    let mut out = clip.clone();
    out.samples = clip.samples.iter().copied().cycle().take(want).collect();
    out
}

/// Seconds from the clip's start to its first sample at [`ONSET_LEVEL`].
fn onset_s(clip: &Clip) -> f64 {
    let first = clip
        .samples
        .iter()
        .position(|s| s.abs() >= ONSET_LEVEL)
        .unwrap_or(0);
    (first / usize::from(clip.channels)) as f64 / f64::from(clip.rate)
}

/// Wall time from the speech onset (sent at real time from `sent_at`) to the first partial,
/// with text only when `with_text`.
fn first_partial_s(
    t: &native::Transcript,
    sent_at: Instant,
    onset_s: f64,
    with_text: bool,
) -> Option<f64> {
    let onset = sent_at + Duration::from_secs_f64(onset_s);
    t.messages.iter().find_map(|(at, m)| match m {
        ServerMessage::Partial(p)
            if !(with_text && p.committed.is_empty() && p.tentative.is_empty()) =>
        {
            Some(at.saturating_duration_since(onset).as_secs_f64())
        }
        _ => None,
    })
}

async fn round(url: &str, clip: &Clip, streams: usize, bounds: (f64, f64)) -> Round {
    let started = Instant::now();
    let onset = onset_s(clip);
    let sessions: Vec<_> = (0..streams)
        .map(|_| {
            let (url, clip) = (url.to_owned(), clip.clone());
            tokio::spawn(async move {
                let mut c = Client::connect(&url).await;
                c.start(&native::start(clip.rate, clip.channels)).await;
                let sent_at = c.send_clip(&clip, 100, Pace::Realtime(1.0)).await;
                (sent_at, c.close_and_collect().await)
            })
        })
        .collect();
    let (mut lags, mut latencies, mut failed) = (Vec::new(), Vec::new(), 0);
    let (mut first_partials, mut first_hypotheses, mut without_partial) =
        (Vec::new(), Vec::new(), 0);
    for s in sessions {
        let Ok((sent_at, t)) = s.await else {
            failed += 1;
            continue;
        };
        if t.finals().is_empty() || !t.errors().is_empty() {
            failed += 1;
        }
        match first_partial_s(&t, sent_at, onset, true) {
            Some(s) => first_partials.push(s),
            None => without_partial += 1,
        }
        first_hypotheses.extend(first_partial_s(&t, sent_at, onset, false));
        for (_, m) in &t.messages {
            match m {
                ServerMessage::Partial(p) => lags.push(p.lag_s),
                ServerMessage::Final(f) => {
                    lags.push(f.lag_s);
                    latencies.push(f.emit_latency_s);
                }
                _ => {}
            }
        }
    }
    let lag_p95_s = percentile(lags.clone(), 0.95);
    let final_latency_p50_s = percentile(latencies.clone(), 0.5);
    let final_latency_p95_s = percentile(latencies, 0.95);
    Round {
        streams,
        sustained: failed == 0 && lag_p95_s <= bounds.0 && final_latency_p95_s <= bounds.1,
        lag_p95_s,
        lag_max_s: lags.iter().copied().fold(0.0, f64::max),
        final_latency_p50_s,
        final_latency_p95_s,
        first_partial_p50_s: percentile(first_partials.clone(), 0.5),
        first_partial_p95_s: percentile(first_partials, 0.95),
        sessions_without_partial: without_partial,
        first_hypothesis_p50_s: percentile(first_hypotheses.clone(), 0.5),
        first_hypothesis_p95_s: percentile(first_hypotheses, 0.95),
        failed_sessions: failed,
        wall_s: started.elapsed().as_secs_f64(),
    }
}

/// The run so far: bounds, the sustained N and the rounds at 1, 8 and the sustained N.
fn summarize(
    args: &Args,
    url: &str,
    clip: &Clip,
    rounds: &[Round],
    good: usize,
    bad: Option<usize>,
) -> serde_json::Value {
    let at = |n: usize| rounds.iter().rev().find(|r| r.streams == n);
    serde_json::json!({
        "url": url,
        "clip_seconds": args.seconds,
        "speech_onset_s": onset_s(clip),
        "lag_bound_s": args.lag_bound,
        "final_latency_bound_s": args.final_latency_bound,
        "max_streams": args.max_streams,
        "sustained_streams": good,
        "first_failing_streams": bad,
        "at_1_stream": at(1),
        "at_8_streams": at(8),
        "at_sustained": at(good),
    })
}

fn write_report(
    path: &std::path::Path,
    summary: &serde_json::Value,
    rounds: &[Round],
    complete: bool,
) -> Result<()> {
    let report = serde_json::json!({ "complete": complete, "summary": summary, "rounds": rounds });
    std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

fn clip_arg(arg: &str) -> Clip {
    let path = PathBuf::from(arg);
    if path.extension().is_some() {
        Clip::load(path)
    } else {
        Clip::fixture(arg)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.max_streams == 0 || args.seconds <= 0.0 {
        bail!("--max-streams and --seconds must be positive");
    }
    let clip = looped(&clip_arg(&args.clip), args.seconds);
    let (_harkd, url) = match &args.server {
        Some(server) => (None, format!("{}/v1/listen", server.trim_end_matches('/'))),
        None => {
            let mut builder = Harkd::builder().args([
                "--max-sessions".to_owned(),
                (args.max_streams + 1).to_string(),
            ]);
            if let Some(model) = &args.model {
                // In place of the fixture model the builder names by default.
                builder = builder
                    .embedded_model()
                    .args(["--model".to_owned(), model.clone()]);
            }
            let harkd = builder.args(args.harkd_args.clone()).start();
            let url = harkd.ws_url("/v1/listen");
            (Some(harkd), url)
        }
    };
    // Warm-up: first forward passes allocate and tune.
    round(&url, &looped(&clip, 2.0), 1, (f64::INFINITY, f64::INFINITY)).await;
    let bounds = (args.lag_bound, args.final_latency_bound);

    let mut rounds: Vec<Round> = Vec::new();
    let report = |r: &Round, reference: Option<&Round>| -> Result<()> {
        if args.json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            let ratio = reference
                .map(|b| {
                    format!(
                        "{:4.1}x",
                        r.final_latency_p95_s / b.final_latency_p95_s.max(1e-3)
                    )
                })
                .unwrap_or_else(|| "  ref".into());
            println!(
                "{:>4} streams  p95 lag {:6.3} s  max lag {:6.3} s  p95 final latency {:6.3} s ({ratio} of 1 stream)  p95 onset→partial {:6.3} s (any text: {:6.3} s)  failed {}  {}",
                r.streams,
                r.lag_p95_s,
                r.lag_max_s,
                r.final_latency_p95_s,
                r.first_partial_p95_s,
                r.first_hypothesis_p95_s,
                r.failed_sessions,
                if r.sustained {
                    "sustained"
                } else {
                    "NOT sustained"
                }
            );
        }
        Ok(())
    };
    // Double until a round fails, then bisect between the last good and the first bad N.
    let (mut good, mut bad) = (0usize, None::<usize>);
    let mut n = 1;
    loop {
        let r = round(&url, &clip, n, bounds).await;
        report(&r, rounds.first())?;
        let ok = r.sustained;
        rounds.push(r);
        if ok {
            good = n;
        } else {
            bad = Some(n);
        }
        // Written after every round, so a run cut short still leaves its figures.
        if let Some(path) = &args.out {
            let summary = summarize(&args, &url, &clip, &rounds, good, bad);
            write_report(path, &summary, &rounds, false)?;
        }
        n = match bad {
            None if n >= args.max_streams => break,
            None => (n * 2).min(args.max_streams),
            Some(b) if b - good <= 1.max(b / 8) => break,
            Some(b) => (good + b) / 2,
        };
        if Some(n) == bad || n == good {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let summary = summarize(&args, &url, &clip, &rounds, good, bad);
    if let Some(path) = &args.out {
        write_report(path, &summary, &rounds, true)?;
    }
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "sustained: {good} concurrent real-time streams (p95 lag ≤ {} s, p95 final latency ≤ {} s){}",
            args.lag_bound,
            args.final_latency_bound,
            bad.map(|b| format!("; {b} streams were not"))
                .unwrap_or_else(|| format!("; --max-streams {} reached", args.max_streams))
        );
    }
    if good == 0 {
        let first = rounds.first().context("no round ran")?;
        bail!(
            "not even one stream was sustained (p95 lag {:.3} s)",
            first.lag_p95_s
        );
    }
    Ok(())
}
