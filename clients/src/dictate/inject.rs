//! Getting text into the focused window.
//!
//! The injector is chosen once, at start: the first available of `wtype` (Wayland),
//! `ydotool` (any session, needs its daemon), `xdotool` (X11), else the clipboard (`wl-copy`,
//! `xclip`, `xsel`). `--injector` overrides the choice, including `cmd:PROGRAM ARGS…`, which
//! hands each piece of text to any program on its stdin (a custom typing tool, a logger, an
//! editor plugin), and `stdout`. Every tool gets the text on stdin, so text that starts with
//! `-` or holds quotes reaches it unchanged.

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What `--injector` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectorChoice {
    /// Detect: wtype, ydotool, xdotool, then the clipboard.
    Auto,
    /// One specific injector.
    Fixed(Injector),
}

impl FromStr for InjectorChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => InjectorChoice::Auto,
            "wtype" => InjectorChoice::Fixed(Injector::Wtype),
            "ydotool" => InjectorChoice::Fixed(Injector::Ydotool),
            "xdotool" => InjectorChoice::Fixed(Injector::Xdotool),
            "wl-copy" => InjectorChoice::Fixed(Injector::Clipboard(Clipboard::WlCopy)),
            "xclip" => InjectorChoice::Fixed(Injector::Clipboard(Clipboard::Xclip)),
            "xsel" => InjectorChoice::Fixed(Injector::Clipboard(Clipboard::Xsel)),
            "stdout" => InjectorChoice::Fixed(Injector::Stdout),
            "clipboard" => {
                return Ok(InjectorChoice::Fixed(Injector::Clipboard(
                    Clipboard::Detect,
                )));
            }
            other => match other.strip_prefix("cmd:") {
                Some(command) => {
                    let argv: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
                    if argv.is_empty() {
                        return Err("cmd: needs a program, as in cmd:/path/to/program".into());
                    }
                    InjectorChoice::Fixed(Injector::Command(argv))
                }
                None => {
                    return Err(format!(
                        "unknown injector `{other}` (auto, wtype, ydotool, xdotool, clipboard, \
                         wl-copy, xclip, xsel, stdout or cmd:PROGRAM)"
                    ));
                }
            },
        })
    }
}

/// Clipboard tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clipboard {
    /// Pick the session's tool at start.
    Detect,
    /// Wayland.
    WlCopy,
    /// X11.
    Xclip,
    /// X11.
    Xsel,
}

/// A way to deliver text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injector {
    /// Wayland virtual keyboard.
    Wtype,
    /// Kernel uinput (needs ydotoold).
    Ydotool,
    /// X11 XTEST.
    Xdotool,
    /// The clipboard holds everything dictated since the last start; paste it.
    Clipboard(Clipboard),
    /// Any program, given the text on stdin.
    Command(Vec<String>),
    /// Print the text.
    Stdout,
}

impl fmt::Display for Injector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Injector::Wtype => f.write_str("wtype"),
            Injector::Ydotool => f.write_str("ydotool"),
            Injector::Xdotool => f.write_str("xdotool"),
            Injector::Clipboard(Clipboard::WlCopy) => f.write_str("clipboard (wl-copy)"),
            Injector::Clipboard(Clipboard::Xclip) => f.write_str("clipboard (xclip)"),
            Injector::Clipboard(Clipboard::Xsel) => f.write_str("clipboard (xsel)"),
            Injector::Clipboard(Clipboard::Detect) => f.write_str("clipboard"),
            Injector::Command(argv) => write!(f, "command `{}`", argv.join(" ")),
            Injector::Stdout => f.write_str("stdout"),
        }
    }
}

/// The parts of the environment injector detection looks at.
#[derive(Debug, Clone, Default)]
pub struct Desktop {
    /// A Wayland session (`WAYLAND_DISPLAY` set).
    pub wayland: bool,
    /// An X11 display (`DISPLAY` set).
    pub x11: bool,
    /// The program search path.
    pub path: Option<OsString>,
}

impl Desktop {
    /// This process's environment.
    pub fn current() -> Self {
        let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        Desktop {
            wayland: set("WAYLAND_DISPLAY"),
            x11: set("DISPLAY"),
            path: std::env::var_os("PATH"),
        }
    }

    /// Where `program` is on the search path, if it is there and executable.
    pub fn find(&self, program: &str) -> Option<PathBuf> {
        let path = self.path.as_ref()?;
        std::env::split_paths(path)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    }

