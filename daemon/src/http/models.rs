//! `GET /v1/models` and `GET /v1/models/{id}`: the one loaded model, in OpenAI's shape.
//!
//! The transcription endpoints accept any `model` name (clients often hard-code `whisper-1`);
//! this list tells a client which model actually answers.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::errors::ApiError;
use super::{guard, record};
use crate::state::AppState;

const ENDPOINT: &str = "models";

/// When the routes were built (about when harkd started): the models' `created`.
static STARTED: OnceLock<u64> = OnceLock::new();

/// Note the start time (called when the routes are built).
pub fn mark_start() {
    STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
}

fn model_object(name: &str) -> serde_json::Value {
    json!({
        "id": name,
        "object": "model",
        "created": STARTED.get().copied().unwrap_or(0),
        "owned_by": "hark",
    })
}

/// `GET /v1/models`.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Response {
    let result = guard(&state, &headers, &uri).and_then(|()| {
        let name = loaded_name(&state)?;
        Ok(axum::Json(json!({"object": "list", "data": [model_object(name)]})).into_response())
    });
    record(ENDPOINT, result)
}

/// `GET /v1/models/{id}`: the loaded model, or 404 for any other id.
pub async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let result = guard(&state, &headers, &uri).and_then(|()| {
        let name = loaded_name(&state)?;
        if name != id {
            return Err(ApiError::model_not_found(&id));
        }
        Ok(axum::Json(model_object(name)).into_response())
    });
    record(ENDPOINT, result)
}

/// The loaded model's name ([`guard`] has checked that there is one).
fn loaded_name(state: &AppState) -> Result<&str, ApiError> {
    state
        .model()
        .map(|m| m.name.as_str())
        .ok_or_else(|| ApiError::internal("the model is not loaded"))
}
