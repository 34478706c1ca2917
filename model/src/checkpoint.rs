//! Reading a Hugging Face checkpoint: the JSON files, the tokenizer and the safetensors weights
//! (one file or shards with an index), memory-mapped, in bf16, f16 or f32.
//!
//! Tensors stay in the mapping until the model builder converts them, once, to the precision
//! it keeps them in; the per-layer-embedding table is never converted at all (rows are gathered
//! from the mapping per token, see [`TensorStore::row_f32`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use half::{bf16, f16, slice::HalfFloatSliceExt};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::config::{Gemma4ConfigJson, GenerationConfigJson, ModelConfig, ProcessorConfigJson};
use crate::error::{LoadError, TensorProblem, WeightReport};
use crate::tokenizer::TextTokenizer;

/// Bytes of one safetensors file: a read-only mapping, a static buffer (embedded model), or a
/// buffer built in memory (synthetic model).
#[derive(Clone)]
enum Storage {
    Mapped(Arc<Mmap>),
    Static(&'static [u8]),
    Owned(Arc<Vec<u8>>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Static(b) => b,
            Storage::Owned(b) => b,
        }
    }
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    F32,
    F16,
    BF16,
}

impl StoredDtype {
    fn size(self) -> usize {
        match self {
            StoredDtype::F32 => 4,
            StoredDtype::F16 | StoredDtype::BF16 => 2,
        }
    }
}

#[derive(Debug, Clone)]
struct TensorInfo {
    shard: usize,
    dtype: StoredDtype,
    shape: Vec<usize>,
    /// Absolute byte range inside the shard file.
    start: usize,
    end: usize,
}

struct Shard {
    label: String,
    storage: Storage,
}

/// All tensors of a checkpoint, by name.
pub struct TensorStore {
    shards: Vec<Shard>,
    tensors: HashMap<String, TensorInfo>,
    used: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for TensorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorStore")
            .field("shards", &self.shards.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl TensorStore {
    /// Open `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self, LoadError> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files: Vec<PathBuf> = if index_path.exists() {
            let index: ShardIndex = read_json(&index_path)?;
            let mut files: Vec<String> = index.weight_map.values().cloned().collect();
            files.sort();
            files.dedup();
            if files.is_empty() {
                return Err(LoadError::Safetensors {
                    path: index_path,
                    detail: "the index lists no shard".into(),
                });
            }
            files.iter().map(|f| dir.join(f)).collect()
        } else if single.exists() {
            vec![single]
        } else {
            return Err(LoadError::Other(format!(
                "{}: neither model.safetensors nor model.safetensors.index.json found",
                dir.display()
            )));
        };
        let mut shards = Vec::with_capacity(files.len());
        for path in &files {
            let file = File::open(path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the mapping is read-only and Hark never writes to checkpoint files; a file
            // truncated by another process under our feet is outside what any loader can defend.
            let map = unsafe { Mmap::map(&file) }.map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            shards.push(Shard {
                label: path.display().to_string(),
                storage: Storage::Mapped(Arc::new(map)),
            });
        }
        Self::from_shards(shards)
    }

    /// A single safetensors buffer compiled into the binary.
    pub fn from_static(label: &str, bytes: &'static [u8]) -> Result<Self, LoadError> {
        Self::from_shards(vec![Shard {
            label: label.to_string(),
            storage: Storage::Static(bytes),
        }])
    }

    /// A single safetensors buffer built in memory (see [`crate::synthetic`]).
    pub fn from_owned(label: &str, bytes: Vec<u8>) -> Result<Self, LoadError> {
        Self::from_shards(vec![Shard {
            label: label.to_string(),
            storage: Storage::Owned(Arc::new(bytes)),
        }])
    }

    fn from_shards(shards: Vec<Shard>) -> Result<Self, LoadError> {
        let mut tensors = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            let bytes = shard.storage.bytes();
            let bad = |detail: String| LoadError::Safetensors {
                path: PathBuf::from(&shard.label),
                detail,
            };
            let (header_len, _) =
                SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
            let data_start = 8 + header_len;
            // Validates offsets against the buffer length, so truncated files are caught here.
            let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
            for (name, view) in st.tensors() {
                let dtype = match view.dtype() {
                    Dtype::F32 => StoredDtype::F32,
                    Dtype::F16 => StoredDtype::F16,
                    Dtype::BF16 => StoredDtype::BF16,
                    other => {
                        // Only float weights exist in Gemma checkpoints; note it, fail if used.
                        tracing::debug!("{}: tensor {name} has dtype {other:?}", shard.label);
                        continue;
                    }
                };
                let data = view.data();
                let start = data.as_ptr() as usize - bytes.as_ptr() as usize;
                debug_assert!(start >= data_start);
                let info = TensorInfo {
                    shard: i,
                    dtype,
                    shape: view.shape().to_vec(),
                    start,
                    end: start + data.len(),
                };
                if tensors.insert(name.clone(), info).is_some() {
                    return Err(bad(format!("tensor {name} appears in more than one shard")));
                }
            }
        }
        Ok(Self {
            shards,
            tensors,
            used: Mutex::new(HashSet::new()),
        })
    }

