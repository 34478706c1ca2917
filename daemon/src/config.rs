//! harkd's configuration: built-in defaults, then a TOML file, then environment variables,
//! then command-line flags (each later source wins).
//!
//! Every setting is one field of [`Config`]; the file uses the field names, the flags are the
//! same names in kebab case and the environment variables are `HARKD_` plus the name in upper
//! case (`max_sessions`, `--max-sessions`, `HARKD_MAX_SESSIONS`). `harkd --print-config` shows
//! the merged result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use hark_audio_io::{MAX_INPUT_RATE, MIN_INPUT_RATE};
use hark_model::{BackendKind, WeightsChoice};
use hark_protocol::{Encoding, Limits};
use serde::{Deserialize, Serialize};

use crate::language::language_name;

/// Default address: loopback only, so nothing is exposed until the operator decides to.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4275";

/// A configuration problem; harkd refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid setting `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

/// A Burn backend by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    Flex,
    Ndarray,
    Cuda,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for journald/Loki/Elastic pipelines).
    Json,
}

/// The audio limits advertised in `ready` (see the protocol README, §1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest binary audio frame, bytes.
    pub max_frame_bytes: u32,
    /// Most seconds of audio per session; 0 = unlimited.
    pub max_session_s: u32,
    /// Seconds without any frame before the session is closed.
    pub idle_timeout_s: u32,
    /// Accepted client sample rates (resampled to 16 kHz).
    pub sample_rates: Vec<u32>,
    /// Accepted encodings.
    pub encodings: Vec<Encoding>,
    /// Most interleaved channels.
    pub max_channels: u16,
    /// Seconds a dropped native session stays resumable; 0 turns resume off.
    pub resume_window_s: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            max_frame_bytes: l.max_frame_bytes,
            max_session_s: l.max_session_s,
            idle_timeout_s: l.idle_timeout_s,
            sample_rates: l.sample_rates,
            encodings: l.encodings,
            max_channels: l.max_channels,
            resume_window_s: 30,
        }
    }
}

impl LimitsConfig {
    /// The wire form.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_session_s: self.max_session_s,
            idle_timeout_s: self.idle_timeout_s,
            sample_rates: self.sample_rates.clone(),
            encodings: self.encodings.clone(),
            max_channels: self.max_channels,
            resume_window_s: self.resume_window_s,
        }
    }
}

/// Everything harkd can be told. See `daemon/README.md` for the file format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Address of the Wyoming protocol listener (Home Assistant's voice pipeline; port 10300
    /// by convention); absent: off. Wyoming has no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wyoming_listen: Option<SocketAddr>,
    /// Model directory or Hugging Face repo id (from the local cache); absent: the embedded
    /// default model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where the model runs.
    pub device: Device,
    /// CPU backend (`flex` by default); `cuda` follows from `device = "cuda"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendName>,
    /// Precision of matmul weights.
    pub weights: WeightsChoice,
    /// Bearer token clients must present; absent: no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the token (first line), e.g. a systemd credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Concurrent sessions; one more gets `server_busy`.
    pub max_sessions: usize,
    /// Inference worker threads; 0 = automatic (see `resolved_workers`).
    pub workers: usize,
    /// Most decoder passes of different streams run as one batched forward pass; 0 = automatic
    /// (16 on a GPU, off on a CPU), 1 = no batching.
    pub batch: usize,
    /// Language (BCP 47) used when a client does not name one.
    pub default_language: String,
    /// Token budget per hypothesis.
    pub max_new_tokens: usize,
    /// New audio between two partial hypotheses, ms.
    pub partial_interval_ms: u32,
    /// Most audio a stream processes per worker turn, ms.
    pub chunk_ms: u32,
    /// Backlog beyond which a stream skips partials (finals are never skipped), ms.
    pub shed_partials_after_ms: u32,
    /// Audio queued per stream before the client is slowed down, s.
    pub queue_s: u32,
    /// Largest upload to the OpenAI audio HTTP API (`/v1/audio/*`), MiB.
    pub max_upload_mb: u32,
    /// Lag that triggers a `lagging` warning, s.
    pub lag_warning_s: f64,
    /// A client that accepts no data for this long is disconnected, s.
    pub send_timeout_s: u32,
    /// How long shutdown waits for open sessions to be finalised, s.
    pub shutdown_grace_s: u32,
    /// `retry_after_s` sent with `server_busy`.
    pub busy_retry_after_s: u32,
    /// A connection must send its request headers within this long (also the keep-alive
    /// idle limit), s.
    pub header_timeout_s: u32,
    /// A native WebSocket must send `start` within this long of connecting, s.
    pub start_timeout_s: u32,
    /// Open connections in all (HTTP and WebSocket); 0 = automatic (see
    /// `resolved_max_connections`).
    pub max_connections: usize,
    /// Open connections from one peer address; 0 = automatic.
    pub max_connections_per_peer: usize,
    /// Browser origins besides the server's own allowed to open WebSockets
    /// (`https://host[:port]`, or `*` for any).
    pub allowed_origins: Vec<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Limits advertised to clients.
    pub limits: LimitsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            wyoming_listen: None,
            model: None,
            device: Device::Cpu,
            backend: None,
            weights: WeightsChoice::Auto,
            token: None,
            token_file: None,
            max_sessions: 64,
            workers: 0,
            batch: 0,
            default_language: "en".into(),
            max_new_tokens: 192,
            partial_interval_ms: 240,
            chunk_ms: 200,
            shed_partials_after_ms: 600,
            queue_s: 60,
            max_upload_mb: 100,
            lag_warning_s: 2.0,
            send_timeout_s: 10,
            shutdown_grace_s: 15,
            busy_retry_after_s: 5,
            header_timeout_s: 10,
            start_timeout_s: 10,
            max_connections: 0,
            max_connections_per_peer: 0,
            allowed_origins: Vec::new(),
            log_format: LogFormat::Text,
            limits: LimitsConfig::default(),
        }
    }
}

