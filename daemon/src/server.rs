//! The HTTP side: routes, the listener, model loading in the background, graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hark_protocol::openai::{MAX_EVENT_BYTES, REALTIME_PATH};
use hark_protocol::{LISTEN_PATH, MAX_CONTROL_BYTES};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::authorized;
use crate::config::{Config, ConfigError};
use crate::listener::{self, ListenerSettings};
use crate::metrics as m;
use crate::model::ModelLoadError;
use crate::session;
use crate::state::AppState;
use crate::systemd;

mod web {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// harkd could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot resolve the listen address {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Model(#[from] ModelLoadError),
    #[error("the model loader stopped unexpectedly")]
    LoaderPanicked,
}

/// Query parameters the WebSocket endpoints read.
type QueryMap = Query<HashMap<String, String>>;

/// The routes of harkd.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .route(LISTEN_PATH, get(listen))
        .route(REALTIME_PATH, get(realtime))
        .merge(crate::http::routes())
        .fallback(get(asset))
        .with_state(state)
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let (status, phase) = if state.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping")
    } else if state.model().is_some() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading")
    };
    let body = json!({
        "status": phase,
        "model": state.model().map(|m| m.name.clone()),
        "backend": state.model().map(|m| m.backend.name()),
        "workers": state.model().map(|m| m.scheduler.workers()),
        "sessions": state.sessions_in_use(),
        "max_sessions": state.config.max_sessions,
        "version": env!("CARGO_PKG_VERSION"),
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): QueryMap,
) -> Response {
    if !authorized(
        state.token.as_deref(),
        &headers,
        query.get("token").map(String::as_str),
    ) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response();
    }
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response();
    };
    if let Some(model) = state.model() {
        m::record_workers(&model.scheduler);
    }
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
}

async fn listen(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): QueryMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = foreign_origin(&state, &headers) {
        return refused;
    }
    let ok = authorized(
        state.token.as_deref(),
        &headers,
        query.get("token").map(String::as_str),
    );
    // Frames up to twice the advertised limit reach the session, which answers them with a
    // clear `frame_too_large`; anything larger is cut off by the WebSocket layer itself.
    let max = (state.limits.max_frame_bytes as usize).max(MAX_CONTROL_BYTES) * 2 + 64 * 1024;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session::native::serve(socket, state, ok))
}

async fn realtime(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): QueryMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = foreign_origin(&state, &headers) {
        return refused;
    }
    let ok = authorized(
        state.token.as_deref(),
        &headers,
        query.get("token").map(String::as_str),
    );
    let beta = headers
        .get_all("openai-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == "realtime=v1"));
    // Browser clients offer `realtime` (with their key as a second subprotocol); a server
    // that selects none of the offered protocols makes the browser fail the connection.
    let max = MAX_EVENT_BYTES + 1024 * 1024;
    ws.protocols(["realtime"])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session::openai::serve(socket, state, ok, beta))
}

/// `403` for a WebSocket a browser opens from a page harkd does not allow (see
/// [`crate::origin`]); `None` when it may go on.
fn foreign_origin(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let origin = text(header::ORIGIN);
    if state.origins.allows(origin, text(header::HOST)) {
        return None;
    }
    let origin = origin.unwrap_or_default();
    tracing::info!(origin, "WebSocket from a foreign web page refused");
    metrics::counter!(m::SESSIONS_REFUSED, "reason" => "forbidden_origin").increment(1);
    Some(
        (
            StatusCode::FORBIDDEN,
            format!(
                "WebSockets from pages at {origin} are not allowed; add it to harkd's allowed_origins\n"
            ),
        )
            .into_response(),
    )
}

