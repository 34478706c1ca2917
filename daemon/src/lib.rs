//! `harkd`, Hark's streaming transcription daemon.
//!
//! One port serves the native protocol v1 (`/v1/listen`), OpenAI Realtime transcription
//! sessions (`/v1/realtime`), the OpenAI audio HTTP API ([`http`]: file uploads to
//! `/v1/audio/transcriptions`, run as streams like the sessions'), `/healthz`, `/metrics` and
//! the captions page. The model is loaded
//! once; the streaming engine ([`hark_streaming::engine`], named [`scheduler`] here) runs all
//! model work on its worker threads; every WebSocket is a
//! [`session`] task that only converts audio and translates events.
//!
//! ```text
//! socket ─▶ session task ── 16 kHz audio ─▶ engine worker (round-robin over its streams)
//!    ▲        (protocol,      (SPSC ring)        │ hark_streaming::Stream per session
//!    └──────── outbox) ◀──── events (channel) ───┘
//! ```

pub mod auth;
pub mod config;
pub mod http;
pub mod language;
pub mod listen;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod origin;
pub mod scheduler;
pub mod server;
pub mod session;
pub mod settings;
pub mod state;
pub mod systemd;
pub mod wyoming;

pub use config::{Cli, Config, ConfigError};
pub use server::{ServeError, run};
