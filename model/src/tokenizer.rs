//! The checkpoint's `tokenizer.json`, through the `tokenizers` crate.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::config::ModelConfig;
use crate::error::{LoadError, ModelError};

/// Token strings of the Gemma 4 chat format. Their ids come from the tokenizer, never from here.
pub mod special {
    pub const BOS: &str = "<bos>";
    pub const TURN_OPEN: &str = "<|turn>";
    pub const TURN_CLOSE: &str = "<turn|>";
    pub const AUDIO_BEGIN: &str = "<|audio>";
    pub const AUDIO_PLACEHOLDER: &str = "<|audio|>";
    pub const AUDIO_END: &str = "<audio|>";
    pub const CHANNEL_OPEN: &str = "<|channel>";
    pub const CHANNEL_CLOSE: &str = "<channel|>";
}

/// Text side of the model: encoding prompts, decoding generated ids.
pub struct TextTokenizer {
    inner: Tokenizer,
    vocab_size: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

impl TextTokenizer {
    pub fn from_file(path: &Path, config: &ModelConfig) -> Result<Self, LoadError> {
        if !path.exists() {
            return Err(LoadError::Tokenizer {
                path: path.into(),
                detail: "file not found".into(),
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| LoadError::Tokenizer {
            path: path.into(),
            detail: e.to_string(),
        })?;
        Self::checked(inner, path, config)
    }

    pub fn from_bytes(bytes: &[u8], label: &Path, config: &ModelConfig) -> Result<Self, LoadError> {
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| LoadError::Tokenizer {
            path: label.into(),
            detail: e.to_string(),
        })?;
        Self::checked(inner, label, config)
    }

    /// A tokenizer already parsed (e.g. to read ids before the config exists).
    pub(crate) fn from_parsed(
        inner: Tokenizer,
        label: &Path,
        config: &ModelConfig,
    ) -> Result<Self, LoadError> {
        Self::checked(inner, label, config)
    }

    /// The tokenizer and config.json must agree on the audio ids and know the chat markers.
    fn checked(inner: Tokenizer, path: &Path, config: &ModelConfig) -> Result<Self, LoadError> {
        let bad = |detail: String| LoadError::Tokenizer {
            path: path.into(),
            detail,
        };
        let this = Self {
            vocab_size: inner.get_vocab_size(true),
            inner,
        };
        for (token, want) in [
            (special::AUDIO_BEGIN, config.audio_tokens.begin),
            (special::AUDIO_PLACEHOLDER, config.audio_tokens.placeholder),
            (special::AUDIO_END, config.audio_tokens.end),
        ] {
            match this.token_id(token) {
                Some(id) if id == want => {}
                Some(id) => {
                    return Err(bad(format!(
                        "{token} is id {id} but config.json says {want}"
                    )));
                }
                None => return Err(bad(format!("{token} is not in the vocabulary"))),
            }
        }
        for token in [special::BOS, special::TURN_OPEN, special::TURN_CLOSE] {
            if this.token_id(token).is_none() {
                return Err(bad(format!("{token} is not in the vocabulary")));
            }
        }
        if this.vocab_size > config.text.vocab_size {
            return Err(bad(format!(
                "{} tokens but the model's vocabulary has {} rows",
                this.vocab_size, config.text.vocab_size
            )));
        }
        Ok(this)
    }

    /// Id of a token string, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encode text; special-token strings in it (`<|turn>`, …) become their ids. Nothing is
    /// added around the text (the chat template writes `<bos>` itself).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decode ids to text, dropping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}
