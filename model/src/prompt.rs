//! The E2B chat prompt around an audio span, and the audio-token arithmetic.
//!
//! The chat template renders one user turn holding the audio (first, as the model card
//! recommends) and the instruction, then the generation prompt (docs/model.md §5.2):
//! `<bos><|turn>user\n<|audio|>{instruction}<turn|>\n<|turn>model\n`; the processor then
//! expands the placeholder to `<|audio>` + `<|audio|>`×N + `<audio|>`. Hark tokenizes the
//! rendered string with the checkpoint's tokenizer and expands the placeholder the same way.

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::features::MelSpec;
use crate::tokenizer::{TextTokenizer, special};

/// What the model is asked to do with the audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Speech recognition in `language` (the official ASR instruction).
    Transcribe { language: String },
    /// Transcribe in `source`, then translate into `target` (the official AST instruction).
    Translate { source: String, target: String },
    /// A caller-written instruction (`hark dump --prompt`).
    Custom(String),
}

impl Default for Task {
    fn default() -> Self {
        Task::Transcribe {
            language: "English".into(),
        }
    }
}

impl Task {
    /// The instruction text following the audio (model card, "Best Practices → Audio").
    pub fn instruction(&self) -> String {
        match self {
            Task::Transcribe { language } => format!(
                "Transcribe the following speech segment in {language} into {language} text.\n\n\
                 Follow these specific instructions for formatting the answer:\n\
                 * Only output the transcription, with no newlines.\n\
                 * When transcribing numbers, write the digits, i.e. write 1.7 and not one point seven, \
                 and write 3 instead of three."
            ),
            Task::Translate { source, target } => format!(
                "Transcribe the following speech segment in {source}, then translate it into {target}.\n\
                 When formatting the answer, first output the transcription in {source}, then one newline, \
                 then output the string '{target}: ', then the translation in {target}."
            ),
            Task::Custom(text) => text.clone(),
        }
    }
}

/// A tokenized prompt holding one audio span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Index of the first `<|audio|>` placeholder.
    pub audio_at: usize,
    /// Number of placeholders (audio tokens).
    pub audio_len: usize,
}

impl Prompt {
    /// Ids for the per-layer-embedding lookup: placeholders become the pad id (HF does this
    /// for every multimodal soft token).
    pub fn ple_ids(&self, pad: u32) -> Vec<u32> {
        let mut ids = self.ids.clone();
        ids[self.audio_at..self.audio_at + self.audio_len].fill(pad);
        ids
    }

    /// Everything before the placeholders (ends with `<|audio>`).
    pub fn prefix(&self) -> &[u32] {
        &self.ids[..self.audio_at]
    }

    /// Everything after the placeholders (starts with `<audio|>`).
    pub fn suffix(&self) -> &[u32] {
        &self.ids[self.audio_at + self.audio_len..]
    }
}

/// The rendered user turn with a single audio placeholder.
pub fn render(task: &Task) -> String {
    format!(
        "{bos}{open}user\n{audio}{instruction}{close}\n{open}model\n",
        bos = special::BOS,
        open = special::TURN_OPEN,
        close = special::TURN_CLOSE,
        audio = special::AUDIO_PLACEHOLDER,
        instruction = task.instruction().trim(),
    )
}

/// Tokenize the prompt for an audio span of `audio_tokens` tokens.
pub fn build(
    tok: &TextTokenizer,
    cfg: &ModelConfig,
    task: &Task,
    audio_tokens: usize,
) -> Result<Prompt, ModelError> {
    let ids = tok.encode(&render(task))?;
    let placeholder = cfg.audio_tokens.placeholder;
    let at: Vec<usize> = ids
        .iter()
        .enumerate()
        .filter(|&(_, &id)| id == placeholder)
        .map(|(i, _)| i)
        .collect();
    let [at] = at[..] else {
        return Err(ModelError::Tokenizer(format!(
            "the rendered prompt holds {} audio placeholders, expected one",
            at.len()
        )));
    };
    let mut out = Vec::with_capacity(ids.len() + audio_tokens + 1);
    out.extend_from_slice(&ids[..at]);
    out.push(cfg.audio_tokens.begin);
    out.extend(std::iter::repeat_n(placeholder, audio_tokens));
    out.push(cfg.audio_tokens.end);
    out.extend_from_slice(&ids[at + 1..]);
    Ok(Prompt {
        ids: out,
        audio_at: at + 1,
        audio_len: audio_tokens,
    })
}

/// Audio tokens for `samples` samples: `ceil(floor((N − 1) / 160) / 4)`, capped
/// (docs/model.md §1.5).
pub fn audio_token_count(mel: &MelSpec, samples: usize, cap: usize) -> usize {
    crate::encoder::tokens_for_frames(mel.valid_frames(samples)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeatureExtractorJson;

    #[test]
    fn token_count_formula_of_the_spec() {
        let mel = MelSpec::new(&FeatureExtractorJson::default());
        // The lengths of docs/model.md §1.5 and their ceil(floor((N-1)/160)/4) values.
        let cases = [
            (160, 0),
            (161, 1),
            (320, 1),
            (321, 1),
            (480, 1),
            (481, 1),
            (640, 1),
            (641, 1),
            (1000, 2),
            (1599, 3),
            (1600, 3),
            (1601, 3),
            (3200, 5),
            (15_999, 25),
            (16_000, 25),
            (16_001, 25),
            (16_159, 25),
            (16_160, 25),
            (16_161, 26),
            (16_320, 26),
            (16_321, 26),
            (24_000, 38),
            (48_000, 75),
            (100_000, 156),
            (479_999, 750),
            (480_000, 750),
        ];
        for (n, want) in cases {
            let frames: usize = if n > 160 { (n - 1) / 160 } else { 0 };
            assert_eq!(frames.div_ceil(4), want, "formula N = {n}");
            assert_eq!(audio_token_count(&mel, n, 750), want, "N = {n}");
        }
        // Not ceil(duration / 40 ms): 16001 samples give 25 tokens, not 26.
        assert_eq!(audio_token_count(&mel, 16_001, 750), 25);
        assert_eq!(audio_token_count(&mel, 960_000, 750), 750);
    }

    #[test]
    fn rendered_prompt_matches_the_template() {
        let text = render(&Task::default());
        assert!(text.starts_with("<bos><|turn>user\n<|audio|>Transcribe the following speech segment in English into English text.\n\n"));
        assert!(text.ends_with("write 3 instead of three.<turn|>\n<|turn>model\n"));
    }
}
