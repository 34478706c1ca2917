//! The Wyoming protocol listener (Home Assistant's voice pipeline), off unless `wyoming_listen`
//! is set.
//!
//! Wyoming is JSON-lines plus raw PCM over plain TCP ([`event`]); harkd serves it as a
//! speech-to-text program ([`info`]). Each connection is a [`session`] that holds one of the
//! daemon's session slots; each of its transcriptions ([`transcription`]) runs its audio
//! ([`pcm`], converted to 16 kHz mono) as a stream on the same scheduler as the WebSocket
//! endpoints. The protocol has no authentication: keep the port on a trusted network.

pub mod event;
mod info;
mod pcm;
mod session;
mod transcription;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::server::ServeError;
use crate::state::AppState;

/// The port Wyoming speech-to-text servers listen on by convention (wyoming-faster-whisper).
pub const DEFAULT_PORT: u16 = 10300;

/// Bind the listener when `addr` is set (at startup, so a taken port stops harkd at once).
pub async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, ServeError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "wyoming protocol on tcp://{bound}");
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "the Wyoming protocol has no authentication: anyone who can reach {bound} can use it"
        );
    }
    Ok(Some(listener))
}

/// Accept connections until the daemon begins shutting down; open connections then finish
/// what they are transcribing and close.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) {
    let shutdown = state.shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                // Counted before the task starts, so shutdown waits for it.
                let guard = state.track_session();
                tokio::spawn(session::serve(socket, peer, state.clone(), guard));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("wyoming: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
