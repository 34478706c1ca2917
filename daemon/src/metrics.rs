//! Prometheus metrics at `GET /metrics`.
//!
//! Session code records through the `metrics` facade; the worker counters (streams, queue
//! depth, busy time) are copied from [`WorkerStats`](crate::scheduler::WorkerStats) when the
//! page is rendered, and a sampler turns busy time and processed audio into a real-time
//! factor every few seconds.

use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::scheduler::Scheduler;
use crate::state::AppState;

pub const SESSIONS_ACTIVE: &str = "harkd_sessions_active";
pub const SESSIONS_TOTAL: &str = "harkd_sessions_total";
pub const SESSIONS_PARKED: &str = "harkd_sessions_parked";
pub const SESSIONS_RESUMED: &str = "harkd_sessions_resumed_total";
pub const SESSIONS_REFUSED: &str = "harkd_sessions_refused_total";
pub const SESSION_SLOTS: &str = "harkd_session_slots";
pub const AUDIO_SECONDS: &str = "harkd_audio_seconds_total";
pub const PARTIALS: &str = "harkd_partials_total";
pub const FINALS: &str = "harkd_finals_total";
pub const PARTIALS_SHED: &str = "harkd_partials_shed_total";
pub const ERRORS: &str = "harkd_errors_total";
pub const DISCONNECTS: &str = "harkd_disconnects_total";
pub const TIME_TO_FIRST_PARTIAL: &str = "harkd_time_to_first_partial_seconds";
pub const TIME_TO_FINAL: &str = "harkd_time_to_final_seconds";
pub const LAG: &str = "harkd_lag_seconds";
pub const MODEL_LOADED: &str = "harkd_model_loaded";
pub const WORKER_STREAMS: &str = "harkd_worker_streams";
pub const QUEUE_DEPTH: &str = "harkd_queue_depth_seconds";
pub const WORKER_BUSY: &str = "harkd_worker_busy_milliseconds_total";
pub const WORKER_AUDIO: &str = "harkd_worker_audio_milliseconds_total";
pub const REAL_TIME_FACTOR: &str = "harkd_real_time_factor";
pub const STREAM_PANICS: &str = "harkd_stream_panics_total";
pub const CONNECTIONS_REFUSED: &str = "harkd_connections_refused_total";
pub const ACCEPT_ERRORS: &str = "harkd_accept_errors_total";