/// Files of `web/`; `/captions` is `captions.html`.
async fn asset(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let name = if path == "captions" {
        "captions.html"
    } else {
        path
    };
    match web::ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => ([(header::CONTENT_TYPE, *kind)], *bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Run harkd until SIGTERM/SIGINT: bind, load the model in the background (`/healthz`
/// answers 503 meanwhile), serve, then finalise open sessions and stop.
pub async fn run(config: Config, metrics: Option<PrometheusHandle>) -> Result<(), ServeError> {
    let token = config.resolved_token()?;
    let addr = resolve_listen(&config.listen).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "listening on {bound}");
    if token.is_none() && !bound.ip().is_loopback() {
        tracing::warn!("listening on {bound} without a token: anyone who can reach it can use it");
    }
    let wyoming = crate::wyoming::bind(config.wyoming_listen).await?;
    let state = Arc::new(AppState::new(config, token, metrics));
    if let Some(listener) = wyoming {
        tokio::spawn(crate::wyoming::serve(listener, state.clone()));
    }
    metrics::gauge!(m::SESSION_SLOTS).set(state.config.max_sessions as f64);
    metrics::gauge!(m::MODEL_LOADED).set(0.0);
    systemd::status("loading the model");

    let mut loader = tokio::spawn(load_model(state.clone(), bound));
    let signals = tokio::spawn(watch_signals(state.clone()));
    let sampler = tokio::spawn(m::sample_real_time_factor(
        state.clone(),
        Duration::from_secs(5),
    ));
    let watchdog = tokio::spawn(systemd::watchdog());

    listener::serve(
        listener,
        router(state.clone()),
        listener_settings(&state.config),
        state.shutdown_signal(),
    )
    .await;

    // Sessions watch the same signal: each finalises its open segment, sends `shutting_down`
    // and `closed`, and closes.
    state.parked.clear();
    let grace = Duration::from_secs(u64::from(state.config.shutdown_grace_s) + 5);
    if !state.wait_sessions(grace).await {
        tracing::warn!("some sessions did not finish within the shutdown grace period");
    }
    signals.abort();
    sampler.abort();
    watchdog.abort();
    // A loader that failed began the shutdown itself and is returning its error (it may not
    // have finished returning yet); one still loading (SIGTERM during the load) is abandoned.
    let loaded = match tokio::time::timeout(Duration::from_millis(500), &mut loader).await {
        Ok(joined) => joined.map_err(|_| ServeError::LoaderPanicked)?,
        Err(_) => {
            loader.abort();
            Ok(())
        }
    };
    tracing::info!("stopped");
    loaded
}

/// The accept loop's settings; the connection cap is kept below what file descriptors allow.
fn listener_settings(config: &Config) -> ListenerSettings {
    let wanted = config.resolved_max_connections();
    let max_connections = match listener::fd_budget() {
        Some(budget) if budget < wanted => {
            if config.max_connections > 0 {
                tracing::warn!(
                    "max_connections = {wanted} is more than the open-file limit allows; using {budget} (raise LimitNOFILE)"
                );
            }
            budget
        }
        _ => wanted,
    };
    ListenerSettings {
        header_timeout: Duration::from_secs(u64::from(config.header_timeout_s)),
        max_connections,
        max_per_peer: config
            .resolved_max_connections_per_peer()
            .min(max_connections),
        retry_after_s: config.busy_retry_after_s,
        shutdown_grace: Duration::from_secs(u64::from(config.shutdown_grace_s)),
    }
}

/// The first address a `listen` setting resolves to (host names are looked up).
async fn resolve_listen(listen: &crate::config::ListenAddr) -> Result<SocketAddr, ServeError> {
    let resolved = tokio::net::lookup_host(listen.bind_target()).await;
    resolved
        .map_err(|e| e.to_string())
        .and_then(|mut addrs| addrs.next().ok_or_else(|| "no address".to_string()))
        .map_err(|reason| ServeError::Resolve {
            addr: listen.to_string(),
            reason,
        })
}

/// Load the model off the async threads; on failure, stop the server.
async fn load_model(state: Arc<AppState>, bound: SocketAddr) -> Result<(), ServeError> {
    let config = state.config.clone();
    let result = tokio::task::spawn_blocking(move || crate::model::load(&config)).await;
    match result {
        Ok(Ok(model)) => {
            let line = format!(
                "ready: {} on {} ({} worker(s)), listening on {bound}",
                model.name,
                model.backend,
                model.scheduler.workers()
            );
            state.set_model(model);
            metrics::gauge!(m::MODEL_LOADED).set(1.0);
            tracing::info!("{line}");
            systemd::ready(&line);
            Ok(())
        }
        Ok(Err(e)) => {
            // Returned to main, which prints it: logging it here too would tell it twice.
            state.begin_shutdown();
            Err(e.into())
        }
        Err(_) => {
            state.begin_shutdown();
            Err(ServeError::LoaderPanicked)
        }
    }
}

async fn watch_signals(state: Arc<AppState>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop harkd with SIGKILL");
        return;
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{which}: finalising open sessions and stopping");
    systemd::stopping();
    state.begin_shutdown();
}
