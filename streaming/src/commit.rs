//! Which part of a revisable hypothesis becomes committed (never to change again).
//!
//! LocalAgreement: the tokens that the last `n` hypotheses agree on are stable, up to a word
//! boundary; the newest agreed words can be held back a little longer. Committed tokens are
//! then forced into every later partial hypothesis of the segment, so the committed text of a
//! segment only ever grows from partial to partial.
//!
//! Which partials run depends on pacing and load (a stream behind real time sheds them), so
//! commits do too; the final therefore does not take them: it is decoded from the segment's
//! audio alone ([`SegmentDecoder::final_hypothesis`](crate::segment::SegmentDecoder::final_hypothesis))
//! and is authoritative. It starts with the committed text only when the whole-segment decode
//! agrees with the partials: often, not always.

use std::collections::VecDeque;

use serde::Deserialize;

/// The one latency-versus-stability knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stability {
    /// Commit what two consecutive hypotheses agree on, up to the last word boundary.
    Fast,
    /// As `Fast`, but the newest agreed word waits for one more update.
    #[default]
    Balanced,
    /// Three hypotheses must agree, and the newest agreed word waits.
    Stable,
}

impl Stability {
    /// Consecutive hypotheses that must agree.
    pub fn agreement(self) -> usize {
        match self {
            Stability::Fast | Stability::Balanced => 2,
            Stability::Stable => 3,
        }
    }

    /// Agreed words held back.
    pub fn holdback_words(self) -> usize {
        match self {
            Stability::Fast => 0,
            Stability::Balanced | Stability::Stable => 1,
        }
    }
}

/// Committed and tentative text of one hypothesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub committed: String,
    pub tentative: String,
}

/// Commit state of one segment.
#[derive(Debug, Clone)]
pub struct CommitTracker {
    stability: Stability,
    recent: VecDeque<Vec<u32>>,
    committed: Vec<u32>,
    committed_text: String,
}

impl CommitTracker {
    pub fn new(stability: Stability) -> Self {
        Self {
            stability,
            recent: VecDeque::new(),
            committed: Vec::new(),
            committed_text: String::new(),
        }
    }

    /// Tokens committed so far (forced into later hypotheses).
    pub fn committed(&self) -> &[u32] {
        &self.committed
    }

    /// Take a new hypothesis (stop token excluded; it starts with the committed tokens) and
    /// return its committed/tentative split. `text` decodes tokens to text.
    pub fn observe(&mut self, hyp: &[u32], text: impl Fn(&[u32]) -> String) -> Split {
        debug_assert!(
            hyp.starts_with(&self.committed),
            "hypotheses extend the committed tokens"
        );
        self.recent.push_back(hyp.to_vec());
        while self.recent.len() > self.stability.agreement() {
            self.recent.pop_front();
        }
        let full = text(hyp).trim_start().to_string();
        if self.recent.len() == self.stability.agreement() {
            let agreed = self.recent.iter().skip(1).fold(hyp.len(), |n, h| {
                n.min(
                    h.iter()
                        .zip(&self.recent[0])
                        .take_while(|(a, b)| a == b)
                        .count(),
                )
            });
            let agreed = agreed.min(self.recent[0].len());
            // Word boundaries k ≤ agreed: the text of hyp[..k] is a prefix of the full text and
            // the next character starts a new word.
            let mut boundaries: Vec<(usize, String)> = Vec::new();
            for k in (self.committed.len() + 1)..=agreed.min(hyp.len().saturating_sub(1)) {
                let t = text(&hyp[..k]).trim_start().to_string();
                if t.is_empty() || t.ends_with('\u{FFFD}') || !full.starts_with(&t) {
                    continue;
                }
                if full[t.len()..].starts_with(char::is_whitespace) {
                    boundaries.push((k, t));
                }
            }
            let hold = self.stability.holdback_words();
            if boundaries.len() > hold {
                let (k, t) = boundaries.swap_remove(boundaries.len() - 1 - hold);
                // Committed text only grows: accept only an extension of what was committed.
                if t.starts_with(&self.committed_text) {
                    self.committed = hyp[..k].to_vec();
                    self.committed_text = t;
                }
            }
        }
        let tentative = match full.strip_prefix(&self.committed_text) {
            Some(rest) => rest.to_string(),
            None => text(&hyp[self.committed.len()..]),
        };
        Split {
            committed: self.committed_text.clone(),
            tentative,
        }
    }

    /// The committed text so far.
    pub fn committed_text(&self) -> &str {
        &self.committed_text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Toy tokenizer: token i is the word `w{i}` with a leading space.
    fn text(ids: &[u32]) -> String {
        ids.iter().map(|i| format!(" w{i}")).collect()
    }

    #[test]
    fn agreement_commits_and_never_retracts() {
        let mut c = CommitTracker::new(Stability::Fast);
        let s = c.observe(&[1, 2, 3], text);
        assert_eq!(s.committed, "", "one hypothesis is not an agreement");
        assert_eq!(s.tentative, "w1 w2 w3");
        let s = c.observe(&[1, 2, 4], text);
        assert_eq!(s.committed, "w1 w2");
        assert_eq!(s.tentative, " w4");
        // Hypotheses keep the committed prefix (it is forced); the tail keeps changing.
        let s = c.observe(&[1, 2, 5, 6], text);
        assert_eq!(s.committed, "w1 w2");
        let s = c.observe(&[1, 2, 5, 6, 7], text);
        assert_eq!(s.committed, "w1 w2 w5 w6");
        assert_eq!(s.tentative, " w7");
        assert_eq!(c.committed(), &[1, 2, 5, 6]);
    }

    #[test]
    fn balanced_holds_back_the_newest_agreed_word() {
        let mut c = CommitTracker::new(Stability::Balanced);
        c.observe(&[1, 2, 3, 4], text);
        let s = c.observe(&[1, 2, 3, 9], text);
        assert_eq!(s.committed, "w1 w2");
        let mut c = CommitTracker::new(Stability::Stable);
        c.observe(&[1, 2, 3, 4], text);
        assert_eq!(c.observe(&[1, 2, 3, 4], text).committed, "");
        assert_eq!(c.observe(&[1, 2, 3, 4], text).committed, "w1 w2");
    }

    #[test]
    fn never_commits_inside_a_word() {
        // Tokens 10 and 11 spell one word "ab" (no space before 11).
        let t = |ids: &[u32]| -> String {
            ids.iter()
                .map(|&i| match i {
                    10 => " a".to_string(),
                    11 => "b".to_string(),
                    i => format!(" w{i}"),
                })
                .collect()
        };
        let mut c = CommitTracker::new(Stability::Fast);
        c.observe(&[10, 11, 12], t);
        let s = c.observe(&[10, 11, 13], t);
        assert_eq!(s.committed, "ab");
        let mut c = CommitTracker::new(Stability::Fast);
        c.observe(&[10, 11], t);
        let s = c.observe(&[10, 11], t);
        assert_eq!(
            s.committed, "",
            "the end of a partial hypothesis is not a boundary"
        );
    }
}