    /// Names of every stored tensor.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    pub fn dtype(&self, name: &str) -> Option<StoredDtype> {
        self.tensors.get(name).map(|t| t.dtype)
    }

    fn info(&self, name: &str) -> Result<&TensorInfo, LoadError> {
        self.used.lock().expect("poisoned").insert(name.to_string());
        self.tensors.get(name).ok_or_else(|| {
            LoadError::Other(format!("tensor {name} is missing from the checkpoint"))
        })
    }

    fn raw(&self, info: &TensorInfo) -> &[u8] {
        &self.shards[info.shard].storage.bytes()[info.start..info.end]
    }

    /// The whole tensor as f32.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let info = self.info(name)?;
        Ok(to_f32(info.dtype, self.raw(info)))
    }

    /// The whole tensor as f16 (bf16 is converted; f32 is rounded).
    pub fn f16(&self, name: &str) -> Result<Vec<f16>, LoadError> {
        let info = self.info(name)?;
        let raw = self.raw(info);
        Ok(match info.dtype {
            StoredDtype::F16 => bytemuck_cast::<f16>(raw),
            StoredDtype::BF16 => {
                let src = bytemuck_cast::<bf16>(raw);
                src.iter().map(|x| f16::from_f32(x.to_f32())).collect()
            }
            StoredDtype::F32 => {
                let src = bytemuck_cast::<f32>(raw);
                let mut out = vec![f16::ZERO; src.len()];
                out.convert_from_f32_slice(&src);
                out
            }
        })
    }

    /// One row of a 2-D tensor as f32, read straight from the mapping: for tables that are
    /// only ever gathered (the per-layer embeddings), so they are never expanded in memory.
    pub fn row_f32(&self, name: &str, row: usize, out: &mut [f32]) -> Result<(), LoadError> {
        let info = self.tensors.get(name).ok_or_else(|| {
            LoadError::Other(format!("tensor {name} is missing from the checkpoint"))
        })?;
        let [rows, cols] = info.shape[..] else {
            return Err(LoadError::Other(format!("{name} is not a matrix")));
        };
        if row >= rows || out.len() != cols {
            return Err(LoadError::Other(format!(
                "{name}: row {row} of {rows} into {} values",
                out.len()
            )));
        }
        let esize = info.dtype.size();
        let start = info.start + row * cols * esize;
        let raw = &self.shards[info.shard].storage.bytes()[start..start + cols * esize];
        match info.dtype {
            StoredDtype::F32 => out.copy_from_slice(&bytemuck_cast::<f32>(raw)),
            StoredDtype::F16 => bytemuck_cast::<f16>(raw).convert_to_f32_slice(out),
            StoredDtype::BF16 => bytemuck_cast::<bf16>(raw).convert_to_f32_slice(out),
        }
        Ok(())
    }

    /// Mark a tensor as accounted for without reading it (e.g. a gathered-only table).
    pub fn mark_used(&self, name: &str) {
        self.used.lock().expect("poisoned").insert(name.to_string());
    }

    /// Tensors read so far.
    pub fn used(&self) -> HashSet<String> {
        self.used.lock().expect("poisoned").clone()
    }

    /// Check the stored tensors against the expected `(name, shape)` list in one pass.
    /// `ignored` decides which stored-but-unexpected names are fine (e.g. the vision tower).
    pub fn validate(
        &self,
        expected: &[(String, Vec<usize>)],
        ignored: impl Fn(&str) -> bool,
    ) -> WeightReport {
        let mut report = WeightReport::default();
        let mut wanted = HashSet::new();
        for (name, shape) in expected {
            wanted.insert(name.as_str());
            match self.tensors.get(name) {
                None => report.missing.push(name.clone()),
                Some(info) => {
                    let scalar_ok = shape.is_empty() && info.shape.iter().product::<usize>() == 1;
                    if info.shape != *shape && !scalar_ok {
                        report.wrong.push(TensorProblem {
                            name: name.clone(),
                            detail: format!("shape {:?}, expected {:?}", info.shape, shape),
                        });
                    }
                }
            }
        }
        for name in self.tensors.keys() {
            if !wanted.contains(name.as_str()) && !ignored(name) {
                report.unexpected.push(name.clone());
            }
        }
        report.missing.sort();
        report.unexpected.sort();
        report.wrong.sort_by(|a, b| a.name.cmp(&b.name));
        report
    }
}

