//! Drawing a [`Frame`] on an ANSI terminal: finished lines are printed once and scroll up;
//! the live lines are redrawn in place, the tentative tail dimmed.

use std::io::{self, Write};

use super::board::Frame;

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// A terminal showing captions.
pub struct Terminal<W: Write> {
    out: W,
    /// Live rows drawn last time (the cursor sits at the end of the last one).
    drawn: usize,
}

impl<W: Write> Terminal<W> {
    /// Draws on `out`, which must be a terminal that understands ANSI escapes.
    pub fn new(out: W) -> Self {
        Terminal { out, drawn: 0 }
    }

    /// Replaces the live lines with the frame's, after printing its finished lines.
    pub fn draw(&mut self, frame: &Frame) -> io::Result<()> {
        self.erase()?;
        for line in &frame.finished {
            writeln!(self.out, "{line}")?;
        }
        for (i, line) in frame.live.iter().enumerate() {
            if i > 0 {
                writeln!(self.out)?;
            }
            self.out.write_all(line.committed.as_bytes())?;
            if !line.tentative.is_empty() {
                write!(self.out, "{DIM}{}{RESET}", line.tentative)?;
            }
        }
        self.drawn = frame.live.len();
        self.out.flush()
    }

    /// Prints a status line above the captions (a reconnection, a warning).
    pub fn notice(&mut self, text: &str, frame: &Frame) -> io::Result<()> {
        self.erase()?;
        writeln!(self.out, "{DIM}[{text}]{RESET}")?;
        let live = Frame {
            finished: Vec::new(),
            live: frame.live.clone(),
        };
        self.draw(&live)
    }

    /// Prints the last lines as finished and leaves the cursor on a fresh line.
    pub fn finish(&mut self, lines: &[String]) -> io::Result<()> {
        self.erase()?;
        for line in lines {
            writeln!(self.out, "{line}")?;
        }
        self.drawn = 0;
        self.out.flush()
    }

    /// Moves to the start of the live area and clears it.
    fn erase(&mut self) -> io::Result<()> {
        if self.drawn == 0 {
            return Ok(());
        }
        self.out.write_all(b"\r")?;
        if self.drawn > 1 {
            write!(self.out, "\x1b[{}A", self.drawn - 1)?;
        }
        self.out.write_all(b"\x1b[J")?;
        self.drawn = 0;
        Ok(())
    }
}

/// Columns of the terminal on `fd`, if it is one.
pub fn columns(fd: i32) -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a live,
    // properly aligned value; an invalid fd only makes the call fail.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::super::board::LiveLine;
    use super::*;

    fn live(c: &str, t: &str) -> LiveLine {
        LiveLine {
            committed: c.into(),
            tentative: t.into(),
        }
    }

    #[test]
    fn live_lines_are_redrawn_in_place() {
        let mut term = Terminal::new(Vec::new());
        term.draw(&Frame {
            finished: vec![],
            live: vec![live("Turn on", " the"), live("", "kitchen")],
        })
        .unwrap();
        term.draw(&Frame {
            finished: vec!["Turn on the".into()],
            live: vec![live("kitchen lights", "")],
        })
        .unwrap();
        term.finish(&["kitchen lights".into()]).unwrap();
        let out = String::from_utf8(term.out).unwrap();
        assert_eq!(
            out,
            "Turn on\x1b[2m the\x1b[0m\n\x1b[2mkitchen\x1b[0m\
             \r\x1b[1A\x1b[J\
             Turn on the\nkitchen lights\
             \r\x1b[Jkitchen lights\n"
        );
    }

    #[test]
    fn a_pipe_has_no_columns() {
        let (reader, _writer) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(columns(reader.as_raw_fd()), None);
    }
}
