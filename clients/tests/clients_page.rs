//! The captions page harkd serves at `/captions`, in headless Chromium driven over the
//! DevTools protocol: audio from a URL (`?src=`) and from a (fake) microphone, a wrong token
//! and an unreachable daemon. The page's text is read from the DOM and a screenshot is kept
//! in `target/tmp/` as an artifact.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::*;

/// Serves one file to any GET, with CORS so a page from another origin may fetch it.
fn serve_file(path: &Path) -> SocketAddr {
    let bytes = std::fs::read(path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\n\
                 Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&bytes);
        }
    });
    addr
}

/// A port that counts the connections made to it (and closes them): a server the page must
/// not reach unless the user agreed.
fn counting_port() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, count)
}

fn chromium_binary() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(dir) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .find(|d| d.join(name).is_file())
        {
            return dir.join(name);
        }
    }
    panic!("Chromium is needed for this test: apt-get install -y chromium");
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws_url: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch(fake_mic: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1000,600",
                "--remote-debugging-port=0",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
            ])
            .arg(format!(
                "--use-file-for-fake-audio-capture={}",
                fake_mic.display()
            ))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // Chromium writes the DevTools port and browser path here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let mut ws_url = String::new();
        wait_for("Chromium's DevTools port", Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&port_file).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                ws_url = format!("ws://127.0.0.1:{port}{path}");
                true
            } else {
                false
            }
        });
        Browser {
            child,
            _profile: profile,
            ws_url,
        }
    }
}

/// A DevTools connection with one page attached (flat session mode).
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    session: Option<String>,
}

impl Page {
    async fn open(browser: &Browser, url: &str) -> Page {
        let (ws, _) = tokio_tungstenite::connect_async(browser.ws_url.as_str())
            .await
            .expect("connect to DevTools");
        let mut page = Page {
            ws,
            next_id: 1,
            session: None,
        };
        let target = page
            .call("Target.createTarget", json!({ "url": url }))
            .await;
        let attached = page
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        page.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        page
    }

    /// Open `url` with `getUserMedia` counted in `window.harkMicOpened` (installed before
    /// the page's own script runs).
    async fn open_counting_microphone(browser: &Browser, url: &str) -> Page {
        let mut page = Page::open(browser, "about:blank").await;
        let counter = "(() => {\n\
            window.harkMicOpened = 0;\n\
            const media = navigator.mediaDevices;\n\
            const getUserMedia = media.getUserMedia.bind(media);\n\
            media.getUserMedia = (c) => { window.harkMicOpened++; return getUserMedia(c); };\n\
            })();";
        page.call("Page.enable", json!({})).await;
        page.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": counter }),
        )
        .await;
        page.call("Page.navigate", json!({ "url": url })).await;
        page
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let reply = self.ws.next().await.expect("DevTools closed").unwrap();
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// The page's state, status line and caption text.
    async fn snapshot(&mut self) -> (String, String, String) {
        let v = self
            .eval(
                "({state: document.body.dataset.state, \
                   status: document.getElementById('status').textContent, \
                   text: document.getElementById('finals').textContent})",
            )
            .await;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (s("state"), s("status"), s("text"))
    }

