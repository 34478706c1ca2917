//! Transcript output formats: plain text, JSON, SRT and WebVTT subtitles, Markdown minutes.
//!
//! Subtitles are written cue by cue as segments become final ([`CueWriter`]), so a caption
//! file grows live while `hark captions` or `hark meeting` runs and is valid at every moment.
//! Long segments are split into caption-sized cues (two lines of at most 42 characters, the
//! common broadcast guideline), their times spread in proportion to the text.

use std::io::{self, Write};
use std::path::Path;

use clap::ValueEnum;
use serde::Serialize;

/// One finalised piece of transcript, times in seconds of stream audio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// Segment id (unique within the transcript, increasing).
    pub id: u64,
    /// Start time, s.
    pub start: f64,
    /// End time, s.
    pub end: f64,
    /// Final text, trimmed.
    pub text: String,
}

impl Segment {
    /// A segment from a `final`, or `None` when the final holds no words.
    pub fn from_final(f: &hark_protocol::Final) -> Option<Self> {
        let text = clean_text(&f.text)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (!text.is_empty()).then(|| Segment {
            id: f.segment_id,
            start: f.start,
            end: f.end.max(f.start),
            text,
        })
    }
}

/// Text fit for a caption line or a keyboard: whitespace of any kind (newlines, tabs)
/// becomes a space and other control characters are dropped.
pub fn clean_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            if c.is_whitespace() {
                Some(' ')
            } else if c.is_control() {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Plain text.
    Txt,
    /// JSON.
    Json,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// Markdown with timestamps.
    #[value(alias = "markdown")]
    Md,
}

impl Format {
    /// The format a file name implies, from its extension.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" => Format::Txt,
            "json" => Format::Json,
            "srt" => Format::Srt,
            "vtt" => Format::Vtt,
            "md" | "markdown" => Format::Md,
            _ => return None,
        })
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Json => "json",
            Format::Srt => "srt",
            Format::Vtt => "vtt",
            Format::Md => "md",
        }
    }

    /// The subtitle flavour, for SRT and VTT.
    pub fn cue_kind(self) -> Option<CueKind> {
        match self {
            Format::Srt => Some(CueKind::Srt),
            Format::Vtt => Some(CueKind::Vtt),
            _ => None,
        }
    }
}

/// `HH:MM:SS` plus milliseconds after `sep` (`,` for SRT, `.` for WebVTT).
fn timestamp(ms: u64, sep: char) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

/// Milliseconds of a time in seconds (negative and non-finite clamp to 0).
fn millis(t: f64) -> u64 {
    if t.is_finite() && t > 0.0 {
        (t * 1000.0).round() as u64
    } else {
        0
    }
}

/// `HH:MM:SS` of a time in seconds, for transcripts people read.
pub fn clock(t: f64) -> String {
    let s = millis(t) / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// How segments are cut into cues.
#[derive(Debug, Clone, Copy)]
pub struct CueLayout {
    /// Characters per line.
    pub line_chars: usize,
    /// Lines per cue.
    pub lines: usize,
}

impl Default for CueLayout {
    fn default() -> Self {
        CueLayout {
            line_chars: 42,
            lines: 2,
        }
    }
}

/// One subtitle cue.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    /// Start, ms.
    pub start_ms: u64,
    /// End, ms.
    pub end_ms: u64,
    /// Text lines.
    pub lines: Vec<String>,
}

/// Greedy word wrap at `width` characters; a word longer than a line is cut.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if len > 0 {
                lines.push(std::mem::take(&mut line));
                len = 0;
            }
            let rest = word.split_off(width);
            lines.push(word.into_iter().collect());
            word = rest;
        }
        if word.is_empty() {
            continue;
        }
        if len > 0 && len + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
            len = 0;
        }
        if len > 0 {
            line.push(' ');
            len += 1;
        }
        line.extend(word.iter());
        len += word.len();
    }
    if len > 0 {
        lines.push(line);
    }
    lines
}

/// Cuts a segment into cues of at most `layout.lines` lines, spreading its time over them in
/// proportion to their characters.
pub fn cues_for(segment: &Segment, layout: CueLayout) -> Vec<Cue> {
    let lines = wrap(&segment.text, layout.line_chars);
    if lines.is_empty() {
        return Vec::new();
    }
    let groups: Vec<Vec<String>> = lines
        .chunks(layout.lines.max(1))
        .map(<[String]>::to_vec)
        .collect();
    let weight = |g: &[String]| g.iter().map(|l| l.chars().count()).sum::<usize>().max(1);
    let total: usize = groups.iter().map(|g| weight(g)).sum();
    let (start, end) = (
        millis(segment.start),
        millis(segment.end).max(millis(segment.start)),
    );
    let span = end - start;
    let mut done = 0usize;
    groups
        .into_iter()
        .map(|g| {
            let cue_start = start + span * done as u64 / total as u64;
            done += weight(&g);
            let cue_end = start + span * done as u64 / total as u64;
            Cue {
                start_ms: cue_start,
                end_ms: cue_end,
                lines: g,
            }
        })
        .collect()
}

