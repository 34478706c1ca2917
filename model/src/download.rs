//! Downloading a model from the Hugging Face hub into the local Hugging Face cache, where
//! [`crate::hub::resolve`] finds it by its repo id.
//!
//! Plain HTTP against the hub's documented endpoints (`HF_ENDPOINT`, default
//! `https://huggingface.co`): the file list with sizes and LFS hashes from
//! `/api/models/<repo>/revision/<rev>?blobs=true`, each file from
//! `/<repo>/resolve/<commit>/<file>`. A file is written to `<name>.incomplete` beside its final
//! place and resumed from there with a `Range` request; its size, and the SHA-256 of LFS files,
//! are checked before it is moved into the snapshot. The token is `HF_TOKEN`, else the file
//! `huggingface-cli login` writes (`$HF_HOME/token`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::hub::{cache_dir, repo_dir};

/// Files a speech checkpoint needs; the rest of a repo (other formats, images) is skipped.
fn wanted(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.ends_with(".json")
        || base.ends_with(".safetensors")
        || base.ends_with(".jinja")
        || base.starts_with("tokenizer")
}

/// A download failed. Each message names the cause once.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{0} is not a repo id (expected org/name)")]
    NotARepo(String),
    #[error("HF_HUB_OFFLINE is set: not downloading {0}")]
    Offline(String),
    #[error("cannot reach {endpoint} ({reason}); check the network connection")]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "{repo} needs authorisation: it is gated, so accept its licence at {endpoint}/{repo} while \
         logged in, then set HF_TOKEN to an access token (huggingface.co/settings/tokens)"
    )]
    Unauthorized { repo: String, endpoint: String },
    #[error("{repo} (revision {revision}) does not exist on {endpoint}")]
    NotFound {
        repo: String,
        revision: String,
        endpoint: String,
    },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: unexpected answer: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{file}: downloaded {got} bytes, expected {expected}")]
    Size {
        file: String,
        got: u64,
        expected: u64,
    },
    #[error("{file}: SHA-256 {got} does not match the hub's {expected}; the download was removed")]
    Hash {
        file: String,
        got: String,
        expected: String,
    },
    #[error("no Hugging Face cache directory (set HF_HOME or HOME)")]
    NoCache,
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// Progress of a download, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The total bytes of the files to fetch (resumed and present ones included).
    Total(u64),
    /// Bytes that are on disk now, over all files.
    Done(u64),
}

/// Where and what to download.
#[derive(Debug, Clone)]
pub struct Request {
    pub repo: String,
    pub revision: String,
    /// `https://huggingface.co` or `HF_ENDPOINT`.
    pub endpoint: String,
    pub token: Option<String>,
    /// The hub cache (`<cache>/models--org--name/...`).
    pub cache: PathBuf,
}

impl Request {
    /// `repo` at `revision` with the endpoint, token and cache from the environment.
    pub fn from_env(repo: &str, revision: &str) -> Result<Self, DownloadError> {
        if std::env::var_os("HF_HUB_OFFLINE").is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(DownloadError::Offline(repo.to_string()));
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let token = env("HF_TOKEN").or_else(|| {
            let path = env("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
                env("HF_HOME")
                    .map(|h| PathBuf::from(h).join("token"))
                    .or_else(|| {
                        env("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/token"))
                    })
            })?;
            let text = fs::read_to_string(path).ok()?;
            Some(text.trim().to_string()).filter(|t| !t.is_empty())
        });
        Ok(Request {
            repo: repo.to_string(),
            revision: revision.to_string(),
            endpoint: env("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_string(),
            token,
            cache: cache_dir().ok_or(DownloadError::NoCache)?,
        })
    }
}

/// One file of the repo as the hub lists it.
#[derive(Debug, Clone)]
struct RemoteFile {
    name: String,
    size: Option<u64>,
    sha256: Option<String>,
}

