//! `hark dictate`: speech typed into the focused window, through harkd.
//!
//! Two modes. **Push-to-talk** (the default): audio goes to the daemon only between
//! `hark dictate start` and `hark dictate stop` (bind them to a key press and release), with
//! a short pre-roll so the first syllable is not cut; `stop` flushes, so the utterance is
//! typed at once. **Continuous**: everything is sent and segments end on silence; `stop` and
//! `start` pause and resume. In both, only committed text is typed (see [`typist`]), and
//! nothing is typed on silence: the daemon opens no segment without speech, and blank text is
//! never typed.

mod control;
mod inject;
mod typist;

use std::collections::VecDeque;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use tokio::sync::mpsc;

use crate::input::{AudioInput, Chunk, InputArgs, RATE};
use crate::live;
use crate::remote::{Control, ServerArgs, SessionEvent, SessionOptions, run_session};
use control::{Command, ControlServer, Request};
use inject::{Desktop, InjectorChoice, Typer};
use typist::Typist;

/// How dictation is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Listen only between `hark dictate start` and `stop` (a held hotkey).
    PushToTalk,
    /// Listen all the time; segments end on silence; start/stop resume and pause.
    Continuous,
}

/// Flags of `hark dictate`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DictateArgs {
    #[command(subcommand)]
    pub command: Option<ControlCommand>,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// How dictation is driven.
    #[arg(long, value_enum, default_value_t = Mode::PushToTalk)]
    pub mode: Mode,
    /// How text is delivered: auto (wtype, ydotool, xdotool, then the clipboard), one of
    /// wtype, ydotool, xdotool, clipboard, wl-copy, xclip, xsel, stdout, or cmd:PROGRAM
    /// [ARGS] (the program gets each piece of text on stdin).
    #[arg(long, env = "HARK_INJECTOR", default_value = "auto")]
    pub injector: InjectorChoice,
    /// Print the text on stdout instead of typing it (same as --injector stdout).
    #[arg(long, conflicts_with = "injector")]
    pub stdout: bool,
    /// Type each utterance when it is finished instead of word by word as it is committed.
    #[arg(long)]
    pub finals_only: bool,
    /// Spoken language: a BCP 47 tag (en, de, pt-BR) or an English name (`hark languages`);
    /// default: the server's.
    #[arg(long, value_parser = crate::language::tag)]
    pub language: Option<String>,
    /// Continuous mode: silence in ms that ends an utterance; default: the server's.
    #[arg(long, value_name = "MS")]
    pub endpointing_ms: Option<u32>,
    /// Push-to-talk: audio from just before `start` that is kept, in ms.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub pre_roll_ms: u32,
    /// Control socket [default: $XDG_RUNTIME_DIR/hark/dictate.sock].
    #[arg(long, env = "HARK_DICTATE_SOCKET")]
    pub socket: Option<PathBuf>,
}

/// Commands for a running `hark dictate`.
#[derive(Debug, Clone, Subcommand)]
pub enum ControlCommand {
    /// Start listening (push-to-talk key pressed; resume in continuous mode).
    Start(SocketArg),
    /// Stop listening and type what was said (key released; pause in continuous mode).
    Stop(SocketArg),
    /// Start if stopped, stop if listening (a single hotkey).
    Toggle(SocketArg),
    /// Print whether the dictation is listening.
    Status(SocketArg),
}

/// The socket flag of the control commands.
#[derive(Debug, Clone, Args)]
pub struct SocketArg {
    /// Control socket of the running dictation [default: $XDG_RUNTIME_DIR/hark/dictate.sock].
    #[arg(long, env = "HARK_DICTATE_SOCKET")]
    pub socket: Option<PathBuf>,
}

/// Runs `hark dictate` (the dictation itself, or a control command for it).
pub fn run(args: DictateArgs) -> Result<()> {
    let control = |cmd, socket: SocketArg| -> Result<()> {
        let path = socket.socket.unwrap_or_else(control::default_socket);
        println!("{}", control::send(&path, cmd)?);
        Ok(())
    };
    match args.command.clone() {
        Some(ControlCommand::Start(s)) => control(Command::Start, s),
        Some(ControlCommand::Stop(s)) => control(Command::Stop, s),
        Some(ControlCommand::Toggle(s)) => control(Command::Toggle, s),
        Some(ControlCommand::Status(s)) => control(Command::Status, s),
        None => dictate(args),
    }
}

/// What the audio gate does with captured audio.
struct Gate {
    mode: Mode,
    listening: bool,
    pre_roll: VecDeque<f32>,
    pre_roll_len: usize,
    flushes: u64,
}