/// harkd: Hark's streaming transcription daemon.
///
/// Serves the native protocol at /v1/listen, OpenAI Realtime transcription sessions at
/// /v1/realtime, /healthz, /metrics and the captions page at /captions, all on one port.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "harkd", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "HARKD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the merged configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on [default: 127.0.0.1:4275].
    #[arg(long, env = "HARKD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Also serve the Wyoming protocol (Home Assistant) on this address, e.g. 0.0.0.0:10300
    /// [default: off].
    #[arg(long, env = "HARKD_WYOMING_LISTEN")]
    pub wyoming_listen: Option<SocketAddr>,
    /// Model directory or Hugging Face repo id; without it, the embedded default model.
    #[arg(long, env = "HARKD_MODEL")]
    pub model: Option<String>,
    /// Where the model runs [default: cpu].
    #[arg(long, value_enum, env = "HARKD_DEVICE")]
    pub device: Option<Device>,
    /// CPU backend [default: flex].
    #[arg(long, value_enum, env = "HARKD_BACKEND")]
    pub backend: Option<BackendName>,
    /// Precision of matmul weights: auto, f32, f16, bf16, q8, q4 [default: auto: q8 on the
    /// CPU and f16 on a GPU for large models, f32 for small ones].
    #[arg(long, env = "HARKD_WEIGHTS")]
    pub weights: Option<WeightsChoice>,
    /// Bearer token clients must present (prefer --token-file: flags are visible in ps).
    #[arg(long, env = "HARKD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File whose first line is the bearer token.
    #[arg(long, env = "HARKD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Concurrent sessions [default: 64].
    #[arg(long, env = "HARKD_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// Inference worker threads; 0 = one per two CPU cores (one on a GPU) [default: 0].
    #[arg(long, env = "HARKD_WORKERS")]
    pub workers: Option<usize>,
    /// Decoder passes of different streams batched into one forward pass; 0 = 16 on a GPU,
    /// off on a CPU; 1 = off [default: 0].
    #[arg(long, env = "HARKD_BATCH")]
    pub batch: Option<usize>,
    /// Language (BCP 47) when a client names none [default: en].
    #[arg(long, env = "HARKD_DEFAULT_LANGUAGE")]
    pub default_language: Option<String>,
    /// Token budget per hypothesis [default: 192].
    #[arg(long, env = "HARKD_MAX_NEW_TOKENS")]
    pub max_new_tokens: Option<usize>,
    /// Largest upload to /v1/audio/transcriptions and /v1/audio/translations, MiB
    /// [default: 100].
    #[arg(long, env = "HARKD_MAX_UPLOAD_MB")]
    pub max_upload_mb: Option<u32>,
    /// Seconds without any frame before a session is closed [default: 30].
    #[arg(long, env = "HARKD_IDLE_TIMEOUT_S")]
    pub idle_timeout_s: Option<u32>,
    /// Most seconds of audio per session, 0 = unlimited [default: 14400].
    #[arg(long, env = "HARKD_MAX_SESSION_S")]
    pub max_session_s: Option<u32>,
    /// Seconds a dropped session stays resumable, 0 = off [default: 30].
    #[arg(long, env = "HARKD_RESUME_WINDOW_S")]
    pub resume_window_s: Option<u32>,
    /// Largest binary audio frame in bytes [default: 262144].
    #[arg(long, env = "HARKD_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<u32>,
    /// Seconds a connection may take to send its request headers [default: 10].
    #[arg(long, env = "HARKD_HEADER_TIMEOUT_S")]
    pub header_timeout_s: Option<u32>,
    /// Seconds a native WebSocket may take to send `start` [default: 10].
    #[arg(long, env = "HARKD_START_TIMEOUT_S")]
    pub start_timeout_s: Option<u32>,
    /// Open connections in all; 0 = max(8 x max-sessions, 512), bounded by the open-file
    /// limit [default: 0].
    #[arg(long, env = "HARKD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open connections per peer address; 0 = max(2 x max-sessions, 128) [default: 0].
    #[arg(long, env = "HARKD_MAX_CONNECTIONS_PER_PEER")]
    pub max_connections_per_peer: Option<usize>,
    /// Browser origins besides harkd's own allowed to open WebSockets, comma-separated
    /// (https://host[:port], or * for any).
    #[arg(long, env = "HARKD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Log format [default: text].
    #[arg(long, value_enum, env = "HARKD_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// More log output (-v: debug, -vv: trace); HARKD_LOG takes an EnvFilter directive.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Config {
    /// Read a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parse TOML text.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Defaults, the file named by `cli.config`, then the flags and environment (which clap
    /// has already merged, flags first). The result is validated.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let mut cfg = match &cli.config {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        cfg.apply(cli);
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply(&mut self, cli: &Cli) {
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        set(&mut self.listen, &cli.listen);
        if cli.wyoming_listen.is_some() {
            self.wyoming_listen = cli.wyoming_listen;
        }
        if cli.model.is_some() {
            self.model = cli.model.clone();
        }
        set(&mut self.device, &cli.device);
        if cli.backend.is_some() {
            self.backend = cli.backend;
        }
        set(&mut self.weights, &cli.weights);
        // A token on the command line or in the environment replaces either form in the file.
        if cli.token.is_some() || cli.token_file.is_some() {
            self.token = cli.token.clone();
            self.token_file = cli.token_file.clone();
        }
        set(&mut self.max_sessions, &cli.max_sessions);
        set(&mut self.workers, &cli.workers);
        set(&mut self.batch, &cli.batch);
        set(&mut self.default_language, &cli.default_language);
        set(&mut self.max_new_tokens, &cli.max_new_tokens);
        set(&mut self.max_upload_mb, &cli.max_upload_mb);
        set(&mut self.limits.idle_timeout_s, &cli.idle_timeout_s);
        set(&mut self.limits.max_session_s, &cli.max_session_s);
        set(&mut self.limits.resume_window_s, &cli.resume_window_s);
        set(&mut self.limits.max_frame_bytes, &cli.max_frame_bytes);
        set(&mut self.header_timeout_s, &cli.header_timeout_s);
        set(&mut self.start_timeout_s, &cli.start_timeout_s);
        set(&mut self.max_connections, &cli.max_connections);
        set(&mut self.max_connections_per_peer, &cli.max_connections_per_peer);
        set(&mut self.allowed_origins, &cli.allowed_origins);
        set(&mut self.log_format, &cli.log_format);
    }

    /// Checks every value; harkd refuses to start on the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_sessions == 0 {
            return Err(invalid("max_sessions", "must be at least 1"));
        }
        if self.workers > 256 {
            return Err(invalid("workers", format!("{} is above 256", self.workers)));
        }
        if self.batch > 256 {
            return Err(invalid("batch", format!("{} is above 256", self.batch)));
        }
        if language_name(&self.default_language).is_none() {
            return Err(invalid(
                "default_language",
                format!(
                    "`{}` is not a language Hark knows (known: {})",
                    self.default_language,
                    crate::language::known_tags().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(invalid("token", "set either token or token_file, not both"));
        }
        if let Some(t) = &self.token
            && t.trim().is_empty()
        {
            return Err(invalid("token", "is empty"));
        }
        if !(1..=4096).contains(&self.max_new_tokens) {
            return Err(invalid("max_new_tokens", "must be 1..=4096"));
        }
        if !(40..=10_000).contains(&self.partial_interval_ms) {
            return Err(invalid("partial_interval_ms", "must be 40..=10000"));
        }
        if !(10..=5_000).contains(&self.chunk_ms) {
            return Err(invalid("chunk_ms", "must be 10..=5000"));
        }
        if !(1..=3_600).contains(&self.queue_s) {
            return Err(invalid("queue_s", "must be 1..=3600"));
        }
        if !(1..=4_096).contains(&self.max_upload_mb) {
            return Err(invalid("max_upload_mb", "must be 1..=4096"));
        }
        if !(self.lag_warning_s.is_finite() && self.lag_warning_s > 0.0) {
            return Err(invalid("lag_warning_s", "must be a positive number"));
        }
        if self.send_timeout_s == 0 {
            return Err(invalid("send_timeout_s", "must be at least 1"));
        }
        if !(1..=3_600).contains(&self.header_timeout_s) {
            return Err(invalid("header_timeout_s", "must be 1..=3600"));
        }
        if !(1..=3_600).contains(&self.start_timeout_s) {
            return Err(invalid("start_timeout_s", "must be 1..=3600"));
        }
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| crate::origin::parse_allowed(o).is_none())
        {
            return Err(invalid(
                "allowed_origins",
                format!("`{bad}` is not an origin (scheme://host[:port] without a path, or *)"),
            ));
        }
        let l = &self.limits;
        if !(64..=16 * 1024 * 1024).contains(&l.max_frame_bytes) {
            return Err(invalid(
                "limits.max_frame_bytes",
                "must be 64..=16777216 bytes",
            ));
        }
        if l.idle_timeout_s == 0 {
            return Err(invalid("limits.idle_timeout_s", "must be at least 1"));
        }
        if l.sample_rates.is_empty() {
            return Err(invalid("limits.sample_rates", "is empty"));
        }
        if let Some(r) = l
            .sample_rates
            .iter()
            .find(|r| !(MIN_INPUT_RATE..=MAX_INPUT_RATE).contains(*r))
        {
            return Err(invalid(
                "limits.sample_rates",
                format!("{r} Hz is outside {MIN_INPUT_RATE}..={MAX_INPUT_RATE}"),
            ));
        }
        if !l
            .sample_rates
            .contains(&hark_protocol::openai::DEFAULT_SAMPLE_RATE)
        {
            return Err(invalid(
                "limits.sample_rates",
                "must include 24000 (the OpenAI endpoint's default rate)",
            ));
        }
        if l.encodings.is_empty() {
            return Err(invalid("limits.encodings", "is empty"));
        }
        if l.max_channels == 0 || l.max_channels > 32 {
            return Err(invalid("limits.max_channels", "must be 1..=32"));
        }
        Ok(())
    }

    /// Open connections in all: the setting, or max(8 x max_sessions, 512).
    pub fn resolved_max_connections(&self) -> usize {
        match self.max_connections {
            0 => (8 * self.max_sessions).max(512),
            n => n,
        }
    }

    /// Open connections per peer address: the setting, or max(2 x max_sessions, 128); never
    /// more than the total.
    pub fn resolved_max_connections_per_peer(&self) -> usize {
        let n = match self.max_connections_per_peer {
            0 => (2 * self.max_sessions).max(128),
            n => n,
        };
        n.min(self.resolved_max_connections())
    }

    /// The token clients must present, reading `token_file` if that is how it is given.
    pub fn resolved_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(t) = &self.token {
            return Ok(Some(t.trim().to_owned()));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
            path: path.clone(),
            source,
        })?;
        let token = text.lines().next().unwrap_or_default().trim().to_owned();
        if token.is_empty() {
            return Err(invalid(
                "token_file",
                format!("{} is empty", path.display()),
            ));
        }
        Ok(Some(token))
    }

    /// The backend the settings name.
    pub fn backend_kind(&self) -> Result<BackendKind, ConfigError> {
        Ok(match (self.device, self.backend) {
            (Device::Cuda, None | Some(BackendName::Cuda)) => BackendKind::Cuda,
            (Device::Cuda, Some(other)) => {
                return Err(invalid(
                    "backend",
                    format!("device cuda cannot use the {other:?} backend"),
                ));
            }
            (Device::Cpu, None | Some(BackendName::Flex)) => BackendKind::Flex,
            (Device::Cpu, Some(BackendName::Ndarray)) => BackendKind::NdArray,
            (Device::Cpu, Some(BackendName::Cuda)) => BackendKind::Cuda,
        })
    }

    /// Worker threads: the setting, or one per two CPU cores on CPU backends (each worker's
    /// matmuls are themselves multi-threaded) and one on a GPU (kernels of one device run in
    /// order anyway, until cross-stream batching lands).
    /// Largest decoder batch; 1 = no batching. On a CPU the cores are already busy with one
    /// stream's matrix products, so batching buys little and adds waiting.
    pub fn resolved_batch(&self, kind: BackendKind) -> usize {
        match (self.batch, kind) {
            (0, BackendKind::Cuda) => 16,
            (0, _) => 1,
            (n, _) => n,
        }
    }

    pub fn resolved_workers(&self, kind: BackendKind) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        match kind {
            // Workers run their streams' encoders and hand decoder passes to the batcher; a few
            // keep the GPU fed while one waits on a batch.
            BackendKind::Cuda => 4,
            _ => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores / 2).max(1)
            }
        }
    }

    /// The merged configuration as TOML (the token is masked).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.token.is_some() {
            shown.token = Some("********".into());
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn file_values_and_unknown_keys() {
        let cfg = Config::from_toml(
            "listen = \"0.0.0.0:9000\"\nmax_sessions = 3\n[limits]\nidle_timeout_s = 5\n",
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.max_sessions, 3);
        assert_eq!(cfg.limits.idle_timeout_s, 5);
        assert_eq!(cfg.limits.max_channels, 2);
        let err = Config::from_toml("max_sesions = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_sesions"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let mut cfg = Config::from_toml("max_sessions = 3\ntoken = \"file\"\n").unwrap();
        let cli = Cli {
            max_sessions: Some(7),
            token_file: Some("/run/credentials/harkd/token".into()),
            idle_timeout_s: Some(9),
            ..Cli::default()
        };
        cfg.apply(&cli);
        assert_eq!(cfg.max_sessions, 7);
        assert_eq!(cfg.token, None);
        assert!(cfg.token_file.is_some());
        assert_eq!(cfg.limits.idle_timeout_s, 9);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: [(&str, &str); 6] = [
            ("max_sessions = 0", "max_sessions"),
            ("default_language = \"klingon\"", "default_language"),
            ("token = \"  \"", "token"),
            ("[limits]\nsample_rates = [16000]", "limits.sample_rates"),
            (
                "[limits]\nsample_rates = [4000, 24000]",
                "limits.sample_rates",
            ),
            ("[limits]\nidle_timeout_s = 0", "limits.idle_timeout_s"),
        ];
        for (text, field) in cases {
            let err = Config::from_toml(text).unwrap().validate().unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { field: f, .. } if f == field),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn token_file_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\nignored\n").unwrap();
        let cfg = Config {
            token_file: Some(path.clone()),
            ..Config::default()
        };
        assert_eq!(cfg.resolved_token().unwrap().as_deref(), Some("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        assert!(cfg.resolved_token().is_err());
    }

    #[test]
    fn printed_config_parses_back_and_hides_the_token() {
        let cfg = Config {
            token: Some("hunter2".into()),
            ..Config::default()
        };
        let text = cfg.to_toml();
        assert!(!text.contains("hunter2"));
        let back = Config::from_toml(&text).unwrap();
        assert_eq!(back.max_sessions, cfg.max_sessions);
        assert_eq!(back.limits, cfg.limits);
    }
}