/// Download the checkpoint files of `req.repo` into the cache and return the snapshot
/// directory. Files already complete are kept; partial ones are resumed.
pub fn download(
    req: &Request,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, DownloadError> {
    if !crate::hub::is_repo_id(&req.repo) {
        return Err(DownloadError::NotARepo(req.repo.clone()));
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .build();
    let (commit, files) = list(&agent, req)?;
    let files: Vec<RemoteFile> = files.into_iter().filter(|f| wanted(&f.name)).collect();
    let repo = repo_dir(&req.cache, &req.repo);
    let snapshot = repo.join("snapshots").join(&commit);
    progress(Progress::Total(files.iter().filter_map(|f| f.size).sum()));
    let mut done = 0u64;
    for file in &files {
        let target = snapshot.join(&file.name);
        let complete = fs::metadata(&target)
            .ok()
            .is_some_and(|m| file.size.is_none_or(|s| m.len() == s));
        if !complete {
            fetch_file(&agent, req, &commit, file, &target, done, progress)?;
        }
        done += fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        progress(Progress::Done(done));
    }
    let refs = repo.join("refs");
    fs::create_dir_all(&refs).map_err(|e| io(&refs, e))?;
    let ref_file = refs.join(&req.revision);
    fs::write(&ref_file, &commit).map_err(|e| io(&ref_file, e))?;
    Ok(snapshot)
}

fn io(path: &Path, e: impl std::fmt::Display) -> DownloadError {
    DownloadError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn get(
    agent: &ureq::Agent,
    req: &Request,
    url: &str,
    range_from: u64,
) -> Result<ureq::Response, DownloadError> {
    let mut call = agent.get(url);
    if let Some(token) = &req.token {
        call = call.set("Authorization", &format!("Bearer {token}"));
    }
    if range_from > 0 {
        call = call.set("Range", &format!("bytes={range_from}-"));
    }
    match call.call() {
        Ok(resp) => Ok(resp),
        Err(ureq::Error::Status(401 | 403, _)) => Err(DownloadError::Unauthorized {
            repo: req.repo.clone(),
            endpoint: req.endpoint.clone(),
        }),
        Err(ureq::Error::Status(404, _)) => Err(DownloadError::NotFound {
            repo: req.repo.clone(),
            revision: req.revision.clone(),
            endpoint: req.endpoint.clone(),
        }),
        Err(ureq::Error::Status(status, _)) => Err(DownloadError::Http {
            url: url.to_string(),
            status,
        }),
        Err(ureq::Error::Transport(t)) => Err(DownloadError::Unreachable {
            endpoint: req.endpoint.clone(),
            reason: transport_reason(&t),
        }),
    }
}

/// The innermost cause of a transport error (ureq's own text repeats the URL).
fn transport_reason(t: &ureq::Transport) -> String {
    let mut reason = t.kind().to_string();
    let mut source = std::error::Error::source(t);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

/// The commit `req.revision` names and the repo's files.
fn list(agent: &ureq::Agent, req: &Request) -> Result<(String, Vec<RemoteFile>), DownloadError> {
    let url = format!(
        "{}/api/models/{}/revision/{}?blobs=true",
        req.endpoint, req.repo, req.revision
    );
    let resp = get(agent, req, &url, 0)?;
    let bad = |reason: String| DownloadError::Protocol {
        url: url.clone(),
        reason,
    };
    let info: serde_json::Value =
        serde_json::from_reader(resp.into_reader()).map_err(|e| bad(e.to_string()))?;
    let commit = info["sha"]
        .as_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| bad("no commit `sha`".into()))?
        .to_string();
    let siblings = info["siblings"]
        .as_array()
        .ok_or_else(|| bad("no `siblings` list".into()))?;
    let mut files = Vec::new();
    for s in siblings {
        let name = s["rfilename"]
            .as_str()
            .ok_or_else(|| bad("a sibling without `rfilename`".into()))?;
        // Names become paths in the cache: nothing may climb out of the snapshot.
        if name.is_empty()
            || name.starts_with('/')
            || name
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(bad(format!("unsafe file name `{name}`")));
        }
        let lfs = &s["lfs"];
        files.push(RemoteFile {
            name: name.to_string(),
            size: lfs["size"].as_u64().or_else(|| s["size"].as_u64()),
            sha256: lfs["sha256"].as_str().map(str::to_ascii_lowercase),
        });
    }
    Ok((commit, files))
}

fn fetch_file(
    agent: &ureq::Agent,
    req: &Request,
    commit: &str,
    file: &RemoteFile,
    target: &Path,
    done_before: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), DownloadError> {
    let dir = target.parent().unwrap_or(target);
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let partial = PathBuf::from(format!("{}.incomplete", target.display()));
    let have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let url = format!(
        "{}/{}/resolve/{commit}/{}",
        req.endpoint, req.repo, file.name
    );
    let resp = get(agent, req, &url, have)?;
    // 206: the server continues where the partial file ends; 200: it sends it all again.
    let mut out = if resp.status() == 206 && have > 0 {
        OpenOptions::new()
            .append(true)
            .open(&partial)
            .map_err(|e| io(&partial, e))?
    } else {
        File::create(&partial).map_err(|e| io(&partial, e))?
    };
    let mut written = out.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DownloadError::Unreachable {
                    endpoint: req.endpoint.clone(),
                    reason: format!(
                        "{}: transfer interrupted ({e}); run again to resume",
                        file.name
                    ),
                });
            }
        };
        out.write_all(&buf[..n]).map_err(|e| io(&partial, e))?;
        written += n as u64;
        progress(Progress::Done(done_before + written));
    }
    out.sync_all().map_err(|e| io(&partial, e))?;
    drop(out);
    if let Some(expected) = file.size
        && written != expected
    {
        if written > expected {
            let _ = fs::remove_file(&partial);
        }
        return Err(DownloadError::Size {
            file: file.name.clone(),
            got: written,
            expected,
        });
    }
    if let Some(expected) = &file.sha256 {
        let got = sha256_of(&partial)?;
        if &got != expected {
            let _ = fs::remove_file(&partial);
            return Err(DownloadError::Hash {
                file: file.name.clone(),
                got,
                expected: expected.clone(),
            });
        }
    }
    fs::rename(&partial, target).map_err(|e| io(target, e))
}

fn sha256_of(path: &Path) -> Result<String, DownloadError> {
    let mut f = File::open(path).map_err(|e| io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
