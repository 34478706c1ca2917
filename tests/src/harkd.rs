//! Starting and stopping the real `harkd`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Default token budget in tests: the random fixture model never emits a stop token, so every
/// hypothesis runs to the budget; a small one keeps tests fast.
pub const TEST_MAX_NEW_TOKENS: usize = 24;

/// How to start a daemon.
#[derive(Debug, Clone)]
pub struct Builder {
    model: Option<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    max_new_tokens: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            model: Some(crate::fixture_model()),
            args: Vec::new(),
            envs: Vec::new(),
            max_new_tokens: TEST_MAX_NEW_TOKENS,
        }
    }
}

impl Builder {
    /// Use the embedded default model (no `--model`).
    pub fn embedded_model(mut self) -> Self {
        self.model = None;
        self
    }

    /// Extra command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn max_new_tokens(mut self, n: usize) -> Self {
        self.max_new_tokens = n;
        self
    }

    /// The model the daemon serves (`None`: embedded default).
    pub fn model(&self) -> Option<&std::path::Path> {
        self.model.as_deref()
    }

    /// The token budget the daemon uses (for offline comparisons).
    pub fn token_budget(&self) -> usize {
        self.max_new_tokens
    }

    /// Start the daemon and wait until it listens (the model may still be loading).
    pub fn spawn(self) -> Harkd {
        let mut cmd = Command::new(crate::binary("harkd"));
        cmd.args(["--listen", "127.0.0.1:0", "--max-new-tokens"])
            .arg(self.max_new_tokens.to_string());
        if let Some(model) = &self.model {
            cmd.arg("--model").arg(model);
        }
        cmd.args(&self.args)
            .env("HARKD_LOG", "info")
            .env_remove("HARKD_CONFIG")
            .env_remove("HARKD_TOKEN")
            .env_remove("HARKD_MODEL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start harkd");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(addr) = rest
                        .split_whitespace()
                        .next()
                        .and_then(|a| a.trim_end_matches(',').parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "harkd did not start listening; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Harkd {
            child: Some(child),
            addr,
            log,
        }
    }

    /// Start the daemon and wait until `/healthz` reports it ready.
    pub fn start(self) -> Harkd {
        let h = self.spawn();
        h.wait_ready(Duration::from_secs(120));
        h
    }
}

/// A running daemon; killed when dropped.
pub struct Harkd {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Harkd {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// `ws://ADDR/PATH`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Poll `/healthz` until it answers 200.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = crate::http::get(self.addr, "/healthz", &[])
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "harkd not ready after {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the daemon.
    pub fn get(&self, path: &str, headers: &[&str]) -> crate::http::Response {
        crate::http::get(self.addr, path, headers).expect("HTTP request to harkd")
    }

    /// Send SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Wait for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait for harkd") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "harkd did not exit within {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Harkd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
