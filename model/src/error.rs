//! Typed errors of the model crate.

use std::path::PathBuf;

use thiserror::Error;

/// A configuration file is missing, malformed or describes something Hark cannot run.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported by Hark: {0}")]
    Unsupported(String),
}

/// A tensor the model needs is absent, or present with the wrong shape or type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorProblem {
    pub name: String,
    pub detail: String,
}

/// Everything wrong with a checkpoint's tensors, gathered in one pass so the user sees the
/// whole list at once rather than one failure per attempt.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WeightReport {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub wrong: Vec<TensorProblem>,
}

impl WeightReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong.is_empty()
    }
}

impl std::fmt::Display for WeightReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 20;
        let list = |f: &mut std::fmt::Formatter<'_>, title: &str, items: Vec<String>| {
            if items.is_empty() {
                return Ok(());
            }
            writeln!(f, "  {title} ({}):", items.len())?;
            for item in items.iter().take(SHOW) {
                writeln!(f, "    {item}")?;
            }
            if items.len() > SHOW {
                writeln!(f, "    … and {} more", items.len() - SHOW)?;
            }
            Ok(())
        };
        list(f, "missing tensors", self.missing.clone())?;
        list(
            f,
            "wrong tensors",
            self.wrong
                .iter()
                .map(|p| format!("{}: {}", p.name, p.detail))
                .collect(),
        )?;
        list(f, "unexpected tensors", self.unexpected.clone())
    }
}

/// Loading a checkpoint failed.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("model directory {0} does not exist")]
    NoSuchDir(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("{path}: not a valid safetensors file: {detail}")]
    Safetensors { path: PathBuf, detail: String },
    /// A GGUF file is damaged or not in a layout Hark reads.
    #[error("{path}: {problem}")]
    Gguf {
        path: PathBuf,
        #[source]
        problem: crate::gguf::GgufProblem,
    },
    /// Natively quantized weights (GPTQ/AutoRound, GGUF blocks) Hark cannot serve as stored.
    #[error("{path}: {detail}")]
    Quantized { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Tokenizer { path: PathBuf, detail: String },
    #[error("the checkpoint does not match its config.json:\n{0}")]
    Weights(WeightReport),
    #[error("{0}")]
    Other(String),
}

/// Running the model failed.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("no audio: the input is empty")]
    EmptyAudio,
    #[error("audio span too short: {samples} samples give no audio token (need at least 161)")]
    TooShort { samples: usize },
    #[error("prompt of {len} tokens exceeds the model's {max} positions")]
    TooLong { len: usize, max: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Invalid(String),
}
