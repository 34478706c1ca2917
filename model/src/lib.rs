//! Gemma 4 speech-to-text in Burn.
//!
//! The audio→text path of Google's Gemma 4 (USM conformer audio encoder + Gemma 4 decoder),
//! read from a Hugging Face checkpoint and checked stage by stage against the transformers
//! reference. Generic over the Burn backend.
//!
//! ```text
//! 16 kHz samples ─▶ features (log-mel) ─▶ audio (encoder, embed_audio) ─┐
//!                                      prompt (chat template, tokenizer) ┴▶ text (decoder) ─▶ ids ─▶ text
//! ```

pub mod audio;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod embedded;
pub mod error;
pub mod features;
pub mod gguf;
pub mod hub;
pub mod model;
pub mod nn;
pub mod packed_cache;
pub mod prompt;
pub mod quant;
pub mod synthetic;
pub mod text;
pub mod tokenizer;
pub mod weights;

pub use backend::{BackendKind, BackendTask, run_on};
pub use checkpoint::{Checkpoint, EmbeddedCheckpoint};
pub use error::{LoadError, ModelError};
pub use model::{GenerateOptions, SAMPLE_RATE, SpeechModel, Transcript};
pub use prompt::Task;
pub use weights::{Kernels, WeightDtype, Weights, WeightsChoice};