/// Reinterpret little-endian bytes as `T` values (copying, so alignment never matters).
fn bytemuck_cast<T: Copy + Default>(raw: &[u8]) -> Vec<T> {
    let size = std::mem::size_of::<T>();
    let n = raw.len() / size;
    let mut out = vec![T::default(); n];
    // SAFETY: `out` has room for exactly `n * size` bytes, `T` is a plain float type for which
    // every bit pattern is valid, and the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(raw.as_ptr(), out.as_mut_ptr() as *mut u8, n * size);
    }
    out
}

fn to_f32(dtype: StoredDtype, raw: &[u8]) -> Vec<f32> {
    match dtype {
        StoredDtype::F32 => bytemuck_cast::<f32>(raw),
        StoredDtype::F16 => {
            let src = bytemuck_cast::<f16>(raw);
            let mut out = vec![0.0; src.len()];
            src.convert_to_f32_slice(&mut out);
            out
        }
        StoredDtype::BF16 => {
            let src = bytemuck_cast::<bf16>(raw);
            let mut out = vec![0.0; src.len()];
            src.convert_to_f32_slice(&mut out);
            out
        }
    }
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LoadError::Json {
        path: path.into(),
        source,
    })
}

/// The files of an embedded checkpoint, compiled into a binary with `include_bytes!`.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedCheckpoint {
    pub name: &'static str,
    pub config: &'static str,
    pub generation_config: Option<&'static str>,
    pub processor_config: Option<&'static str>,
    pub tokenizer: &'static [u8],
    pub weights: &'static [u8],
}

/// A checkpoint opened from disk (or memory): its configuration, tokenizer and tensors.
#[derive(Debug)]
pub struct Checkpoint {
    pub name: String,
    pub config: ModelConfig,
    pub tokenizer: TextTokenizer,
    pub tensors: TensorStore,
}

impl Checkpoint {
    /// Open a Hugging Face model directory in the released layout.
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        if !dir.is_dir() {
            return Err(LoadError::NoSuchDir(dir.to_path_buf()));
        }
        let config_path = dir.join("config.json");
        let config_json: Gemma4ConfigJson = read_json(&config_path)?;
        let generation: Option<GenerationConfigJson> =
            optional_json(&dir.join("generation_config.json"))?;
        let processor: Option<ProcessorConfigJson> =
            match optional_json(&dir.join("processor_config.json"))? {
                Some(p) => Some(p),
                None => optional_json::<crate::config::FeatureExtractorJson>(
                    &dir.join("preprocessor_config.json"),
                )?
                .map(|fe| ProcessorConfigJson {
                    feature_extractor: Some(fe),
                    audio_seq_length: None,
                }),
            };
        let config = ModelConfig::resolve(&config_json, generation.as_ref(), processor.as_ref())
            .map_err(|source| LoadError::Config {
                path: config_path.clone(),
                source,
            })?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), &config)?;
        let tensors = TensorStore::open_dir(dir)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self {
            name,
            config,
            tokenizer,
            tensors,
        })
    }

    /// Open a checkpoint compiled into the binary.
    pub fn open_embedded(e: &EmbeddedCheckpoint) -> Result<Self, LoadError> {
        let label = |file: &str| PathBuf::from(format!("<embedded {}>/{file}", e.name));
        let parse = |text: &str, file: &str| -> Result<serde_json::Value, LoadError> {
            serde_json::from_str(text).map_err(|source| LoadError::Json {
                path: label(file),
                source,
            })
        };
        let config_json: Gemma4ConfigJson = serde_json::from_value(parse(e.config, "config.json")?)
            .map_err(|source| LoadError::Json {
                path: label("config.json"),
                source,
            })?;
        let generation: Option<GenerationConfigJson> = match e.generation_config {
            Some(t) => Some(
                serde_json::from_value(parse(t, "generation_config.json")?).map_err(|source| {
                    LoadError::Json {
                        path: label("generation_config.json"),
                        source,
                    }
                })?,
            ),
            None => None,
        };
        let processor: Option<ProcessorConfigJson> = match e.processor_config {
            Some(t) => Some(
                serde_json::from_value(parse(t, "processor_config.json")?).map_err(|source| {
                    LoadError::Json {
                        path: label("processor_config.json"),
                        source,
                    }
                })?,
            ),
            None => None,
        };
        let config = ModelConfig::resolve(&config_json, generation.as_ref(), processor.as_ref())
            .map_err(|source| LoadError::Config {
                path: label("config.json"),
                source,
            })?;
        let tokenizer = TextTokenizer::from_bytes(e.tokenizer, &label("tokenizer.json"), &config)?;
        let tensors = TensorStore::from_static(
            &format!("<embedded {}>/model.safetensors", e.name),
            e.weights,
        )?;
        Ok(Self {
            name: e.name.to_string(),
            config,
            tokenizer,
            tensors,
        })
    }
}

fn optional_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, LoadError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}