    /// Polls until the page reaches one of `states`.
    async fn wait_state(&mut self, states: &[&str], limit: Duration) -> (String, String, String) {
        let deadline = Instant::now() + limit;
        loop {
            let snap = self.snapshot().await;
            if states.contains(&snap.0.as_str()) {
                return snap;
            }
            assert!(Instant::now() < deadline, "page stuck: {snap:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 2_000);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_captions_page_streams_a_url_and_a_microphone() {
    let daemon = Daemon::start(&["--token", "pagetoken"]);
    let (status, html) = http_get(daemon.addr, "/captions");
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("captions.js"));
    for asset in ["/captions.js", "/captions.css"] {
        assert_eq!(http_get(daemon.addr, asset).0, 200, "{asset}");
    }

    let dir = tempfile::tempdir().unwrap();
    let (speech, _) = speech_with_gaps(dir.path(), &["coffee.wav", "lights.wav"], 0.8);
    let audio = serve_file(&speech);
    let browser = Browser::launch(&speech);
    let base = format!("http://{}/captions", daemon.addr);
    let mut expected = clip_words("coffee.wav");
    expected.extend(clip_words("lights.wav"));

    // Audio from a URL, streamed at real time.
    let mut page = Page::open(
        &browser,
        &format!("{base}?token=pagetoken&src=http://{audio}/speech.wav"),
    )
    .await;
    let (state, status, text) = page
        .wait_state(&["done", "error"], Duration::from_secs(90))
        .await;
    assert_eq!(state, "done", "{status}");
    assert!(status.starts_with("Finished:"), "{status}");
    assert!(!text.trim().is_empty(), "no captions; status {status}");
    assert_says(&text, &expected);
    let shot = page.screenshot("captions-page.png").await;
    eprintln!("screenshot: {}", shot.display());
    // The screenshot is of the page showing that text.
    let visible = page
        .eval("document.getElementById('captions').innerText")
        .await;
    let tail: String = text.split_whitespace().last().unwrap().to_owned();
    assert!(visible.as_str().unwrap().contains(&tail), "{visible}");

    // The (fake) microphone: the file loops as capture input until Stop is pressed.
    let mut page = Page::open(&browser, &format!("{base}?token=pagetoken&autostart=1")).await;
    page.wait_state(&["listening", "error"], Duration::from_secs(30))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (state, status, text) = page.snapshot().await;
        assert_ne!(state, "error", "{status}");
        if !text.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no captions from the microphone: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    page.eval("document.getElementById('stop').click()").await;
    let (state, status, _) = page
        .wait_state(&["done", "error"], Duration::from_secs(30))
        .await;
    assert_eq!(state, "done", "{status}");
    page.screenshot("captions-page-microphone.png").await;

    // A wrong token and an unreachable daemon are said plainly.
    let mut page = Page::open(
        &browser,
        &format!("{base}?token=wrong&src=http://{audio}/speech.wav"),
    )
    .await;
    let (state, status, _) = page.wait_state(&["error"], Duration::from_secs(30)).await;
    assert_eq!(state, "error");
    assert!(
        status.contains("refused the token") && status.contains("?token="),
        "{status}"
    );

    let down = format!("ws://127.0.0.1:{}", closed_port());
    let mut page = Page::open(
        &browser,
        &format!("{base}?server={down}&src=http://{audio}/speech.wav"),
    )
    .await;
    // Another server: only once the user agrees.
    page.wait_state(&["confirm"], Duration::from_secs(30)).await;
    page.eval("document.getElementById('confirm-send').click()")
        .await;
    let (_, status, _) = page.wait_state(&["error"], Duration::from_secs(30)).await;
    assert!(
        status.contains("Cannot reach harkd") && status.contains(&down),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_captions_page_asks_before_sending_audio_to_another_server() {
    let daemon = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (speech, _) = speech_with_gaps(dir.path(), &["coffee.wav"], 0.5);
    let browser = Browser::launch(&speech);
    let (other, reached) = counting_port();
    let other_url = format!("ws://{other}");
    let link = format!(
        "http://{}/captions?server={other_url}&autostart=1",
        daemon.addr
    );

    // A link naming another server and asking for the microphone at once: the page asks,
    // names the server, and neither opens the microphone nor connects meanwhile.
    let mut page = Page::open_counting_microphone(&browser, &link).await;
    let (state, status, _) = page
        .wait_state(
            &["confirm", "connecting", "listening", "error"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(state, "confirm", "{status}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dialog = page
        .eval(
            "({state: document.body.dataset.state, \
               shown: !document.getElementById('confirm').hidden \
                 && document.getElementById('confirm').getBoundingClientRect().height > 0, \
               text: document.getElementById('confirm-text').textContent, \
               button: document.getElementById('confirm-send').textContent, \
               mic: window.harkMicOpened})",
        )
        .await;
    assert_eq!(dialog["state"], "confirm", "{dialog}");
    assert_eq!(dialog["shown"], true, "{dialog}");
    let named = other.to_string();
    assert!(
        dialog["text"].as_str().unwrap().contains(&named),
        "{dialog}"
    );
    assert!(
        dialog["button"].as_str().unwrap().contains(&named),
        "{dialog}"
    );
    assert_eq!(
        dialog["mic"], 0,
        "the microphone opened before the user agreed"
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the page reached the other server"
    );
    page.screenshot("captions-page-confirm.png").await;

    // Declining keeps the audio with the page's own server.
    page.eval("document.getElementById('confirm-local').click()")
        .await;
    let (state, status, _) = page
        .wait_state(&["listening", "error"], Duration::from_secs(30))
        .await;
    assert_eq!(state, "listening", "{status}");
    assert_eq!(page.eval("window.harkMicOpened").await, 1);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the page reached the other server"
    );
    page.eval("document.getElementById('stop').click()").await;
    page.wait_state(&["done", "error"], Duration::from_secs(30))
        .await;

    // Agreeing sends it there.
    let mut page = Page::open_counting_microphone(&browser, &link).await;
    page.wait_state(&["confirm"], Duration::from_secs(30)).await;
    page.eval("document.getElementById('confirm-send').click()")
        .await;
    let (_, status, _) = page.wait_state(&["error"], Duration::from_secs(30)).await;
    assert!(status.contains(&other_url), "{status}");
    assert!(reached.load(Ordering::SeqCst) >= 1);
}
