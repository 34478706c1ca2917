//! Append-only transcription deltas from cumulative hypotheses.
//!
//! OpenAI clients concatenate `…transcription.delta` texts; a server that re-sends the whole
//! hypothesis (or a corrected one) makes them print text twice. The tracker remembers what
//! was sent for the current item and hands out only the new suffix.

/// Turns successive committed texts of one item into append-only deltas.
///
/// Feed it text that is never taken back (the engine's `committed` text, then the final
/// text); tentative text must not go through it, since a delta cannot be retracted.
///
/// ```
/// use hark_protocol::openai::DeltaTracker;
///
/// let mut item = DeltaTracker::new();
/// assert_eq!(item.advance("Turn on").unwrap(), "Turn on");
/// assert_eq!(item.advance("Turn on the").unwrap(), " the");
/// assert!(item.advance("Turn off").is_err()); // would need a retraction: nothing sent
/// assert_eq!(item.advance("Turn on the lights.").unwrap(), " lights.");
/// assert_eq!(item.sent(), "Turn on the lights.");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaTracker {
    sent: String,
}

/// `advance` was given text that does not extend what was already sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("new text does not extend the {sent_bytes} bytes already sent; deltas cannot retract")]
pub struct Retraction {
    /// Bytes already sent for this item.
    pub sent_bytes: usize,
}

impl DeltaTracker {
    /// A tracker for a new item (nothing sent).
    pub fn new() -> Self {
        Self::default()
    }

    /// The part of `committed` not sent yet (empty when nothing is new), which is recorded as
    /// sent. When `committed` does not start with the text already sent, nothing is recorded
    /// and [`Retraction`] is returned: the caller skips the delta and relies on the
    /// `completed` event, which always carries the whole transcript.
    pub fn advance<'a>(&mut self, committed: &'a str) -> Result<&'a str, Retraction> {
        match committed.strip_prefix(self.sent.as_str()) {
            Some(new) => {
                self.sent.push_str(new);
                Ok(new)
            }
            None => Err(Retraction {
                sent_bytes: self.sent.len(),
            }),
        }
    }

    /// Everything sent so far for this item (the concatenation of all deltas).
    pub fn sent(&self) -> &str {
        &self.sent
    }

    /// Starts over for the next item.
    pub fn reset(&mut self) {
        self.sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_only_new_suffixes() {
        let mut t = DeltaTracker::new();
        assert_eq!(t.advance("Hello").unwrap(), "Hello");
        assert_eq!(t.advance("Hello").unwrap(), "");
        assert_eq!(t.advance("Hello, wörld").unwrap(), ", wörld");
        assert_eq!(
            t.advance("Hello, world"),
            Err(Retraction { sent_bytes: 13 })
        );
        assert_eq!(t.advance("Hell"), Err(Retraction { sent_bytes: 13 }));
        assert_eq!(t.sent(), "Hello, wörld");
        assert_eq!(t.advance("Hello, wörld!").unwrap(), "!");
        t.reset();
        assert_eq!(t.advance("Next").unwrap(), "Next");
    }
}
