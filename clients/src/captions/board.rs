//! The caption board: what the terminal shows, independent of the terminal.
//!
//! Text comes in as committed (never changes) and tentative (may still change). The board
//! wraps it at the caption width. Lines made only of committed text that are followed by
//! more committed text can never change again, even as the tentative tail is revised (greedy
//! wrapping decides a line break from the words up to it), so they are handed out once as
//! *finished* and scroll up like roll-up captions. The rest, the *live* lines, are redrawn
//! in place on each update, the tentative part styled apart.

use hark_protocol::{Final, Partial};

/// One live line: committed text, then the tentative tail (either may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveLine {
    /// Text that will not change.
    pub committed: String,
    /// Text that may still change.
    pub tentative: String,
}

/// What to draw after an update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// Lines that are done: print them once, above the live lines.
    pub finished: Vec<String>,
    /// The live lines, at most the board's row count (the newest ones).
    pub live: Vec<LiveLine>,
}

/// Caption state of one stream.
#[derive(Debug)]
pub struct Board {
    width: usize,
    rows: usize,
    /// Committed text from the start of the first unfinished line on.
    pending: String,
    /// Tentative tail of the open segment, as it will be displayed.
    tentative: String,
    /// The open segment and its committed text shown so far.
    open: Option<(u64, String)>,
    /// Whether anything was ever committed (segments after the first need a space).
    any_text: bool,
}

impl Board {
    /// A board `width` characters wide that keeps `rows` live lines.
    pub fn new(width: usize, rows: usize) -> Self {
        Board {
            width: width.max(8),
            rows: rows.max(1),
            pending: String::new(),
            tentative: String::new(),
            open: None,
            any_text: false,
        }
    }

    /// Changes the width (the terminal was resized); applies from the next line on.
    pub fn set_width(&mut self, width: usize) {
        self.width = width.max(8);
    }

    /// Takes a partial hypothesis.
    pub fn partial(&mut self, p: &Partial) {
        self.commit(p.segment_id, &p.committed);
        let nothing_shown = matches!(&self.open, Some((_, shown)) if shown.is_empty());
        self.tentative = if nothing_shown {
            self.spaced(&p.tentative)
        } else {
            p.tentative.clone()
        };
    }

    /// Takes a final: the whole segment text is committed.
    pub fn final_(&mut self, f: &Final) {
        self.commit(f.segment_id, &f.text);
        self.tentative.clear();
        self.open = None;
    }

    /// Appends the part of `committed` (the segment's committed text so far) not shown yet.
    fn commit(&mut self, segment: u64, committed: &str) {
        let shown = match &self.open {
            Some((id, shown)) if *id == segment => shown.as_str(),
            _ => "",
        };
        // Committed text only grows. Were a server to break that, shown text cannot be taken
        // back: add what follows the common prefix.
        let cut = if committed.starts_with(shown) {
            shown.len()
        } else {
            common_prefix(committed, shown)
        };
        let new = &committed[cut..];
        if shown.is_empty() && new.trim().is_empty() {
            self.open = Some((segment, String::new()));
            return;
        }
        let text = if shown.is_empty() {
            self.spaced(new)
        } else {
            new.to_owned()
        };
        self.pending.push_str(&text);
        self.any_text = true;
        self.open = Some((segment, committed.to_owned()));
    }

    /// `text` with a separating space when it opens a segment after earlier text.
    fn spaced(&self, text: &str) -> String {
        if self.any_text
            && !self.pending.ends_with(char::is_whitespace)
            && !text.is_empty()
            && !text.starts_with(char::is_whitespace)
        {
            format!(" {text}")
        } else {
            text.to_owned()
        }
    }

    /// Lays the text out: finished lines move out of the board; live lines stay.
    pub fn frame(&mut self) -> Frame {
        let committed_lines = layout(&self.pending, "", self.width);
        let mut finished = Vec::new();
        if committed_lines.len() > 1 {
            let keep = committed_lines.len() - 1;
            finished = committed_lines[..keep]
                .iter()
                .map(|l| l.committed.clone())
                .collect();
            let trailing = self.pending.ends_with(char::is_whitespace);
            self.pending = committed_lines[keep].committed.clone();
            if trailing {
                self.pending.push(' ');
            }
        }
        let mut live = layout(&self.pending, &self.tentative, self.width);
        if live.len() > self.rows {
            live.drain(..live.len() - self.rows);
        }
        Frame { finished, live }
    }

    /// Everything still on the board as finished lines (the stream ended).
    pub fn finish(&mut self) -> Vec<String> {
        let lines = layout(&self.pending, &self.tentative, self.width);
        self.pending.clear();
        self.tentative.clear();
        lines
            .into_iter()
            .map(|l| format!("{}{}", l.committed, l.tentative))
            .collect()
    }
}

/// Byte length of the longest common prefix (on character boundaries).
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8())
}

