//! `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`.
//!
//! Order of checks: token, server state, then the upload (size, multipart, fields), then the
//! audio, then a session slot; only then does model work start. A translation is the
//! model's translate task into English (OpenAI's endpoint translates into English only); its
//! source language is the `language` field (a Hark extension) or `default_language`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use hark_model::Task;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::errors::ApiError;
use super::form::AudioForm;
use super::format::{self, Kind};
use super::{guard, multipart, record, upload};
use crate::language::language_name;
use crate::state::{AppState, Refusal};

const TRANSCRIPTIONS: &str = "transcriptions";
const TRANSLATIONS: &str = "translations";

/// `POST /v1/audio/transcriptions`.
pub async fn transcriptions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let result = handle(&state, &headers, &uri, body, Kind::Transcribe).await;
    record(TRANSCRIPTIONS, result)
}

/// `POST /v1/audio/translations`.
pub async fn translations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let result = handle(&state, &headers, &uri, body, Kind::Translate).await;
    record(TRANSLATIONS, result)
}

async fn handle(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    uri: &Uri,
    body: Body,
    kind: Kind,
) -> Result<Response, ApiError> {
    guard(state, headers, uri)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multipart::boundary(content_type)
        .map_err(|e| ApiError::invalid("invalid_content_type", None, e.to_string()))?;
    let limit = state.config.max_upload_mb as usize * 1024 * 1024;
    let bytes = upload::read_limited(headers, body, limit).await?;
    let parts = multipart::parse(&bytes, &boundary)
        .map_err(|e| ApiError::invalid("invalid_multipart", None, e.to_string()))?;
    let form = AudioForm::from_parts(parts)?;
    let (task, language) = task(state, &form, kind)?;
    let longest = u64::from(state.limits.max_session_s);
    let samples = decode(form.file.clone(), longest).await?;
    let seconds = samples.len() as f64 / hark_model::SAMPLE_RATE as f64;
    if longest > 0 && seconds > longest as f64 {
        return Err(too_long(Some(seconds), longest));
    }
    let permit = state.admit_now().map_err(|r| refused(state, r))?;
    let endpoint = match kind {
        Kind::Transcribe => TRANSCRIPTIONS,
        Kind::Translate => TRANSLATIONS,
    };
    tracing::info!(
        endpoint,
        file = form.filename.as_deref().unwrap_or(""),
        model = form.model.as_deref().unwrap_or(""),
        seconds,
        stream = form.stream,
        "file upload"
    );
    if form.stream {
        return Ok(stream_events(
            state.clone(),
            endpoint,
            task,
            samples,
            permit,
        ));
    }
    let _tracked = state.track_session();
    let transcript = super::job::run(state, endpoint, task, &samples, None).await?;
    drop(permit);
    Ok(format::render(
        &transcript,
        form.response_format,
        kind,
        &language,
    ))
}

/// The model task and the lower-case name of the output language.
fn task(state: &AppState, form: &AudioForm, kind: Kind) -> Result<(Task, String), ApiError> {
    let tag = form
        .language
        .as_deref()
        .unwrap_or(&state.config.default_language);
    let source = language_name(tag).ok_or_else(|| {
        ApiError::invalid(
            "unsupported_language",
            Some("language"),
            format!("language `{tag}` is not one this server knows (use an ISO 639-1 code)"),
        )
    })?;
    Ok(match kind {
        Kind::Transcribe => (
            Task::Transcribe {
                language: source.into(),
            },
            source.to_lowercase(),
        ),
        Kind::Translate => (
            Task::Translate {
                source: source.into(),
                target: "English".into(),
            },
            "english".into(),
        ),
    })
}

/// An upload longer than a session may be (`limits.max_session_s`).
fn too_long(seconds: Option<f64>, longest: u64) -> ApiError {
    let length = seconds.map_or("longer than that".to_owned(), |s| format!("{s:.0} s long"));
    ApiError::invalid(
        "audio_too_long",
        Some("file"),
        format!(
            "the audio is {length}; this server takes at most {longest} s (limits.max_session_s)"
        ),
    )
}

/// The upload as 16 kHz mono, decoded off the async threads. Decoding stops as soon as the
/// audio passes `longest` seconds (0: no limit), so a small, highly compressed upload cannot
/// decode into gigabytes.
async fn decode(file: Bytes, longest: u64) -> Result<Vec<f32>, ApiError> {
    let limit = if longest > 0 {
        longest as f64
    } else {
        f64::INFINITY
    };
    let decoded = tokio::task::spawn_blocking(move || {
        hark_audio_io::decode_bytes_within(&file, limit)
            .and_then(|a| hark_audio_io::to_mono_16k(&a))
    })
    .await
    .map_err(|_| ApiError::internal("the audio decoder stopped unexpectedly"))?;
    let samples = decoded.map_err(|e| match e {
        hark_audio_io::AudioError::TooLong { .. } => too_long(None, longest),
        e => ApiError::invalid(
            "invalid_value",
            Some("file"),
            format!("the file could not be decoded as audio: {e}"),
        ),
    })?;
    if samples.is_empty() {
        return Err(ApiError::invalid(
            "invalid_value",
            Some("file"),
            "the file holds no audio",
        ));
    }
    Ok(samples)
}

fn refused(state: &AppState, refusal: Refusal) -> ApiError {
    let retry = state.config.busy_retry_after_s;
    match refusal {
        Refusal::Busy => ApiError::unavailable(
            "server_busy",
            format!("all {} stream slots are in use", state.config.max_sessions),
            retry,
        ),
        Refusal::Loading => {
            ApiError::unavailable("model_loading", "the model is still loading", retry)
        }
        Refusal::ShuttingDown => {
            ApiError::unavailable("shutting_down", "the server is stopping", retry)
        }
    }
}

/// `stream=true`: Server-Sent Events, `transcript.text.delta` as the decoder produces text,
/// then `transcript.text.done` with the whole text (or an `error` object).
fn stream_events(
    state: Arc<AppState>,
    endpoint: &'static str,
    task: Task,
    samples: Vec<f32>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let (deltas, delta_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let _tracked = state.track_session();
        let _permit = permit;
        let result = super::job::run(&state, endpoint, task, &samples, Some(deltas)).await;
        let last = match result {
            Ok(t) => json!({"type": "transcript.text.done", "text": t.text()}),
            Err(err) => {
                metrics::counter!(crate::metrics::ERRORS, "code" => err.code).increment(1);
                err.body()
            }
        };
        let _ = done_tx.send(last);
    });
    let frames = stream::unfold((delta_rx, Some(done_rx)), |(mut deltas, done)| async move {
        if let Some(delta) = deltas.recv().await {
            let event = json!({"type": "transcript.text.delta", "delta": delta});
            return Some((sse(&event), (deltas, done)));
        }
        let last = done?.await.unwrap_or_else(|_| {
            ApiError::internal("the transcription stopped unexpectedly").body()
        });
        Some((sse(&last), (deltas, None)))
    });
    let body = Body::from_stream(stream::StreamExt::map(frames, Ok::<_, std::io::Error>));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

fn sse(event: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}