impl Gate {
    fn state(&self) -> &'static str {
        if self.listening { "listening" } else { "idle" }
    }

    /// Applies a command; returns what to send to the session.
    fn command(&mut self, cmd: Command) -> Vec<Control> {
        let want = match cmd {
            Command::Start => true,
            Command::Stop => false,
            Command::Toggle => !self.listening,
            Command::Status => return Vec::new(),
        };
        if want == self.listening {
            return Vec::new();
        }
        self.listening = want;
        if want {
            let pre_roll: Vec<f32> = self.pre_roll.drain(..).collect();
            if pre_roll.is_empty() {
                Vec::new()
            } else {
                vec![Control::Audio(pre_roll)]
            }
        } else {
            self.flushes += 1;
            vec![Control::Flush(Some(format!("stop-{}", self.flushes)))]
        }
    }

    /// Routes captured audio: to the session while listening, else into the pre-roll.
    fn audio(&mut self, samples: Vec<f32>) -> Option<Control> {
        if self.listening {
            return Some(Control::Audio(samples));
        }
        if self.mode == Mode::PushToTalk && self.pre_roll_len > 0 {
            self.pre_roll.extend(samples);
            let excess = self.pre_roll.len().saturating_sub(self.pre_roll_len);
            self.pre_roll.drain(..excess);
        }
        None
    }
}

fn dictate(args: DictateArgs) -> Result<()> {
    let endpoint = args.server.endpoint()?;
    let choice = if args.stdout {
        InjectorChoice::Fixed(inject::Injector::Stdout)
    } else {
        args.injector.clone()
    };
    let injector = Desktop::current().choose(&choice)?;
    let socket = args.socket.clone().unwrap_or_else(control::default_socket);
    let mut opts = SessionOptions::new("dictation");
    opts.language = args.language.clone();
    opts.partials = !args.finals_only;
    opts.endpointing_ms = match args.mode {
        // Utterances end when the key is released, however long the pauses inside them.
        Mode::PushToTalk => Some(0),
        Mode::Continuous => args.endpointing_ms,
    };
    let input = AudioInput::start(&args.input, live::frame_for(args.input.fast))?;
    let rt = live::runtime()?;
    rt.block_on(async move {
        let (req_tx, req_rx) = mpsc::channel::<Request>(16);
        let _server = ControlServer::bind(&socket, req_tx)?;
        eprintln!(
            "hark dictate: {} mode, {} → {}, typing with {}; control: hark dictate \
             start|stop|toggle (socket {})",
            match args.mode {
                Mode::PushToTalk => "push-to-talk",
                Mode::Continuous => "continuous",
            },
            input.description(),
            endpoint.url(),
            injector,
            socket.display()
        );
        live::stop_on_signal(input.stopper());
        let gate = Gate {
            mode: args.mode,
            listening: args.mode == Mode::Continuous,
            pre_roll: VecDeque::new(),
            pre_roll_len: (u64::from(args.pre_roll_ms) * u64::from(RATE) / 1000) as usize,
            flushes: 0,
        };
        let (tx, rx) = mpsc::channel(64);
        let (type_tx, type_rx) = mpsc::unbounded_channel::<Typing>();
        let gate_task = tokio::spawn(run_gate(input, req_rx, tx, gate, type_tx.clone()));
        let typer_task = tokio::spawn(run_typer(Typer::new(injector), type_rx));
        let mut typist = Typist::new(args.finals_only);
        let result = run_session(&endpoint, &opts, rx, |event| {
            let text = match &event {
                SessionEvent::Partial(p) => typist.partial(p),
                SessionEvent::Final(f) => typist.final_(f),
                SessionEvent::Flushed(f) => {
                    tracing::debug!("utterance {:?} finished", f.id);
                    None
                }
                SessionEvent::Warning(w) => {
                    tracing::warn!("harkd: {} ({})", w.message, w.code);
                    None
                }
                SessionEvent::Disconnected(why) => {
                    eprintln!("hark dictate: connection lost ({why}); reconnecting");
                    None
                }
                SessionEvent::Reconnected { resumed, .. } => {
                    eprintln!(
                        "hark dictate: reconnected ({})",
                        if *resumed { "resumed" } else { "new session" }
                    );
                    None
                }
                _ => None,
            };
            if let Some(text) = text {
                let _ = type_tx.send(Typing::Text(text));
            }
        })
        .await;
        drop(type_tx);
        let typed = typer_task.await.context("the typing task failed")?;
        result?;
        match gate_task.await {
            Ok(r) => r?,
            Err(e) => bail!("the audio task failed: {e}"),
        }
        typed
    })
}

/// Work for the typing task.
enum Typing {
    /// Type this.
    Text(String),
    /// A new push-to-talk utterance began.
    Restart,
}

