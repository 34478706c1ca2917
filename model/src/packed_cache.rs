//! Packed matmul weights kept on disk, so that a second start maps them instead of converting
//! and quantizing the checkpoint again (seconds instead of tens of seconds for E2B).
//!
//! One file per (checkpoint files, precision, kernel format version), in the user's cache
//! directory: `HARKPK01`, the header length (u64 LE), a JSON header listing each matrix
//! (format, shape, byte range), then the packed data, each matrix 64-byte aligned. The file is
//! memory-mapped and the matrices are zero-copy views of it. A file that does not match is
//! ignored (and replaced); the cache never makes loading fail.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hark_kernels::{Format, PackedMatrix, SharedBytes};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"HARKPK01";
const ALIGN: usize = 64;
/// Bumped whenever the packed layout of any format changes.
const LAYOUT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    format: String,
    rows: usize,
    cols: usize,
    offset: usize,
    len: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    version: u32,
    key: String,
    entries: BTreeMap<String, Entry>,
}

struct Mapped {
    bytes: SharedBytes,
    entries: BTreeMap<String, Entry>,
}

/// The packed-weight cache of one checkpoint at one precision.
pub struct PackedCache {
    path: PathBuf,
    key: String,
    mapped: Option<Mapped>,
    /// Matrices packed during this load, written out by [`PackedCache::save`].
    fresh: Mutex<Vec<(String, Arc<PackedMatrix>)>>,
}

impl std::fmt::Debug for PackedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedCache")
            .field("path", &self.path)
            .field("hit", &self.mapped.is_some())
            .finish()
    }
}

impl PackedCache {
    /// The directory packed weights go to: `packed/` under [`cache_root`]; none when
    /// `HARK_PACKED_CACHE=0` turns the cache off.
    pub fn default_dir() -> Option<PathBuf> {
        if std::env::var_os("HARK_PACKED_CACHE").is_some_and(|v| v == "0") {
            return None;
        }
        cache_root().map(|d| d.join("packed"))
    }

    /// The cache for `key` (which names the checkpoint files and the precision) in `dir`,
    /// mapped when a matching file is there.
    pub fn open(dir: &Path, key: &str) -> Self {
        let key = format!("layout {LAYOUT_VERSION}; {key}");
        let path = dir.join(format!("{:016x}.hpk", fnv1a(key.as_bytes())));
        let mapped = match map(&path, &key) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("ignoring packed-weight cache {}: {e}", path.display());
                None
            }
        };
        if mapped.is_some() {
            tracing::info!("packed weights from {}", path.display());
        }
        Self {
            path,
            key,
            mapped,
            fresh: Mutex::new(Vec::new()),
        }
    }

    /// Whether the weights came from an existing file.
    pub fn hit(&self) -> bool {
        self.mapped.is_some()
    }

    /// The cached matrix `name`, if the file holds it with this shape.
    pub fn get(&self, name: &str, rows: usize, cols: usize) -> Option<Arc<PackedMatrix>> {
        let m = self.mapped.as_ref()?;
        let e = m.entries.get(name)?;
        if (e.rows, e.cols) != (rows, cols) {
            return None;
        }
        let format: Format = e.format.parse().ok()?;
        PackedMatrix::from_shared_bytes(rows, cols, format, m.bytes.clone(), e.offset)
            .ok()
            .filter(|p| p.storage_bytes() == e.len)
            .map(Arc::new)
    }

    /// Remember a matrix packed during this load.
    pub fn insert(&self, name: &str, matrix: Arc<PackedMatrix>) {
        self.fresh
            .lock()
            .expect("cache lock")
            .push((name.to_string(), matrix));
    }

    /// Write the matrices packed during this load, when no file was there (atomically: a
    /// temporary file renamed into place). Errors are logged, never fatal.
    pub fn save(&self) {
        if self.mapped.is_some() {
            return;
        }
        let fresh = std::mem::take(&mut *self.fresh.lock().expect("cache lock"));
        if fresh.is_empty() {
            return;
        }
        match self.write(&fresh) {
            Ok(bytes) => tracing::info!(
                "wrote {:.2} GB of packed weights to {}",
                bytes as f64 / 1e9,
                self.path.display()
            ),
            Err(e) => tracing::warn!("cannot write {}: {e}", self.path.display()),
        }
    }

    fn write(&self, matrices: &[(String, Arc<PackedMatrix>)]) -> std::io::Result<usize> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        // The header's length decides where the data starts, and the offsets are in the
        // header: lay the data out relative to 0, then shift by the padded header size.
        let mut entries = BTreeMap::new();
        let mut at = 0usize;
        for (name, m) in matrices {
            at = at.next_multiple_of(ALIGN);
            entries.insert(
                name.clone(),
                Entry {
                    format: m.format().name().to_string(),
                    rows: m.rows(),
                    cols: m.cols(),
                    offset: at,
                    len: m.storage_bytes(),
                },
            );
            at += m.storage_bytes();
        }
        let mut header = Header {
            version: LAYOUT_VERSION,
            key: self.key.clone(),
            entries,
        };
        let probe = serde_json::to_vec(&header)
            .map_err(std::io::Error::other)?
            .len();
        // Offsets may grow the JSON by a few digits each: leave room, then pad to it.
        let data_start = (16 + probe + 16 * header.entries.len() + ALIGN).next_multiple_of(ALIGN);
        for e in header.entries.values_mut() {
            e.offset += data_start;
        }
        let json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
        assert!(16 + json.len() <= data_start, "header room");

        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let mut out = BufWriter::new(File::create(&tmp)?);
        out.write_all(MAGIC)?;
        out.write_all(&(json.len() as u64).to_le_bytes())?;
        out.write_all(&json)?;
        let mut written = 16 + json.len();
        for (name, m) in matrices {
            let offset = header.entries[name].offset;
            out.write_all(&vec![0u8; offset - written])?;
            out.write_all(m.as_bytes())?;
            written = offset + m.storage_bytes();
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(written)
    }
}