/// Histogram buckets for latencies, seconds.
const LATENCY_BUCKETS: [f64; 15] = [
    0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

/// Install the global Prometheus recorder and describe every metric.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for name in [TIME_TO_FIRST_PARTIAL, TIME_TO_FINAL, LAG] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), &LATENCY_BUCKETS)?;
    }
    let handle = builder.install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_gauge!(
        SESSIONS_ACTIVE,
        "Sessions with an open WebSocket, by endpoint."
    );
    describe_counter!(SESSIONS_TOTAL, "Sessions started, by endpoint.");
    describe_gauge!(
        SESSIONS_PARKED,
        "Dropped native sessions waiting to be resumed."
    );
    describe_counter!(
        SESSIONS_RESUMED,
        "Native sessions resumed after a dropped connection."
    );
    describe_counter!(
        SESSIONS_REFUSED,
        "Connections refused before a session, by reason."
    );
    describe_gauge!(SESSION_SLOTS, "Configured session slots (max_sessions).");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections answered 503 because every connection slot was busy."
    );
    describe_counter!(
        ACCEPT_ERRORS,
        "Failed accepts (out of file descriptors or memory)."
    );
    describe_counter!(
        AUDIO_SECONDS,
        Unit::Seconds,
        "Seconds of audio received from clients, by endpoint."
    );
    describe_counter!(
        PARTIALS,
        "Partial results sent (native partials, OpenAI deltas)."
    );
    describe_counter!(
        FINALS,
        "Final results sent (native finals, OpenAI completed items)."
    );
    describe_counter!(
        PARTIALS_SHED,
        "Partial updates skipped: stage=engine (stream behind real time) or outbox (client reads slowly)."
    );
    describe_counter!(
        ERRORS,
        "Error messages sent to clients, by protocol error code."
    );
    describe_counter!(
        DISCONNECTS,
        "Sessions that ended without a clean close, by reason."
    );
    describe_histogram!(
        TIME_TO_FIRST_PARTIAL,
        Unit::Seconds,
        "Wall time from the arrival of a segment's first audio (VAD pre-roll included) to its first partial."
    );
    describe_histogram!(
        TIME_TO_FINAL,
        Unit::Seconds,
        "Wall time from the arrival of a segment's last audio to its final."
    );
    describe_histogram!(
        LAG,
        Unit::Seconds,
        "Audio received but not yet processed when a result was sent."
    );
    describe_gauge!(
        MODEL_LOADED,
        "1 once the model is loaded and sessions are accepted."
    );
    describe_gauge!(WORKER_STREAMS, "Streams assigned to each inference worker.");
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Seconds,
        "Audio queued in each worker's streams, not yet processed."
    );
    describe_counter!(
        WORKER_BUSY,
        Unit::Milliseconds,
        "Time each worker spent processing audio."
    );
    describe_counter!(
        WORKER_AUDIO,
        Unit::Milliseconds,
        "Audio each worker processed."
    );
    describe_gauge!(
        REAL_TIME_FACTOR,
        "Processing time per second of audio over the last sampling interval, per worker (below 1: faster than real time)."
    );
    describe_counter!(
        STREAM_PANICS,
        "Streams closed because their state machine panicked."
    );
}

/// Copy the scheduler's counters into the registry (called before rendering).
pub fn record_workers(scheduler: &Scheduler) {
    let rate = hark_model::SAMPLE_RATE as f64;
    let mut panics = 0;
    for (i, w) in scheduler.worker_stats().enumerate() {
        let worker = i.to_string();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(WORKER_STREAMS, "worker" => worker.clone())
            .set(w.streams.load(std::sync::atomic::Ordering::Relaxed) as f64);
        metrics::gauge!(QUEUE_DEPTH, "worker" => worker.clone())
            .set(load(&w.queued_samples) as f64 / rate);
        metrics::counter!(WORKER_BUSY, "worker" => worker.clone())
            .absolute(load(&w.busy_ns) / 1_000_000);
        metrics::counter!(WORKER_AUDIO, "worker" => worker.clone())
            .absolute(load(&w.processed_samples) * 1000 / hark_model::SAMPLE_RATE as u64);
        metrics::counter!(PARTIALS_SHED, "stage" => "engine").absolute(load(&w.shed_partials));
        panics += load(&w.panics);
    }
    metrics::counter!(STREAM_PANICS).absolute(panics);
}

/// Every `period`, set each worker's real-time factor from its busy time and processed
/// audio over the period (0 when it processed nothing).
pub async fn sample_real_time_factor(state: std::sync::Arc<AppState>, period: Duration) {
    let mut last: Vec<(u64, u64)> = Vec::new();
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(model) = state.model() else {
            continue;
        };
        let now: Vec<(u64, u64)> = model
            .scheduler
            .worker_stats()
            .map(|w| {
                (
                    w.busy_ns.load(std::sync::atomic::Ordering::Relaxed),
                    w.processed_samples
                        .load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        for (i, &(busy, samples)) in now.iter().enumerate() {
            let (busy0, samples0) = last.get(i).copied().unwrap_or((0, 0));
            let audio_s = samples.saturating_sub(samples0) as f64 / hark_model::SAMPLE_RATE as f64;
            let busy_s = busy.saturating_sub(busy0) as f64 / 1e9;
            let rtf = if audio_s > 0.0 { busy_s / audio_s } else { 0.0 };
            metrics::gauge!(REAL_TIME_FACTOR, "worker" => i.to_string()).set(rtf);
        }
        last = now;
    }
}
