//! harkd's configuration: built-in defaults, then a TOML file, then environment variables,
//! then command-line flags (each later source wins).
//!
//! Every setting is one field of [`Config`] (or of a section such as `limits`), declared once
//! with its doc comment and default; [`crate::settings`] derives the rest from the struct: the
//! file key, the flag (the name in kebab case) and the variable (`HARKD_` plus the name in upper
//! case), as in `max_sessions`, `--max-sessions`, `HARKD_MAX_SESSIONS`. To add a setting, add a
//! field here, its default in `Default`, and its checks in `validate`. `harkd --print-config`
//! shows the merged result with every setting and its documentation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use hark_audio_io::{MAX_INPUT_RATE, MIN_INPUT_RATE};
pub use hark_model::backend::{BackendName, Device};
use hark_model::{BackendKind, WeightsChoice};
use hark_protocol::Limits;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::language::language_name;
pub use crate::listen::ListenAddr;
use crate::settings::{self, SettingArgs};

/// A configuration problem; harkd refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid value for {flag} / {env}: {reason}")]
    Value {
        flag: String,
        env: String,
        reason: String,
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

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for journald/Loki/Elastic pipelines).
    Json,
}

/// Everything harkd can be told. See `daemon/README.md` for the file format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on: host[:port], a name or an address (port 4275 when left out).
    pub listen: ListenAddr,
    /// Address of the Wyoming protocol listener (Home Assistant's voice pipeline; port 10300
    /// by convention); absent: off. Wyoming has no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub wyoming_listen: Option<SocketAddr>,
    /// Model directory, .gguf file or Hugging Face repo id (from the local cache); not set: the
    /// embedded demonstration model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where the model runs.
    pub device: Device,
    /// CPU backend (`flex` by default); `cuda` follows from `device = "cuda"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendName>,
    /// Precision of matmul weights: auto is q8 on the CPU and f16 on a GPU for large models,
    /// f32 for small ones.
    pub weights: WeightsChoice,
    /// Bearer token clients must present; absent: no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the token (first line), e.g. a systemd credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Concurrent sessions; one more gets `server_busy`.
    pub max_sessions: usize,
    /// Inference worker threads; 0 = automatic: one per two CPU cores, 4 on a GPU.
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
    /// Open connections in all (HTTP and WebSocket); 0 = automatic: max(8 x max_sessions,
    /// 512), kept below the open-file limit.
    pub max_connections: usize,
    /// Open connections from one peer address; 0 = automatic: max(2 x max_sessions, 128).
    pub max_connections_per_peer: usize,
    /// Browser origins besides the server's own allowed to open WebSockets
    /// (`https://host[:port]`, or `*` for any).
    pub allowed_origins: Vec<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Limits advertised to clients in `ready` (protocol README, §1.3).
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ListenAddr::default(),
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
            // Unlike the protocol's default, harkd keeps dropped sessions resumable for 30 s.
            limits: Limits {
                resume_window_s: 30,
                ..Limits::default()
            },
        }
    }
}

/// harkd: Hark's streaming transcription daemon.
///
/// Serves the native protocol at /v1/listen, OpenAI Realtime transcription sessions at
/// /v1/realtime, the OpenAI audio HTTP API at /v1/audio/transcriptions, /v1/audio/translations
/// and /v1/models, /healthz, /metrics and the captions page at /captions, all on one port.
/// Every setting is a config file key, a flag and a HARKD_<NAME> variable; flags beat
/// variables, variables beat the file, the file beats the defaults.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "harkd", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "HARKD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the merged configuration as TOML (every setting, documented) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// More log output (-v: debug, -vv: trace); HARKD_LOG takes an EnvFilter directive.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub settings: SettingArgs,
}

