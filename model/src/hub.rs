//! Finding a checkpoint: the embedded demonstration model, a directory or `.gguf` file, or a
//! Hugging Face repo id (`google/gemma-4-E2B-it`) resolved from the standard local Hugging
//! Face cache. [`ModelSource`] is what harkd's `model` setting and hark's `--model` name.
//!
//! Cache layout (as written by `huggingface_hub`): `<cache>/models--<org>--<name>/refs/<rev>`
//! holds a commit hash and `<cache>/models--<org>--<name>/snapshots/<hash>/` the files.
//! `<cache>` is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
//! else `~/.cache/huggingface/hub`.

use std::path::{Path, PathBuf};

use crate::{Checkpoint, LoadError};

/// Why a model argument could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0} is neither a model directory, a .gguf file nor a Hugging Face repo id (org/name)")]
    NotAModel(String),
    #[error(
        "{repo} is not in the local Hugging Face cache ({cache}); download it with `hark model fetch {repo}` \
         (Gemma is gated: accept its licence on huggingface.co and set HF_TOKEN first) or pass a model directory"
    )]
    NotCached { repo: String, cache: PathBuf },
    #[error("{repo}: revision `{revision}` is not in the cache at {path}")]
    NoRevision {
        repo: String,
        revision: String,
        path: PathBuf,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The checkpoint a `model` setting or `--model` flag names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The small demonstration model compiled into the binaries (no `model` given).
    Embedded,
    /// A model directory (Hugging Face layout) or a `.gguf` file.
    Local(PathBuf),
    /// A Hugging Face repo id, read from the local cache at its `main` revision.
    Hub(String),
}

/// A model could not be opened: not found, or found and unreadable. The message names the
/// model once.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Resolve(#[from] HubError),
    #[error("cannot load model {name}: {reason}")]
    Load { name: String, reason: LoadError },
}

impl ModelSource {
    /// What `arg` names; `None` is the embedded model.
    pub fn from_arg(arg: Option<&str>) -> Result<Self, HubError> {
        let Some(arg) = arg else {
            return Ok(ModelSource::Embedded);
        };
        let path = Path::new(arg);
        let gguf = path.is_file()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if path.is_dir() || gguf {
            Ok(ModelSource::Local(path.to_path_buf()))
        } else if is_repo_id(arg) {
            Ok(ModelSource::Hub(arg.to_string()))
        } else {
            Err(HubError::NotAModel(arg.to_string()))
        }
    }

    /// Open the checkpoint (mapping its files; nothing is loaded onto a device yet).
    pub fn open(&self) -> Result<Checkpoint, OpenError> {
        let (name, path) = match self {
            ModelSource::Embedded => {
                return crate::embedded::default_checkpoint().map_err(|reason| OpenError::Load {
                    name: "(embedded default)".into(),
                    reason,
                });
            }
            ModelSource::Local(path) => (path.display().to_string(), path.clone()),
            ModelSource::Hub(repo) => (repo.clone(), resolve(repo)?),
        };
        Checkpoint::open(&path).map_err(|reason| OpenError::Load { name, reason })
    }
}

/// The Hugging Face hub cache directory from the environment.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("HF_HUB_CACHE")
        .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/huggingface/hub")))
}

/// Whether `s` looks like `org/name` (and not like a path).
pub fn is_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    ok(org) && ok(name)
}

/// Directory of a repo inside a cache.
pub fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// Resolve `arg`: an existing directory or `.gguf` file is used as is; otherwise a repo id is
/// looked up in `cache` at `revision` (a ref name such as `main`, or a commit hash).
pub fn resolve_in(arg: &str, cache: Option<&Path>, revision: &str) -> Result<PathBuf, HubError> {
    if let ModelSource::Local(path) = ModelSource::from_arg(Some(arg))? {
        return Ok(path);
    }
    let cache = cache.ok_or_else(|| HubError::NotCached {
        repo: arg.into(),
        cache: PathBuf::from("<no cache dir>"),
    })?;
    let repo = repo_dir(cache, arg);
    if !repo.is_dir() {
        return Err(HubError::NotCached {
            repo: arg.into(),
            cache: cache.to_path_buf(),
        });
    }
    let ref_file = repo.join("refs").join(revision);
    let commit = if ref_file.is_file() {
        std::fs::read_to_string(&ref_file)
            .map_err(|source| HubError::Io {
                path: ref_file.clone(),
                source,
            })?
            .trim()
            .to_string()
    } else {
        revision.to_string()
    };
    let snapshot = repo.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(HubError::NoRevision {
            repo: arg.into(),
            revision: revision.into(),
            path: snapshot,
        });
    }
    Ok(snapshot)
}

/// [`resolve_in`] with the environment's cache and the `main` revision.
pub fn resolve(arg: &str) -> Result<PathBuf, HubError> {
    resolve_in(arg, cache_dir().as_deref(), "main")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_told_from_paths() {
        assert!(is_repo_id("google/gemma-4-E2B-it"));
        assert!(!is_repo_id("./models/x"));
        assert!(!is_repo_id("/abs/path"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("../x"));
        assert!(!is_repo_id("plain"));
    }

    #[test]
    fn model_sources() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ModelSource::from_arg(None).unwrap(), ModelSource::Embedded);
        let local = dir.path().to_str().unwrap();
        assert_eq!(
            ModelSource::from_arg(Some(local)).unwrap(),
            ModelSource::Local(dir.path().to_path_buf())
        );
        assert_eq!(
            ModelSource::from_arg(Some("google/gemma-4-E2B-it")).unwrap(),
            ModelSource::Hub("google/gemma-4-E2B-it".into())
        );
        assert!(matches!(
            ModelSource::from_arg(Some("no-such-dir")),
            Err(HubError::NotAModel(_))
        ));
        // The reason is part of the message and not a source again, so `{:#}` prints it once.
        let err = ModelSource::Local(dir.path().to_path_buf())
            .open()
            .unwrap_err();
        assert!(err.to_string().starts_with("cannot load model"), "{err}");
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn resolves_refs_main_to_its_snapshot() {
        let cache = tempfile::tempdir().unwrap();
        let repo = repo_dir(cache.path(), "google/gemma-4-E2B-it");
        let snap = repo.join("snapshots/0123abcd");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "0123abcd\n").unwrap();
        assert_eq!(
            resolve_in("google/gemma-4-E2B-it", Some(cache.path()), "main").unwrap(),
            snap
        );
        // A commit hash works as a revision too.
        assert_eq!(
            resolve_in("google/gemma-4-E2B-it", Some(cache.path()), "0123abcd").unwrap(),
            snap
        );
        let err = resolve_in("google/gemma-4-E4B-it", Some(cache.path()), "main").unwrap_err();
        assert!(
            err.to_string()
                .contains("hark model fetch google/gemma-4-E4B-it"),
            "{err}"
        );
        let err = resolve_in("google/gemma-4-E2B-it", Some(cache.path()), "v2").unwrap_err();
        assert!(matches!(err, HubError::NoRevision { .. }), "{err}");
    }
}