/// Map the cache file at `path` if it exists and was written for `key`.
fn map(path: &Path, key: &str) -> Result<Option<Mapped>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // SAFETY: the file is only ever replaced by rename, never written in place, so the
    // mapping's contents cannot change under us.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let bytes: &[u8] = &mmap;
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err("not a packed-weight cache".into());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let json = bytes
        .get(16..16usize.saturating_add(len))
        .ok_or("truncated header")?;
    let header: Header = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    if header.version != LAYOUT_VERSION || header.key != key {
        return Err("written for another checkpoint or layout".into());
    }
    if let Some((name, _)) = header.entries.iter().find(|(_, e)| {
        e.offset
            .checked_add(e.len)
            .is_none_or(|end| end > bytes.len())
    }) {
        return Err(format!("{name} lies past the end of the file (truncated?)"));
    }
    Ok(Some(Mapped {
        bytes: Arc::new(mmap),
        entries: header.entries,
    }))
}

/// Hark's cache directory: `$HARK_CACHE_DIR`, else `$XDG_CACHE_HOME/hark`, else
/// `~/.cache/hark`.
pub fn cache_root() -> Option<PathBuf> {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("HARK_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("hark")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/hark")))
}

/// FNV-1a, 64-bit: a stable file name for a key (std's hasher may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(format: Format, seed: f32) -> Arc<PackedMatrix> {
        let (rows, cols) = (5, 64);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| (i as f32 * 0.37 + seed).sin())
            .collect();
        Arc::new(PackedMatrix::from_f32(rows, cols, &w, format).unwrap())
    }

    fn write(dir: &Path, key: &str) -> Vec<(&'static str, Arc<PackedMatrix>)> {
        let cache = PackedCache::open(dir, key);
        assert!(!cache.hit());
        let m = vec![
            ("a.weight", matrix(Format::Q8, 0.0)),
            ("b.weight", matrix(Format::Q4, 1.0)),
            ("c.weight", matrix(Format::F16, 2.0)),
            ("d.weight", matrix(Format::F32, 3.0)),
        ];
        for (name, p) in &m {
            cache.insert(name, p.clone());
        }
        cache.save();
        m
    }

    #[test]
    fn a_saved_cache_maps_back_the_same_matrices() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), "model x; q8");
        let cache = PackedCache::open(dir.path(), "model x; q8");
        assert!(cache.hit());
        for (name, want) in &written {
            let got = cache.get(name, want.rows(), want.cols()).unwrap();
            assert_eq!(got.format(), want.format(), "{name}");
            assert_eq!(got.as_bytes(), want.as_bytes(), "{name}");
            let x: Vec<f32> = (0..want.cols()).map(|i| i as f32 / 64.0).collect();
            let (mut a, mut b) = (vec![0.0; want.rows()], vec![0.0; want.rows()]);
            got.matmul(&x, 1, &mut a);
            want.matmul(&x, 1, &mut b);
            assert_eq!(a, b, "{name}");
        }
        assert!(cache.get("a.weight", 4, 64).is_none(), "another shape");
        assert!(cache.get("missing.weight", 5, 64).is_none());
    }

    #[test]
    fn another_key_or_a_damaged_file_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "model x; q8");
        assert!(!PackedCache::open(dir.path(), "model x; q4").hit());
        assert!(!PackedCache::open(dir.path(), "model y; q8").hit());

        let path = PackedCache::open(dir.path(), "model x; q8").path.clone();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        assert!(
            !PackedCache::open(dir.path(), "model x; q8").hit(),
            "truncated"
        );
        std::fs::write(&path, b"not a cache at all").unwrap();
        assert!(
            !PackedCache::open(dir.path(), "model x; q8").hit(),
            "garbage"
        );
        // A miss rewrites the file: the next start maps it again.
        write(dir.path(), "model x; q8");
        assert!(PackedCache::open(dir.path(), "model x; q8").hit());
    }
}
