//! `hark captions` through the real harkd: the live terminal display checked through tmux,
//! and subtitle cues written while it runs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            return None;
        }
        Some(Tmux {
            socket: format!("hark-test-{}", std::process::id()),
        })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// The visible pane; with `escapes`, including colour and attribute sequences.
    fn capture(&self, escapes: bool) -> String {
        let mut c = self.cmd();
        c.args(["capture-pane", "-p", "-t", "captions"]);
        if escapes {
            c.arg("-e");
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

#[test]
fn live_captions_in_a_terminal() {
    let Some(tmux) = Tmux::new() else {
        panic!("tmux is needed for this test: apt-get install -y tmux");
    };
    let daemon = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (speech, _) = speech_with_gaps(dir.path(), &["coffee.wav", "lights.wav"], 0.8);
    let cues = dir.path().join("live.vtt");
    // The command prints a marker when done and stays, so the final screen can be read; its
    // status line on stderr is left out so the screen holds captions only.
    let command = format!(
        "{} captions --server {} --input {} --width 40 --lines 2 --cues {} 2>/dev/null; echo \"[exit $?]\"; sleep 600",
        shell_quote(Path::new(env!("CARGO_BIN_EXE_hark"))),
        daemon.url(),
        shell_quote(&speech),
        shell_quote(&cues)
    );
    let status = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "captions",
            "-x",
            "60",
            "-y",
            "20",
        ])
        .args(["sh", "-c", &command])
        .status()
        .unwrap();
    assert!(status.success());

    // While it runs: look for the dimmed tentative tail, and for a cue file that grows before
    // the end.
    let mut saw_tentative = false;
    let mut cues_while_running = 0;
    let mut screen = String::new();
    wait_for("hark captions to finish", Duration::from_secs(120), || {
        let styled = tmux.capture(true);
        saw_tentative |= styled.contains("\x1b[2m");
        screen = tmux.capture(false);
        if !screen.contains("[exit") {
            let text = std::fs::read_to_string(&cues).unwrap_or_default();
            cues_while_running = cues_while_running.max(text.matches(" --> ").count());
        }
        screen.contains("[exit")
    });
    assert!(screen.contains("[exit 0]"), "{screen}");
    let caption_lines: Vec<&str> = screen
        .lines()
        .take_while(|l| !l.starts_with("[exit"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!caption_lines.is_empty(), "{screen}");
    for line in &caption_lines {
        assert!(
            line.chars().count() <= 40,
            "line wider than --width: {line:?}"
        );
    }
    let shown = caption_lines.join(" ");
    let mut expected = clip_words("coffee.wav");
    expected.extend(clip_words("lights.wav"));
    assert_says(&shown, &expected);

    // The screen shows exactly the final text the cues hold.
    let vtt = std::fs::read_to_string(&cues).unwrap();
    assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
    let cue_text: Vec<&str> = vtt
        .split("\n\n")
        .skip(1)
        .filter(|b| b.contains(" --> "))
        .flat_map(|b| b.lines().skip(1))
        .collect();
    assert!(!cue_text.is_empty(), "{vtt}");
    // (Compared without whitespace: both wrap lines, at different widths.)
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    assert_eq!(
        squeeze(&cue_text.join(" ")),
        squeeze(&shown),
        "screen:\n{screen}\ncues:\n{vtt}"
    );
    // Cues were written live: the first segment's cue existed before the program ended.
    assert!(cues_while_running >= 1, "no cue before the end:\n{vtt}");
    eprintln!("tentative tail seen dimmed: {saw_tentative}");
}

#[test]
fn plain_captions_and_srt_cues_on_stdout() {
    let daemon = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (speech, total) = speech_with_gaps(dir.path(), &["hello.wav", "lights.wav"], 1.0);

    // Not a terminal: one line per segment, with times.
    let (out, _) = run_ok(
        hark()
            .args([
                "captions",
                "--server",
                &daemon.url(),
                "--fast",
                "--timestamps",
                "--input",
            ])
            .arg(&speech),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty(), "{out}");
    for l in &lines {
        assert!(l.starts_with("[00:00:0") && l.len() > 11, "{l:?}");
    }
    let mut expected = clip_words("hello.wav");
    expected.extend(clip_words("lights.wav"));
    assert_says(&out, &expected);

    // Cues to stdout replace the display.
    let (srt, _) = run_ok(
        hark()
            .args([
                "captions",
                "--server",
                &daemon.url(),
                "--fast",
                "--cues",
                "-",
            ])
            .args(["--cue-format", "srt", "--input"])
            .arg(&speech),
    );
    assert!(srt.starts_with("1\n00:00:"), "{srt}");
    let last_end = srt
        .lines()
        .filter_map(|l| l.split_once(" --> ").map(|(_, b)| b.to_owned()))
        .next_back()
        .unwrap();
    let secs: f64 = last_end[6..].replace(',', ".").parse().unwrap();
    assert!(secs <= total as f64 / 16_000.0 + 0.05, "{srt}");
}
