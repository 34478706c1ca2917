//! What to type: only committed text, each character once.
//!
//! The daemon's `committed` text only grows within a segment's partials, and a final nearly
//! always starts with its last partial's `committed`; so typing the new end of `committed` as
//! it grows, and the rest of the final at the end, types every segment once and never needs a
//! backspace. A final is decoded from the audio alone and may, rarely, revise committed words;
//! then the words already typed stay and the final's words after them are typed, so nothing
//! of the segment is lost. Tentative text is never typed. Segments are joined by a space.

use hark_protocol::{Final, Partial};

use crate::formats::clean_text;

/// Turns partials and finals into the text to type next.
#[derive(Debug, Default)]
pub struct Typist {
    /// Type finals only (not committed text as it grows).
    finals_only: bool,
    /// The open segment and what of it was typed.
    open: Option<(u64, String)>,
    /// Whether anything was typed, and whether it ended in whitespace.
    typed_any: bool,
    ends_with_space: bool,
}

impl Typist {
    /// A typist that types committed text as it grows, or with `finals_only` whole segments.
    pub fn new(finals_only: bool) -> Self {
        Typist {
            finals_only,
            ..Default::default()
        }
    }

    /// Text to type for a partial (its newly committed words), if any.
    pub fn partial(&mut self, p: &Partial) -> Option<String> {
        if self.finals_only {
            return None;
        }
        self.advance(p.segment_id, &p.committed)
    }

    /// Text to type for a final (whatever of it was not typed yet), if any.
    pub fn final_(&mut self, f: &Final) -> Option<String> {
        let out = self.advance(f.segment_id, &f.text);
        self.open = None;
        out
    }

    fn advance(&mut self, segment: u64, committed: &str) -> Option<String> {
        // Never type a newline (it would press Enter) or a control character.
        let committed = &clean_text(committed);
        let typed = match &self.open {
            Some((id, typed)) if *id == segment => typed.clone(),
            _ => String::new(),
        };
        let new = match committed.strip_prefix(typed.as_str()) {
            Some(rest) => rest,
            None => {
                // A final is decoded from the segment's audio alone and may revise committed
                // words (protocol/README.md). Typed text cannot be taken back, so keep the
                // words already typed and type the final's words after as many: a word the
                // final replaced stays as typed, but none of the segment is lost.
                let skip = typed.split_whitespace().count();
                let rest = committed
                    .split_whitespace()
                    .skip(skip)
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::info!(
                    "segment {segment}: the final revised committed text ({typed:?} -> \
                     {committed:?}); typing its words after the {skip} already typed"
                );
                self.open = Some((segment, committed.to_owned()));
                if rest.is_empty() {
                    return None;
                }
                let text = if typed.ends_with(char::is_whitespace) {
                    rest
                } else {
                    format!(" {rest}")
                };
                self.typed_any = true;
                self.ends_with_space = false;
                return Some(text);
            }
        };
        // Nothing typed yet for this segment: wait for real words (never type on silence).
        let text = if typed.is_empty() {
            if new.trim().is_empty() {
                self.open = Some((segment, String::new()));
                return None;
            }
            let new = new.trim_start();
            if self.typed_any && !self.ends_with_space {
                format!(" {new}")
            } else {
                new.to_owned()
            }
        } else {
            new.to_owned()
        };
        // Remember the segment's text as the server sent it, so the next prefix check holds.
        self.open = Some((segment, committed.to_owned()));
        if text.is_empty() {
            return None;
        }
        self.typed_any = true;
        self.ends_with_space = text.ends_with(char::is_whitespace);
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(id: u64, committed: &str, tentative: &str) -> Partial {
        Partial {
            segment_id: id,
            committed: committed.into(),
            tentative: tentative.into(),
            start: 0.0,
            end: 0.0,
            acked_samples: 0,
            lag_s: 0.0,
            emit_latency_s: 0.0,
        }
    }

    fn final_(id: u64, text: &str) -> Final {
        Final {
            segment_id: id,
            text: text.into(),
            start: 0.0,
            end: 0.0,
            acked_samples: 0,
            lag_s: 0.0,
            emit_latency_s: 0.0,
        }
    }

    /// Everything typed for a sequence of events.
    fn typed(t: &mut Typist, events: &[Result<Partial, Final>]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Ok(p) => t.partial(p),
                Err(f) => t.final_(f),
            })
            .collect()
    }

    #[test]
    fn committed_text_is_typed_once_and_tentative_never() {
        let mut t = Typist::new(false);
        let out = typed(
            &mut t,
            &[
                Ok(partial(0, "", "Turn on")),
                Ok(partial(0, "Turn on the", " kitchen lights")),
                Ok(partial(0, "Turn on the", " kitchen light")),
                Ok(partial(0, "Turn on the kitchen", " lights")),
                Err(final_(0, "Turn on the kitchen lights.")),
                Ok(partial(1, "", "And")),
                Ok(partial(1, "And the", " oven")),
                Err(final_(1, "And the oven.")),
            ],
        );
        assert_eq!(
            out,
            ["Turn on the", " kitchen", " lights.", " And the", " oven."]
        );
        assert_eq!(out.concat(), "Turn on the kitchen lights. And the oven.");
    }

    #[test]
    fn finals_only_types_whole_segments() {
        let mut t = Typist::new(true);
        let out = typed(
            &mut t,
            &[
                Ok(partial(0, "Hello", " there")),
                Err(final_(0, "Hello there.")),
                Err(final_(1, " Bye.")),
            ],
        );
        assert_eq!(out, ["Hello there.", " Bye."]);
    }

    #[test]
    fn silence_and_blank_text_type_nothing() {
        let mut t = Typist::new(false);
        let out = typed(
            &mut t,
            &[
                Ok(partial(0, " ", "")),
                Ok(partial(0, "  ", "uh")),
                Err(final_(0, "  ")),
                Err(final_(1, "")),
            ],
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn newlines_and_control_characters_are_never_typed() {
        let mut t = Typist::new(false);
        let out = typed(
            &mut t,
            &[
                Ok(partial(0, "Dear Sam,\n", "")),
                Err(final_(0, "Dear Sam,\n\u{8}thanks.")),
            ],
        );
        assert_eq!(out.concat(), "Dear Sam, thanks.");
    }

    #[test]
    fn a_final_that_revises_a_commit_loses_no_words() {
        let mut t = Typist::new(false);
        assert_eq!(
            t.partial(&partial(0, "it was a", "")).as_deref(),
            Some("it was a")
        );
        assert_eq!(
            t.final_(&final_(0, "it was over bright cold day"))
                .as_deref(),
            Some(" bright cold day")
        );
        // A revision with nothing new after the typed words types nothing.
        assert_eq!(
            t.partial(&partial(2, "Turn on", "")).as_deref(),
            Some(" Turn on")
        );
        assert_eq!(t.final_(&final_(2, "Turn off")), None);
        // The next segment is typed normally.
        assert_eq!(t.final_(&final_(1, "Done.")).as_deref(), Some(" Done."));
    }
}
