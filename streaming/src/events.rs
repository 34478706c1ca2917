//! What a stream tells its consumer.

use serde::Serialize;

/// An engine event. Times are seconds of stream audio, counted from the stream's first sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Speech began; `at` is where the kept audio of the segment starts (pre-roll included).
    SpeechStarted { segment_id: u64, at: f64 },
    /// The current hypothesis of the open segment.
    Partial(Partial),
    /// The segment is closed; its text never changes and depends on the segment's audio alone.
    Final(Final),
    /// Speech ended (endpoint silence, flush or end of stream); follows the segment's final.
    SpeechStopped { segment_id: u64, at: f64 },
    /// The stream failed and was closed; other streams are unaffected.
    Error { code: ErrorCode, message: String },
}

/// A revisable hypothesis: `committed` only ever grows from one partial of the segment to the
/// next, `tentative` may change. The final is decoded afresh from the audio and may revise both.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partial {
    pub segment_id: u64,
    /// Text that later partials of the segment keep (forced into their hypotheses).
    pub committed: String,
    /// Text after `committed` that may still change.
    pub tentative: String,
    pub start: f64,
    /// End of the audio this hypothesis has seen.
    pub end: f64,
}

impl Partial {
    /// `committed` followed by `tentative`.
    pub fn text(&self) -> String {
        join(&self.committed, &self.tentative)
    }
}

/// The immutable text of a closed segment: greedy over the segment's whole audio, computed
/// on a fixed grid, so it does not depend on pacing, chunking, partials or load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Final {
    pub segment_id: u64,
    pub text: String,
    /// Generated token ids (stop id excluded).
    pub token_ids: Vec<u32>,
    /// Each of `token_ids` as text with its natural-log probability; their texts concatenate
    /// to `text` (a leading space aside).
    pub token_logprobs: Vec<TokenLogprob>,
    pub start: f64,
    pub end: f64,
    /// Why the segment closed.
    pub reason: FinalReason,
}

/// One generated token of a final: its text and the log-softmax of its logits row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
}

/// Why a segment was finalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalReason {
    /// Endpoint silence.
    Endpoint,
    /// The consumer asked (`flush`).
    Flush,
    /// The segment reached the model's span limit and was split.
    SpanLimit,
    /// The stream ended.
    EndOfStream,
}

/// Stable error codes of stream failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The audio was unusable (non-finite samples).
    BadAudio,
    /// The model failed on this stream's data.
    Model,
    /// An internal bug; the stream was isolated and closed.
    Internal,
}

/// The whole hypothesis: `tentative` carries its own leading space when it starts a word.
pub fn join(committed: &str, tentative: &str) -> String {
    format!("{committed}{tentative}")
}