/// Types text in order; a failing injector is reported once per failure and dictation goes
/// on (the next piece may work, e.g. after ydotoold was started).
async fn run_typer(mut typer: Typer, mut rx: mpsc::UnboundedReceiver<Typing>) -> Result<()> {
    while let Some(work) = rx.recv().await {
        match work {
            Typing::Text(text) => {
                if let Err(e) = typer.type_text(&text).await {
                    eprintln!("hark dictate: cannot type with {}: {e:#}", typer.injector());
                }
            }
            Typing::Restart => typer.restart(),
        }
    }
    typer.finish()
}

/// Moves audio to the session according to the push-to-talk state, and answers control
/// commands. Ends (closing the session) when the audio input ends.
async fn run_gate(
    mut input: AudioInput,
    mut requests: mpsc::Receiver<Request>,
    tx: mpsc::Sender<Control>,
    mut gate: Gate,
    typing: mpsc::UnboundedSender<Typing>,
) -> Result<()> {
    let result = loop {
        tokio::select! {
            chunk = input.recv() => match chunk {
                Some(Chunk::Samples(s)) => {
                    if let Some(ctl) = gate.audio(s)
                        && tx.send(ctl).await.is_err()
                    {
                        break Ok(());
                    }
                }
                Some(Chunk::Failed(e)) => break Err(e).context("audio capture failed"),
                None => break Ok(()),
            },
            Some((cmd, reply)) = requests.recv() => {
                let was = gate.listening;
                for ctl in gate.command(cmd) {
                    let _ = tx.send(ctl).await;
                }
                if !was && gate.listening {
                    let _ = typing.send(Typing::Restart);
                }
                let _ = reply.send(format!("ok {}", gate.state()));
            }
        }
    };
    let _ = tx.send(Control::Close).await;
    result
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn gate(mode: Mode) -> Gate {
        Gate {
            mode,
            listening: mode == Mode::Continuous,
            pre_roll: VecDeque::new(),
            pre_roll_len: 4,
            flushes: 0,
        }
    }

    #[test]
    fn push_to_talk_sends_only_while_held_with_a_pre_roll() {
        let mut g = gate(Mode::PushToTalk);
        assert!(g.audio(vec![1.0, 2.0, 3.0]).is_none());
        assert!(g.audio(vec![4.0, 5.0, 6.0]).is_none());
        let sent = g.command(Command::Start);
        // The newest `pre_roll_len` samples go first.
        assert!(matches!(&sent[..], [Control::Audio(a)] if a == &[3.0, 4.0, 5.0, 6.0]));
        assert!(matches!(g.audio(vec![7.0]), Some(Control::Audio(_))));
        assert!(g.command(Command::Start).is_empty());
        let sent = g.command(Command::Stop);
        assert!(matches!(&sent[..], [Control::Flush(Some(id))] if id == "stop-1"));
        assert!(g.command(Command::Stop).is_empty());
        assert!(g.audio(vec![8.0]).is_none());
        assert!(!g.command(Command::Toggle).is_empty());
        assert_eq!(g.state(), "listening");
        assert!(g.command(Command::Status).is_empty());
    }

    #[test]
    fn continuous_mode_pauses_without_a_pre_roll() {
        let mut g = gate(Mode::Continuous);
        assert!(g.audio(vec![1.0]).is_some());
        assert!(matches!(
            &g.command(Command::Toggle)[..],
            [Control::Flush(_)]
        ));
        assert!(g.audio(vec![2.0]).is_none());
        assert!(
            g.command(Command::Start).is_empty(),
            "no pre-roll to replay"
        );
        assert!(g.audio(vec![3.0]).is_some());
    }

    /// The CLI as the systemd unit invokes it.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: DictateArgs,
    }

    #[test]
    fn the_systemd_unit_runs_a_valid_command() {
        let unit = include_str!("../../systemd/hark-dictate.service");
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart line");
        let argv: Vec<&str> = exec.split_whitespace().collect();
        assert!(argv[0].ends_with("/hark"), "{exec}");
        assert_eq!(argv[1], "dictate");
        let cli = Cli::try_parse_from(std::iter::once("dictate").chain(argv[2..].iter().copied()))
            .unwrap();
        assert!(cli.args.command.is_none());
        for key in ["PartOf=graphical-session.target", "Restart=on-failure"] {
            assert!(unit.contains(key), "missing {key}");
        }
    }

    #[test]
    fn control_commands_parse() {
        let cli = Cli::try_parse_from(["dictate", "toggle", "--socket", "/tmp/s"]).unwrap();
        assert!(matches!(
            cli.args.command,
            Some(ControlCommand::Toggle(SocketArg { socket: Some(_) }))
        ));
        assert!(Cli::try_parse_from(["dictate", "--mode", "continuous", "stop"]).is_err());
    }
}
