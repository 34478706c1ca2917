//! Push-to-talk control: `hark dictate start|stop|toggle|status` talk to the running
//! dictation over a Unix socket in `$XDG_RUNTIME_DIR`, so a compositor hotkey can drive it
//! (`bindsym --no-repeat F9 exec hark dictate start`, `bindsym --release F9 exec hark dictate
//! stop`).
//!
//! The protocol is one line each way: the command, then `ok <state>` or `error <why>`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

/// A control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start listening (push-to-talk pressed; resume in continuous mode).
    Start,
    /// Stop listening and finish the utterance (push-to-talk released; pause).
    Stop,
    /// Start if stopped, stop if started.
    Toggle,
    /// Report the state.
    Status,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Stop => "stop",
            Command::Toggle => "toggle",
            Command::Status => "status",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "start" => Command::Start,
            "stop" => Command::Stop,
            "toggle" => Command::Toggle,
            "status" => Command::Status,
            _ => return None,
        })
    }
}

/// A command from a control client, with the way to answer it.
pub type Request = (Command, oneshot::Sender<String>);

/// The default socket: `$XDG_RUNTIME_DIR/hark/dictate.sock`, or a per-user directory in
/// /tmp when there is no runtime directory.
pub fn default_socket() -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("hark"),
        // SAFETY: getuid has no preconditions and cannot fail.
        None => std::env::temp_dir().join(format!("hark-{}", unsafe { libc::getuid() })),
    };
    dir.join("dictate.sock")
}

/// The listening end, owned by the running dictation. Removes its socket when dropped.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlServer {
    /// Listens on `path` and forwards every command to `requests`. Refuses when another
    /// dictation already answers there; replaces a stale socket left by a crash.
    pub fn bind(path: &Path, requests: mpsc::Sender<Request>) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Only this user may drive the dictation.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "another `hark dictate` is already running (control socket {})",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        let task = tokio::spawn(serve(listener, requests));
        Ok(ControlServer {
            path: path.to_owned(),
            task,
        })
    }
}

async fn serve(listener: UnixListener, requests: mpsc::Sender<Request>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read).take(256);
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match Command::parse(&line) {
                Some(cmd) => {
                    let (tx, rx) = oneshot::channel();
                    if requests.send((cmd, tx)).await.is_err() {
                        "error dictation is shutting down".to_owned()
                    } else {
                        rx.await
                            .unwrap_or_else(|_| "error dictation is shutting down".into())
                    }
                }
                None => format!(
                    "error unknown command {:?} (start, stop, toggle, status)",
                    line.trim()
                ),
            };
            let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
        });
    }
}

/// Sends `cmd` to the dictation listening on `path`; returns its reply (`ok …`).
pub fn send(path: &Path, cmd: Command) -> Result<String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "no `hark dictate` is running (cannot connect to {}: {e}); start one first, e.g. \
             `systemctl --user start hark-dictate`",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{}\n", cmd.as_str()).as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .context("no reply from the dictation")?;
    let reply = reply.trim().to_owned();
    match reply.strip_prefix("error ") {
        Some(why) => bail!("{why}"),
        None => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_round_trip_and_a_second_instance_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dictate.sock");
        let (tx, mut rx) = mpsc::channel::<Request>(4);
        let server = ControlServer::bind(&path, tx.clone()).unwrap();
        tokio::spawn(async move {
            let mut on = false;
            while let Some((cmd, reply)) = rx.recv().await {
                on = match cmd {
                    Command::Start => true,
                    Command::Stop => false,
                    Command::Toggle => !on,
                    Command::Status => on,
                };
                let _ = reply.send(format!("ok {}", if on { "listening" } else { "idle" }));
            }
        });
        let p = path.clone();
        let replies = tokio::task::spawn_blocking(move || {
            [
                Command::Start,
                Command::Status,
                Command::Toggle,
                Command::Toggle,
            ]
            .map(|c| send(&p, c).unwrap())
        })
        .await
        .unwrap();
        assert_eq!(
            replies,
            ["ok listening", "ok listening", "ok idle", "ok listening"]
        );

        let err = ControlServer::bind(&path, tx).err().unwrap().to_string();
        assert!(err.contains("already running"), "{err}");

        // Unknown commands get an error line.
        let p = path.clone();
        let raw = tokio::task::spawn_blocking(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            s.write_all(b"explode\n").unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        assert!(raw.starts_with("error unknown command"), "{raw}");

        drop(server);
        assert!(!path.exists());
        let err = send(&path, Command::Start).unwrap_err().to_string();
        assert!(err.contains("no `hark dictate` is running"), "{err}");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dictate.sock");
        // A socket file nobody listens on, as a crashed instance leaves behind.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (tx, _rx) = mpsc::channel::<Request>(1);
        let _server = ControlServer::bind(&path, tx).unwrap();
    }
}