    fn has(&self, program: &str) -> bool {
        self.find(program).is_some()
    }

    /// The clipboard tool of this session.
    fn clipboard(&self) -> Option<Clipboard> {
        if self.wayland && self.has("wl-copy") {
            Some(Clipboard::WlCopy)
        } else if self.x11 && self.has("xclip") {
            Some(Clipboard::Xclip)
        } else if self.x11 && self.has("xsel") {
            Some(Clipboard::Xsel)
        } else {
            None
        }
    }

    /// Resolves `--injector` to a usable injector, or says why there is none.
    pub fn choose(&self, choice: &InjectorChoice) -> Result<Injector> {
        let injector = match choice {
            InjectorChoice::Auto => {
                if self.wayland && self.has("wtype") {
                    Injector::Wtype
                } else if self.has("ydotool") {
                    Injector::Ydotool
                } else if self.x11 && self.has("xdotool") {
                    Injector::Xdotool
                } else if let Some(clip) = self.clipboard() {
                    Injector::Clipboard(clip)
                } else {
                    bail!(
                        "no way to type text here: install wtype (Wayland), ydotool or xdotool \
                         (X11), or wl-copy/xclip for the clipboard; or print the text with \
                         --stdout, or pass it to a program with --injector cmd:PROGRAM"
                    );
                }
            }
            InjectorChoice::Fixed(Injector::Clipboard(Clipboard::Detect)) => {
                Injector::Clipboard(self.clipboard().context(
                    "no clipboard tool: install wl-copy (Wayland) or xclip / xsel (X11)",
                )?)
            }
            InjectorChoice::Fixed(fixed) => fixed.clone(),
        };
        if let Some(program) = injector.program()
            && !self.has(program)
            && !Path::new(program).is_absolute()
        {
            bail!("the {injector} injector needs `{program}`, which is not on PATH");
        }
        if let Some(program) = injector.program()
            && Path::new(program).is_absolute()
            && !is_executable(Path::new(program))
        {
            bail!("the {injector} injector needs `{program}`, which is not an executable file");
        }
        Ok(injector)
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Injector {
    /// The program this injector runs.
    fn program(&self) -> Option<&str> {
        Some(match self {
            Injector::Wtype => "wtype",
            Injector::Ydotool => "ydotool",
            Injector::Xdotool => "xdotool",
            Injector::Clipboard(Clipboard::WlCopy) => "wl-copy",
            Injector::Clipboard(Clipboard::Xclip) => "xclip",
            Injector::Clipboard(Clipboard::Xsel) => "xsel",
            Injector::Command(argv) => argv.first()?,
            Injector::Clipboard(Clipboard::Detect) | Injector::Stdout => return None,
        })
    }

    /// Program and arguments; the text goes to stdin.
    fn argv(&self) -> Vec<String> {
        let v = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect();
        match self {
            Injector::Wtype => v(&["wtype", "-"]),
            Injector::Ydotool => v(&["ydotool", "type", "--file", "-"]),
            Injector::Xdotool => v(&["xdotool", "type", "--clearmodifiers", "--file", "-"]),
            Injector::Clipboard(Clipboard::WlCopy) => v(&["wl-copy"]),
            Injector::Clipboard(Clipboard::Xclip) => v(&["xclip", "-selection", "clipboard"]),
            Injector::Clipboard(Clipboard::Xsel) => v(&["xsel", "--clipboard", "--input"]),
            Injector::Command(argv) => argv.clone(),
            Injector::Clipboard(Clipboard::Detect) | Injector::Stdout => Vec::new(),
        }
    }
}

/// Delivers text with one injector, in order.
pub struct Typer {
    injector: Injector,
    /// Everything since the last [`Typer::restart`], for the clipboard.
    clipboard: String,
    wrote_stdout: bool,
}

impl Typer {
    /// A typer using `injector`.
    pub fn new(injector: Injector) -> Self {
        Typer {
            injector,
            clipboard: String::new(),
            wrote_stdout: false,
        }
    }

    /// The injector in use.
    pub fn injector(&self) -> &Injector {
        &self.injector
    }

    /// A new dictation began (push-to-talk pressed): the clipboard starts over.
    pub fn restart(&mut self) {
        self.clipboard.clear();
    }

    /// Types `text` (waits until the tool is done, so pieces never interleave).
    pub async fn type_text(&mut self, text: &str) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let input = match &self.injector {
            Injector::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())?;
                out.flush()?;
                self.wrote_stdout = true;
                return Ok(());
            }
            Injector::Clipboard(_) => {
                self.clipboard.push_str(text);
                self.clipboard.clone()
            }
            _ => text.to_owned(),
        };
        let argv = self.injector.argv();
        let (program, args) = argv.split_first().context("the injector has no program")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {program}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A tool that exits without reading everything is judged by its exit status.
            match stdin.write_all(input.as_bytes()).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                self.injector,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Ends the output (a newline after text printed to stdout).
    pub fn finish(&mut self) -> Result<()> {
        if self.wrote_stdout {
            println!();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desktop(wayland: bool, x11: bool, programs: &[&str]) -> (tempfile::TempDir, Desktop) {
        let dir = tempfile::tempdir().unwrap();
        for p in programs {
            let path = dir.path().join(p);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // A non-executable file never counts.
        std::fs::write(dir.path().join("xsel"), "").unwrap();
        let d = Desktop {
            wayland,
            x11,
            path: Some(dir.path().as_os_str().to_owned()),
        };
        (dir, d)
    }

    fn auto(d: &Desktop) -> Result<Injector> {
        d.choose(&InjectorChoice::Auto)
    }

    #[test]
    fn detection_follows_the_fallback_chain() {
        let all = ["wtype", "ydotool", "xdotool", "wl-copy", "xclip"];
        let (_t, d) = desktop(true, true, &all);
        assert_eq!(auto(&d).unwrap(), Injector::Wtype);
        // wtype needs Wayland.
        let (_t, d) = desktop(false, true, &all);
        assert_eq!(auto(&d).unwrap(), Injector::Ydotool);
        let (_t, d) = desktop(false, true, &["wtype", "xdotool", "xclip"]);
        assert_eq!(auto(&d).unwrap(), Injector::Xdotool);
        // xdotool needs X11.
        let (_t, d) = desktop(true, false, &["xdotool", "wl-copy"]);
        assert_eq!(auto(&d).unwrap(), Injector::Clipboard(Clipboard::WlCopy));
        let (_t, d) = desktop(false, true, &["xclip"]);
        assert_eq!(auto(&d).unwrap(), Injector::Clipboard(Clipboard::Xclip));
        let (_t, d) = desktop(true, true, &[]);
        let err = auto(&d).unwrap_err().to_string();
        assert!(err.contains("--stdout") && err.contains("wtype"), "{err}");
    }

    #[test]
    fn explicit_choices_are_checked() {
        let (_t, d) = desktop(false, false, &["xdotool"]);
        let fixed = |s: &str| d.choose(&s.parse().unwrap());
        assert_eq!(fixed("xdotool").unwrap(), Injector::Xdotool);
        let err = fixed("wtype").unwrap_err().to_string();
        assert!(err.contains("not on PATH"), "{err}");
        assert!(fixed("clipboard").is_err());
        assert_eq!(fixed("stdout").unwrap(), Injector::Stdout);
        assert!(fixed("cmd:/nonexistent/typer").is_err());
        assert_eq!(
            fixed("cmd:xdotool --x").unwrap(),
            Injector::Command(vec!["xdotool".into(), "--x".into()])
        );
        assert!("cmd:".parse::<InjectorChoice>().is_err());
        assert!("keyboard".parse::<InjectorChoice>().is_err());
    }

    #[tokio::test]
    async fn a_command_injector_gets_each_piece_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("typed.txt");
        let script = dir.path().join("record");
        std::fs::write(&script, "#!/bin/sh\ncat >> \"$1\"\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let choice: InjectorChoice = format!("cmd:{} {}", script.display(), log.display())
            .parse()
            .unwrap();
        let injector = Desktop::default().choose(&choice).unwrap();
        let mut typer = Typer::new(injector);
        for piece in ["-n Turn on", " the \"kitchen\"", " lights."] {
            typer.type_text(piece).await.unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "-n Turn on the \"kitchen\" lights."
        );
    }

    #[tokio::test]
    async fn a_failing_tool_is_reported() {
        let mut typer = Typer::new(Injector::Command(vec!["false".into()]));
        let err = typer.type_text("x").await.unwrap_err().to_string();
        assert!(err.contains("failed"), "{err}");
    }
}
