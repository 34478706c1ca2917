//! `hark bench --stream`: one stream through the serving engine (`hark_streaming::engine`, one
//! worker, as harkd runs it), fed as fast as the CPU allows, timed against a simulated
//! real-time clock.
//!
//! Chunk `i` "arrives" when its audio would have been captured, `(i + 1) · chunk`. Whenever
//! the engine has caught up, every chunk that has arrived by then (on the simulated clock) is
//! pushed at once, so a stream behind real time has a backlog and the engine sheds its
//! partials by its own rule. Each chunk is stamped with the simulated time the engine finished
//! it, and each event with its chunk's stamp, so the latencies are what a real-time client
//! would see, without waiting for real time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use hark_model::{SAMPLE_RATE, SpeechModel};
use hark_streaming::engine::{Engine, EngineConfig, Output, StreamLink, stream_factory};
use hark_streaming::{Event, StreamConfig};
use serde::Serialize;

/// Audio per pushed chunk.
pub const CHUNK_MS: u64 = 320;

/// How often the bench looks whether the engine has caught up.
const POLL: Duration = Duration::from_micros(200);

/// One streaming run.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRun {
    pub vad: bool,
    pub audio_s: f64,
    /// Compute time over audio time (< 1: faster than real time).
    pub compute_rtf: f64,
    /// Speech onset → first partial, in simulated real time.
    pub first_partial_ms: Option<f64>,
    /// End of speech → the final that closes it, in simulated real time.
    pub final_ms: Option<f64>,
    /// The longest a chunk waited behind earlier work (how far behind real time it fell).
    pub max_lag_ms: f64,
    pub partials: usize,
    pub finals: usize,
}

/// Feed `speech` (16 kHz mono) padded with a second of silence on both sides, with the VAD
/// gate on or off, partials on.
pub fn run<B: Backend>(
    model: &Arc<SpeechModel<B>>,
    speech: &[f32],
    vad: bool,
    max_new_tokens: usize,
) -> Result<StreamRun> {
    let rate = SAMPLE_RATE as usize;
    let pad = vec![0.0f32; rate];
    let audio: Vec<f32> = pad.iter().chain(speech).chain(&pad).copied().collect();
    let onset_s = 1.0;
    let end_s = 1.0 + speech.len() as f64 / rate as f64;
    let audio_s = audio.len() as f64 / rate as f64;

    let engine = Engine::start(
        stream_factory(model.clone()),
        EngineConfig {
            chunk_ms: CHUNK_MS as u32,
            ..Default::default()
        },
    );
    let defaults = StreamConfig::default();
    let mut link = engine.open(StreamConfig {
        vad: if vad { defaults.vad.clone() } else { None },
        partials: true,
        max_new_tokens,
        ..defaults
    })?;
    // The link's push waits on the worker through tokio; nothing else runs on this thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the stream's runtime")?;

    let chunk = CHUNK_MS as usize * rate / 1000;
    let pieces: Vec<&[f32]> = audio.chunks(chunk).collect();
    let arrival =
        |i: usize| Duration::from_secs_f64(((i * chunk + pieces[i].len()) as f64) / rate as f64);
    let mut done_at = vec![Duration::ZERO; pieces.len()]; // simulated time each chunk was done
    let mut clock = Duration::ZERO; // simulated time at which the engine is free
    let mut compute = Duration::ZERO;
    let mut max_lag = Duration::ZERO;
    let mut outputs = Vec::new();
    let mut next = 0;
    while next < pieces.len() {
        clock = clock.max(arrival(next));
        let first = next;
        while next < pieces.len() && arrival(next) <= clock {
            max_lag = max_lag.max(clock - arrival(next));
            if runtime.block_on(link.push(pieces[next])).is_err() {
                take_outputs(&mut link, &mut outputs)?;
                bail!("the streaming engine dropped the stream");
            }
            next += 1;
        }
        let t = Instant::now();
        if next == pieces.len() {
            link.close();
        }
        let mut stamped = first;
        loop {
            // A chunk is done once the engine has processed its last sample.
            while stamped < next - 1 && link.processed() >= ((stamped + 1) * chunk) as u64 {
                done_at[stamped] = clock + t.elapsed();
                stamped += 1;
            }
            let finished = take_outputs(&mut link, &mut outputs)?;
            // The last chunk is done with the stream: its finals come before `Finished`.
            if finished || (next < pieces.len() && link.processed() >= link.pushed()) {
                break;
            }
            std::thread::sleep(POLL);
        }
        let spent = t.elapsed();
        done_at[next - 1] = clock + spent;
        compute += spent;
        clock += spent;
    }

    let (mut partials, mut finals) = (0, 0);
    let (mut first_partial, mut last_final) = (None::<Duration>, None::<Duration>);
    for (event, position) in outputs {
        // The chunk whose last sample is at `position` (close's finals: the last chunk).
        let at = done_at[(position as usize).div_ceil(chunk).clamp(1, pieces.len()) - 1];
        match event {
            Event::Partial(_) => {
                partials += 1;
                first_partial.get_or_insert(at);
            }
            Event::Final(_) => {
                finals += 1;
                last_final = Some(at);
            }
            _ => {}
        }
    }
    let ms_after = |at: Option<Duration>, from_s: f64| at.map(|d| (d.as_secs_f64() - from_s) * 1e3);
    Ok(StreamRun {
        vad,
        audio_s,
        compute_rtf: compute.as_secs_f64() / audio_s,
        first_partial_ms: ms_after(first_partial, onset_s),
        final_ms: ms_after(last_final, end_s),
        max_lag_ms: max_lag.as_secs_f64() * 1e3,
        partials,
        finals,
    })
}

/// Moves the stream's ready outputs into `outputs` as (event, position); whether the stream
/// has finished. A failed stream is an error (the engine sends its error event last).
fn take_outputs(link: &mut StreamLink, outputs: &mut Vec<(Event, u64)>) -> Result<bool> {
    while let Some(output) = link.try_recv() {
        match output {
            Output::Event {
                event: Event::Error { code, message },
                ..
            } => bail!("{message} ({code:?})"),
            Output::Event {
                event, position, ..
            } => outputs.push((event, position)),
            Output::Flushed { .. } => {}
            Output::Finished { .. } => return Ok(true),
        }
    }
    Ok(false)
}

/// The runs as table rows.
pub fn table(runs: &[StreamRun]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let mut out = format!(
        "\nstreaming ({CHUNK_MS} ms chunks, partials on, simulated real-time clock)\n{:<8} {:>8} {:>12} {:>20} {:>16} {:>12} {:>9} {:>7}\n",
        "vad",
        "audio s",
        "compute RTF",
        "onset→1st partial ms",
        "end→final ms",
        "max lag ms",
        "partials",
        "finals"
    );
    for r in runs {
        out.push_str(&format!(
            "{:<8} {:>8.1} {:>12.3} {:>20} {:>16} {:>12.0} {:>9} {:>7}\n",
            if r.vad { "on" } else { "off" },
            r.audio_s,
            r.compute_rtf,
            ms(r.first_partial_ms),
            ms(r.final_ms),
            r.max_lag_ms,
            r.partials,
            r.finals
        ));
    }
    out
}
