//! systemd integration: readiness, status, stopping and the watchdog (`Type=notify`).
//!
//! Every call is a no-op when harkd does not run under systemd (`NOTIFY_SOCKET` unset).

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// The model is loaded and the socket bound: sessions are accepted.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A free-form status line (`systemctl status harkd`).
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Graceful shutdown began.
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("finalising open sessions"),
    ]);
}

/// Ping the watchdog at half its period while the runtime is alive, when `WatchdogSec=` is
/// set. A wedged runtime stops pinging and systemd restarts the service.
pub async fn watchdog() {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval((period / 2).max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}