/// SRT or WebVTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CueKind {
    /// SubRip.
    Srt,
    /// WebVTT.
    Vtt,
}

/// Writes subtitle cues as segments arrive, flushing after each so readers see them live.
/// Cues never overlap and always last at least a millisecond.
pub struct CueWriter<W: Write> {
    out: W,
    kind: CueKind,
    layout: CueLayout,
    next_index: u64,
    last_end_ms: u64,
}

impl<W: Write> CueWriter<W> {
    /// Starts the file (WebVTT's header).
    pub fn new(mut out: W, kind: CueKind, layout: CueLayout) -> io::Result<Self> {
        if kind == CueKind::Vtt {
            out.write_all(b"WEBVTT\n\n")?;
            out.flush()?;
        }
        Ok(CueWriter {
            out,
            kind,
            layout,
            next_index: 1,
            last_end_ms: 0,
        })
    }

    /// Writes the cues of one segment.
    pub fn push(&mut self, segment: &Segment) -> io::Result<()> {
        for mut cue in cues_for(segment, self.layout) {
            cue.start_ms = cue.start_ms.max(self.last_end_ms);
            cue.end_ms = cue.end_ms.max(cue.start_ms + 1);
            self.last_end_ms = cue.end_ms;
            let sep = if self.kind == CueKind::Srt { ',' } else { '.' };
            if self.kind == CueKind::Srt {
                writeln!(self.out, "{}", self.next_index)?;
            }
            writeln!(
                self.out,
                "{} --> {}",
                timestamp(cue.start_ms, sep),
                timestamp(cue.end_ms, sep)
            )?;
            for line in &cue.lines {
                writeln!(self.out, "{line}")?;
            }
            writeln!(self.out)?;
            self.next_index += 1;
        }
        self.out.flush()
    }
}

/// Describes a whole transcript for the JSON and Markdown writers.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    /// Where the audio came from.
    pub source: String,
    /// Model that transcribed it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Seconds of audio transcribed.
    pub audio_s: f64,
    /// The whole text, segments joined by spaces.
    pub text: String,
    /// The segments, in order.
    pub segments: Vec<Segment>,
    /// How the live session went, for transcripts made through harkd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
}

/// Delivery facts of a transcript made through harkd: the audio the daemon acknowledged
/// against the audio captured, and the reconnections it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    /// The last server session id.
    pub session_id: String,
    /// 16 kHz samples captured and sent.
    pub sent_samples: u64,
    /// 16 kHz samples the daemon acknowledged over the whole stream.
    pub acked_samples: u64,
    /// Reconnections that resumed the daemon's session.
    pub resumed: u32,
    /// Reconnections that needed a fresh session.
    pub restarted: u32,
    /// Samples lost to reconnections (0 unless a replay buffer was exceeded).
    pub lost_samples: u64,
}

impl Transcript {
    /// A transcript of `segments`.
    pub fn new(
        source: String,
        model: Option<String>,
        audio_s: f64,
        segments: Vec<Segment>,
    ) -> Self {
        let text = join_text(&segments);
        Transcript {
            source,
            model,
            audio_s,
            text,
            segments,
            session: None,
        }
    }
}

/// The segments' texts joined with single spaces.
pub fn join_text(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes a whole transcript in `format`.
pub fn write_transcript(out: &mut dyn Write, format: Format, t: &Transcript) -> io::Result<()> {
    match format {
        Format::Txt => writeln!(out, "{}", t.text),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, t)?;
            writeln!(out)
        }
        Format::Srt | Format::Vtt => {
            let kind = format.cue_kind().unwrap_or(CueKind::Vtt);
            let mut cues = CueWriter::new(out, kind, CueLayout::default())?;
            for s in &t.segments {
                cues.push(s)?;
            }
            Ok(())
        }
        Format::Md => write_markdown(out, t),
    }
}

