//! Gemma 4 speech-to-text in Burn.
//!
//! The audio→text path of Google's Gemma 4 (USM conformer audio encoder + Gemma 4 decoder),
//! read from a Hugging Face checkpoint and checked stage by stage against the transformers
//! reference. Generic over the Burn backend.
//!
//! ```text
//! 16 kHz samples ─▶ features (log-mel) ─▶ encoder (conformer, embed_audio) ─┐
//!                                  prompt (chat template, tokenizer) ─┴▶ decoder ─▶ ids ─▶ text
//! ```
//!
//! `speech` ties the stages together (`SpeechModel`: load, transcribe, greedy decoding);
//! `nn`, `weights` and `checkpoint` are the building blocks every stage loads through.

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod decoder;
#[cfg(feature = "download")]
pub mod download;
pub mod embedded;
pub mod encoder;
pub mod error;
pub mod features;
pub mod gguf;
pub mod hub;
pub mod language;
pub mod nn;
pub mod packed_cache;
pub mod prompt;
pub mod quant;
pub mod speech;
pub mod tokenizer;
pub mod weights;

pub use backend::{BackendKind, BackendTask, run_on};
pub use checkpoint::{Checkpoint, EmbeddedCheckpoint};
pub use error::{LoadError, ModelError};
pub use prompt::Task;
pub use speech::{GenerateOptions, SAMPLE_RATE, SpeechModel, Transcript};
pub use weights::{Kernels, WeightDtype, Weights, WeightsChoice};
