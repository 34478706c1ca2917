//! `hark bench --stream`: one stream through the real streaming engine (`hark_streaming::Stream`,
//! as harkd runs it), fed as fast as the CPU allows, timed against a simulated real-time clock.
//!
//! Chunk `i` "arrives" when its audio would have been captured, `(i + 1) · chunk`; the engine
//! starts on it at `max(arrival, previous chunk done)`. Events are stamped with the time their
//! chunk is done, so the latencies are what a real-time client would see, without waiting for
//! real time. Partials are skipped while the stream is behind, as harkd's scheduler does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use burn::tensor::backend::Backend;
use hark_model::{SAMPLE_RATE, SpeechModel};
use hark_streaming::{Event, Stream, StreamConfig};
use serde::Serialize;

/// Audio per pushed chunk.
pub const CHUNK_MS: u64 = 320;

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

    let defaults = StreamConfig::default();
    let mut stream = Stream::new(
        model.clone(),
        StreamConfig {
            vad: if vad { defaults.vad.clone() } else { None },
            partials: true,
            max_new_tokens,
            ..defaults
        },
    )?;
    let chunk = CHUNK_MS as usize * rate / 1000;
    let mut clock = Duration::ZERO; // simulated time at which the engine is free
    let mut compute = Duration::ZERO;
    let mut max_lag = Duration::ZERO;
    let (mut first_partial, mut last_final) = (None::<Duration>, None::<Duration>);
    let (mut partials, mut finals) = (0, 0);
    let mut events = Vec::new();
    let pieces = audio.chunks(chunk).count();
    for (i, piece) in audio.chunks(chunk).enumerate() {
        let arrival = Duration::from_secs_f64(((i * chunk + piece.len()) as f64) / rate as f64);
        let behind = clock > arrival;
        max_lag = max_lag.max(clock.saturating_sub(arrival));
        let start = clock.max(arrival);
        events.clear();
        let t = Instant::now();
        stream.push(piece, !behind, &mut events)?;
        if i + 1 == pieces {
            stream.close(&mut events);
        }
        let spent = t.elapsed();
        compute += spent;
        clock = start + spent;
        for e in &events {
            match e {
                Event::Partial(_) => {
                    partials += 1;
                    first_partial.get_or_insert(clock);
                }
                Event::Final(_) => {
                    finals += 1;
                    last_final = Some(clock);
                }
                _ => {}
            }
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