/// Markdown: a heading, what was transcribed, then one timestamped paragraph per segment.
pub fn write_markdown(out: &mut dyn Write, t: &Transcript) -> io::Result<()> {
    writeln!(out, "# Transcript\n")?;
    writeln!(out, "- Source: {}", t.source)?;
    if let Some(model) = &t.model {
        writeln!(out, "- Model: {model}")?;
    }
    writeln!(out, "- Duration: {}", clock(t.audio_s))?;
    write!(out, "- Segments: {}", t.segments.len())?;
    if let Some(info) = &t.session
        && info.resumed + info.restarted > 0
    {
        write!(
            out,
            "\n- Reconnections: {} ({} resumed)",
            info.resumed + info.restarted,
            info.resumed
        )?;
    }
    writeln!(out, "\n")?;
    for s in &t.segments {
        writeln!(
            out,
            "**[{}–{}]** {}\n",
            clock(s.start),
            clock(s.end),
            escape_markdown(
                &clean_text(&s.text)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        )?;
    }
    Ok(())
}

/// Keeps speech that happens to contain Markdown syntax from being rendered as markup.
fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, start: f64, end: f64, text: &str) -> Segment {
        Segment {
            id,
            start,
            end,
            text: text.into(),
        }
    }

    #[test]
    fn segments_hold_one_clean_line() {
        let f = hark_protocol::Final {
            segment_id: 3,
            text: " Line one\nline\ttwo\u{e}. ".into(),
            start: 1.0,
            end: 0.5,
            acked_samples: 0,
            lag_s: 0.0,
            emit_latency_s: 0.0,
        };
        let s = Segment::from_final(&f).unwrap();
        assert_eq!(s.text, "Line one line two.");
        assert_eq!((s.start, s.end), (1.0, 1.0));
        let blank = hark_protocol::Final {
            text: "\n\u{7} ".into(),
            ..f
        };
        assert!(Segment::from_final(&blank).is_none());
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0, ','), "00:00:00,000");
        assert_eq!(timestamp(3_723_456, ','), "01:02:03,456");
        assert_eq!(timestamp(59_999, '.'), "00:00:59.999");
        assert_eq!(millis(1.0005), 1001);
        assert_eq!(millis(f64::NAN), 0);
        assert_eq!(clock(3_725.9), "01:02:05");
    }

    #[test]
    fn wrap_breaks_at_words_and_cuts_long_ones() {
        assert_eq!(wrap("the quick brown fox", 9), ["the quick", "brown fox"]);
        assert_eq!(wrap("  a  b ", 9), ["a b"]);
        assert_eq!(wrap("abcdefghij k", 4), ["abcd", "efgh", "ij k"]);
        assert!(wrap("   ", 5).is_empty());
    }

    #[test]
    fn long_segments_become_several_cues_in_proportion() {
        let text = "one two three four five six seven eight nine ten eleven twelve";
        let cues = cues_for(
            &seg(0, 10.0, 16.0, text),
            CueLayout {
                line_chars: 15,
                lines: 2,
            },
        );
        assert!(cues.len() >= 2, "{cues:?}");
        assert_eq!(cues[0].start_ms, 10_000);
        assert_eq!(cues.last().unwrap().end_ms, 16_000);
        for pair in cues.windows(2) {
            assert_eq!(pair[0].end_ms, pair[1].start_ms);
        }
        let words: Vec<String> = cues.iter().flat_map(|c| c.lines.clone()).collect();
        assert_eq!(words.join(" "), text);
        assert!(cues.iter().all(|c| c.lines.len() <= 2));
    }

    #[test]
    fn srt_and_vtt_files() {
        let segments = [
            seg(0, 0.84, 2.9, "Turn on the kitchen lights."),
            // Overlaps the previous cue and has zero length: shifted and widened.
            seg(1, 2.5, 2.5, "Now."),
            seg(2, 3.0, 4.0, "   "),
        ];
        let (mut srt_out, mut vtt_out) = (Vec::new(), Vec::new());
        let mut srt = CueWriter::new(&mut srt_out, CueKind::Srt, CueLayout::default()).unwrap();
        let mut vtt = CueWriter::new(&mut vtt_out, CueKind::Vtt, CueLayout::default()).unwrap();
        for s in &segments {
            srt.push(s).unwrap();
            vtt.push(s).unwrap();
        }
        // The writers borrow the buffers; end the borrows before reading them.
        let _ = (srt, vtt);
        let srt = String::from_utf8(srt_out).unwrap();
        assert_eq!(
            srt,
            "1\n00:00:00,840 --> 00:00:02,900\nTurn on the kitchen lights.\n\n\
             2\n00:00:02,900 --> 00:00:02,901\nNow.\n\n"
        );
        let vtt = String::from_utf8(vtt_out).unwrap();
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:00.840 --> 00:00:02.900\nTurn on the kitchen lights.\n\n\
             00:00:02.900 --> 00:00:02.901\nNow.\n\n"
        );
    }

    #[test]
    fn json_and_markdown() {
        let t = Transcript::new(
            "fox.wav".into(),
            Some("demo".into()),
            3.5,
            vec![seg(0, 0.2, 1.4, "hello *world*"), seg(1, 2.0, 3.1, "again")],
        );
        let mut json = Vec::new();
        write_transcript(&mut json, Format::Json, &t).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["text"], "hello *world* again");
        assert_eq!(v["segments"][1]["start"], 2.0);
        assert_eq!(v["model"], "demo");

        let mut md = Vec::new();
        write_transcript(&mut md, Format::Md, &t).unwrap();
        let md = String::from_utf8(md).unwrap();
        assert!(md.contains("- Source: fox.wav\n"), "{md}");
        assert!(
            md.contains("**[00:00:00–00:00:01]** hello \\*world\\*\n"),
            "{md}"
        );
        assert!(md.contains("**[00:00:02–00:00:03]** again\n"), "{md}");

        let mut txt = Vec::new();
        write_transcript(&mut txt, Format::Txt, &t).unwrap();
        assert_eq!(txt, b"hello *world* again\n");
    }

    #[test]
    fn formats_from_file_names() {
        assert_eq!(Format::from_path(Path::new("a/b.SRT")), Some(Format::Srt));
        assert_eq!(Format::from_path(Path::new("m.markdown")), Some(Format::Md));
        assert_eq!(Format::from_path(Path::new("noext")), None);
    }
}
