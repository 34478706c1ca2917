//! The OpenAI audio HTTP API: `POST /v1/audio/transcriptions`, `POST /v1/audio/translations`
//! (multipart uploads, answered whole or as Server-Sent Events) and `GET /v1/models`.
//!
//! ```text
//! upload ─▶ upload (size limit) ─▶ multipart ─▶ form ─▶ decode (any format) ─▶ 16 kHz
//!    ─▶ job: a scheduler stream like a WebSocket session's ─▶ finals ─▶ format (json, srt, ...)
//!                                                          └▶ deltas ─▶ SSE (stream=true)
//! ```
//!
//! Every refusal is an OpenAI-shaped [`errors::ApiError`]; the bearer token is the one the
//! WebSocket endpoints take.

pub mod errors;
pub mod form;
pub mod format;
pub mod job;
pub mod models;
pub mod multipart;
pub mod transcriptions;
pub mod upload;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics::describe_counter;

use crate::auth::authorized;
use crate::state::AppState;
use errors::ApiError;

/// Requests to the HTTP API, by endpoint and status code.
pub const HTTP_REQUESTS: &str = "harkd_http_requests_total";

/// The routes of the HTTP API.
pub fn routes() -> Router<Arc<AppState>> {
    models::mark_start();
    describe_counter!(
        HTTP_REQUESTS,
        "Requests to the OpenAI audio HTTP API, by endpoint and status code."
    );
    Router::new()
        .route(
            "/v1/audio/transcriptions",
            post(transcriptions::transcriptions),
        )
        .route("/v1/audio/translations", post(transcriptions::translations))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::show))
}

/// The checks every request passes first: the token, then whether the server can serve.
fn guard(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    let query = Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default();
    if !authorized(
        state.token.as_deref(),
        headers,
        query.get("token").map(String::as_str),
    ) {
        return Err(ApiError::unauthorized());
    }
    let retry = state.config.busy_retry_after_s;
    if state.is_shutting_down() {
        return Err(ApiError::unavailable(
            "shutting_down",
            "the server is stopping",
            retry,
        ));
    }
    if state.model().is_none() {
        return Err(ApiError::unavailable(
            "model_loading",
            "the model is still loading",
            retry,
        ));
    }
    Ok(())
}

/// Count the request and turn the outcome into the response.
fn record(endpoint: &'static str, result: Result<Response, ApiError>) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(err) => {
            metrics::counter!(crate::metrics::ERRORS, "code" => err.code).increment(1);
            if err.status.is_server_error() {
                tracing::warn!(endpoint, "{err}");
            } else {
                tracing::info!(endpoint, "refused: {err}");
            }
            err.into_response()
        }
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "endpoint" => endpoint, "status" => status).increment(1);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{HeaderValue, StatusCode, header};

    async fn error_of(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Before the model is loaded: the token is checked first, then 503 with `Retry-After`.
    #[tokio::test]
    async fn token_then_model_loading() {
        let state = Arc::new(AppState::new(
            crate::Config::default(),
            Some("s3cret".into()),
            None,
        ));
        let uri: Uri = "/v1/audio/transcriptions".parse().unwrap();
        let call = |auth: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(auth));
            transcriptions::transcriptions(
                State(state.clone()),
                headers,
                uri.clone(),
                Body::empty(),
            )
        };
        let (status, body) = error_of(call("Bearer wrong").await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_api_key");
        let loading = call("Bearer s3cret").await;
        assert_eq!(loading.headers()[header::RETRY_AFTER], "5");
        let (status, body) = error_of(loading).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "model_loading");
        assert_eq!(body["error"]["type"], "server_error");

        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        let models = models::list(State(state.clone()), headers, "/v1/models".parse().unwrap());
        let (status, body) = error_of(models.await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "model_loading");

        state.begin_shutdown();
        let (status, body) = error_of(call("Bearer s3cret").await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "shutting_down");
    }
}