impl Config {
    /// Read a TOML file (settings it leaves out keep their defaults).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::merge(Some((path, &text)), &[])
    }

    /// Parse TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::merge(Some((Path::new("(text)"), text)), &[])
    }

    /// Defaults, the file named by `cli.config`, then the variables and flags (which clap has
    /// already merged, flags first). The result is validated.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let text = match &cli.config {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let file = cli.config.as_deref().zip(text.as_deref());
        let cfg = Self::merge(file, &cli.settings.values)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The defaults, overlaid by the file's keys, overlaid by the given settings.
    pub fn merge(
        file: Option<(&Path, &str)>,
        given: &[(&'static settings::Setting, String)],
    ) -> Result<Config, ConfigError> {
        let defaults = Config::default().to_table()?;
        let mut table = defaults.clone();
        // Each value is checked alone on the defaults first, so an error names its setting.
        let mut set = |setting: &settings::Setting, value: toml::Value| -> Result<(), String> {
            let mut alone = defaults.clone();
            settings::insert(&mut alone, setting, value.clone());
            toml::Value::Table(alone)
                .try_into::<Config>()
                .map_err(|e| e.message().to_string())?;
            settings::insert(&mut table, setting, value);
            Ok(())
        };
        if let Some((path, text)) = file {
            let parse = |reason: String| ConfigError::Parse {
                path: path.to_owned(),
                reason,
            };
            let from_file: toml::Table = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
            for (key, value) in from_file {
                let entries = match value {
                    toml::Value::Table(values) if settings::sections().contains(&key.as_str()) => {
                        values
                            .into_iter()
                            .map(|(name, v)| (format!("{key}.{name}"), v))
                            .collect()
                    }
                    value => vec![(key, value)],
                };
                for (key, value) in entries {
                    let setting = settings::find(&key)
                        .ok_or_else(|| parse(format!("unknown setting `{key}`")))?;
                    set(setting, value).map_err(|reason| parse(format!("`{key}`: {reason}")))?;
                }
            }
        }
        let token_given = given
            .iter()
            .any(|(s, _)| s.key == "token" || s.key == "token_file");
        for (setting, raw) in given {
            let bad = |reason: String| ConfigError::Value {
                flag: format!("--{}", setting.flag),
                env: setting.env.clone(),
                reason,
            };
            let value = setting.kind.parse(raw).map_err(bad)?;
            set(setting, value).map_err(bad)?;
        }
        // A token given as a flag or variable replaces either form in the file.
        if token_given {
            for key in ["token", "token_file"] {
                if !given.iter().any(|(s, _)| s.key == key) {
                    settings::remove(&mut table, settings::find(key).expect("token settings"));
                }
            }
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e| invalid("config", e.to_string()))
    }

    /// This configuration as a TOML table (unset settings are absent).
    pub fn to_table(&self) -> Result<toml::Table, ConfigError> {
        toml::Table::try_from(self).map_err(|e| invalid("config", e.to_string()))
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
        BackendKind::select(self.device, self.backend)
            .map_err(|e| invalid("backend", e.to_string()))
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

    /// The merged configuration as TOML: every setting under its documentation, unset ones
    /// commented out (the token is masked).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.token.is_some() {
            shown.token = Some("********".into());
        }
        let table = match shown.to_table() {
            Ok(t) => t,
            Err(e) => return format!("# cannot render: {e}\n"),
        };
        let mut out = String::from(
            "# harkd configuration: defaults < this file < HARKD_<NAME> variables < --flags\n",
        );
        let groups = std::iter::once(None).chain(settings::sections().into_iter().map(Some));
        for group in groups {
            if let Some(section) = group {
                out.push_str(&format!("\n[{section}]\n"));
            }
            for s in settings::all()
                .iter()
                .filter(|s| s.section.as_deref() == group)
            {
                out.push('\n');
                for line in s.doc.lines() {
                    out.push_str(&format!("# {line}\n"));
                }
                match settings::lookup(&table, s) {
                    Some(value) => out.push_str(&format!("{} = {value}\n", s.name)),
                    None => out.push_str(&format!("# {} = (not set)\n", s.name)),
                }
            }
        }
        out
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
        let err = Config::from_toml("[limits]\nidle_timeout_ss = 3\n").unwrap_err();
        assert!(err.to_string().contains("idle_timeout_ss"), "{err}");
        assert_eq!(cfg.max_sessions, 3);
        assert_eq!(cfg.limits.idle_timeout_s, 5);
        assert_eq!(cfg.limits.max_channels, 2);
        let err = Config::from_toml("max_sesions = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_sesions"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let given = |key: &str, raw: &str| (settings::find(key).unwrap(), raw.to_string());
        let cfg = Config::merge(
            Some((Path::new("f.toml"), "max_sessions = 3\ntoken = \"file\"\n")),
            &[
                given("max_sessions", "7"),
                given("token_file", "/run/credentials/harkd/token"),
                given("limits.idle_timeout_s", "9"),
            ],
        )
        .unwrap();
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