/// Greedy word wrap of `committed + tentative` at `width` characters, keeping track of which
/// characters are committed. Runs of whitespace become one space; a word longer than a line
/// is cut.
fn layout(committed: &str, tentative: &str, width: usize) -> Vec<LiveLine> {
    // (char, committed?) with whitespace collapsed.
    let mut chars: Vec<(char, bool)> = Vec::new();
    for (c, is_committed) in committed
        .chars()
        .map(|c| (c, true))
        .chain(tentative.chars().map(|c| (c, false)))
    {
        if c.is_control() && !c.is_whitespace() {
            continue;
        }
        if c.is_whitespace() {
            if chars.last().is_some_and(|(l, _)| *l != ' ') {
                chars.push((' ', is_committed));
            }
        } else {
            chars.push((c, is_committed));
        }
    }
    let mut lines: Vec<Vec<(char, bool)>> = Vec::new();
    let mut line: Vec<(char, bool)> = Vec::new();
    for word in chars.split(|(c, _)| *c == ' ') {
        if word.is_empty() {
            continue;
        }
        let mut word = word.to_vec();
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let rest = word.split_off(width);
            lines.push(word);
            word = rest;
        }
        if word.is_empty() {
            continue;
        }
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            // The space belongs to the tentative part if the word after it does.
            line.push((' ', word[0].1));
        }
        line.extend(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
        .into_iter()
        .map(|l| LiveLine {
            committed: l.iter().filter(|(_, c)| *c).map(|(c, _)| c).collect(),
            tentative: l.iter().filter(|(_, c)| !*c).map(|(c, _)| c).collect(),
        })
        .collect()
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
            end: 1.0,
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
            end: 1.0,
            acked_samples: 0,
            lag_s: 0.0,
            emit_latency_s: 0.0,
        }
    }

    fn line(c: &str, t: &str) -> LiveLine {
        LiveLine {
            committed: c.into(),
            tentative: t.into(),
        }
    }

    #[test]
    fn tentative_text_is_kept_apart_and_replaced() {
        let mut b = Board::new(40, 3);
        b.partial(&partial(0, "", "Turn on"));
        assert_eq!(b.frame().live, [line("", "Turn on")]);
        b.partial(&partial(0, "Turn on the", " kitchen lights"));
        assert_eq!(b.frame().live, [line("Turn on the", " kitchen lights")]);
        b.partial(&partial(0, "Turn on the", " kitchen light"));
        assert_eq!(b.frame().live, [line("Turn on the", " kitchen light")]);
        b.final_(&final_(0, "Turn on the kitchen lights."));
        assert_eq!(b.frame().live, [line("Turn on the kitchen lights.", "")]);
    }

    #[test]
    fn segments_are_joined_by_one_space() {
        let mut b = Board::new(80, 3);
        b.final_(&final_(0, "Hello."));
        b.partial(&partial(1, "", "How"));
        assert_eq!(b.frame().live, [line("Hello.", " How")]);
        b.partial(&partial(1, "How are", " you"));
        b.final_(&final_(1, "How are you?"));
        b.final_(&final_(2, " Fine."));
        assert_eq!(b.frame().live, [line("Hello. How are you? Fine.", "")]);
    }

    #[test]
    fn full_committed_lines_roll_up_once() {
        let mut b = Board::new(12, 2);
        b.final_(&final_(0, "one two three four five"));
        let f = b.frame();
        assert_eq!(f.finished, ["one two", "three four"]);
        assert_eq!(f.live, [line("five", "")]);
        // Finished lines are handed out once.
        b.partial(&partial(1, "six", " seven eight nine ten"));
        let f = b.frame();
        assert!(f.finished.is_empty(), "{f:?}");
        // Only the newest `rows` live lines are shown.
        assert_eq!(f.live, [line("", "seven eight"), line("", "nine ten")]);
        b.final_(&final_(1, "six seven eight nine ten"));
        let f = b.frame();
        assert_eq!(f.finished, ["five six", "seven eight"]);
        assert_eq!(f.live, [line("nine ten", "")]);
        assert_eq!(b.finish(), ["nine ten"]);
    }

    #[test]
    fn revising_the_tentative_tail_never_changes_finished_lines() {
        let mut b = Board::new(10, 4);
        let mut finished = Vec::new();
        let steps = [
            ("abc def", " ghijkl mno"),
            ("abc def ghi", " jkl"),
            ("abc def ghi", "jklmnopqrstu"),
            ("abc def ghijklmnop", " q"),
        ];
        for (c, t) in steps {
            b.partial(&partial(0, c, t));
            finished.extend(b.frame().finished);
        }
        b.final_(&final_(0, "abc def ghijklmnop qr"));
        finished.extend(b.frame().finished);
        finished.extend(b.finish());
        assert_eq!(finished.join(" "), "abc def ghijklmnop qr");
    }

    #[test]
    fn whitespace_only_text_shows_nothing() {
        let mut b = Board::new(20, 2);
        b.partial(&partial(0, " ", "  "));
        b.final_(&final_(0, "  "));
        let f = b.frame();
        assert!(f.finished.is_empty() && f.live.is_empty(), "{f:?}");
        b.final_(&final_(1, "Hi"));
        assert_eq!(b.frame().live, [line("Hi", "")]);
    }
}
