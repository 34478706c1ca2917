//! Reading a Hugging Face checkpoint: the JSON files, the tokenizer and the safetensors weights
//! (one file or shards with an index), memory-mapped, in bf16, f16 or f32.
//!
//! Tensors stay in the mapping until the model builder converts them, once, to the precision
//! it keeps them in; the per-layer-embedding table is never converted at all (rows are gathered
//! from the mapping per token, see [`TensorStore::row_f32`]).
//!
//! Natively quantized releases are read as they are: GGUF files in CrispASR's `gemma4e2b`
//! layout ([`crate::gguf`]) and W4A16 GPTQ/AutoRound safetensors ([`GptqConfig`]). Their
//! tensors appear under the Hugging Face names (a GPTQ `qweight`/`qzeros`/`scales`/`g_idx`
//! group as one `….weight`); [`TensorStore::f32`] and the other readers dequantize them, so
//! every load path works unchanged, and [`TensorStore::native_blocks`] hands the blocks over
//! for the packed CPU kernels.

use std::borrow::Cow;
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
use crate::gguf::{self, GgufFile};
pub use crate::quant::GptqConfig;
use crate::quant::{self, GgmlType, Gptq4, PackedBlocks, ScaleType};
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
    /// The stored element type; f32 (what they dequantize to) for quantized tensors.
    dtype: StoredDtype,
    shape: Vec<usize>,
    /// Absolute byte range inside the shard file (the blocks or `qweight` when quantized).
    start: usize,
    end: usize,
    /// How a natively quantized tensor is encoded; `None` for plain floats.
    quant: Option<Quant>,
}

/// Encoding of a natively quantized tensor.
#[derive(Debug, Clone)]
enum Quant {
    /// ggml blocks (GGUF), rows of `shape[last]` values.
    Ggml(GgmlType),
    /// A GPTQ 4-bit linear weight; `start..end` of the tensor is its `qweight`.
    Gptq(GptqParts),
}

/// Where the other parts of a GPTQ weight live.
#[derive(Debug, Clone)]
struct GptqParts {
    qzeros: (usize, std::ops::Range<usize>),
    scales: (usize, std::ops::Range<usize>),
    scale_type: ScaleType,
    g_idx: Option<Arc<Vec<u32>>>,
    group_size: usize,
    zero_offset: i32,
}

/// How a tensor is stored in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredFormat {
    /// Plain floats.
    Float(StoredDtype),
    /// ggml blocks from a GGUF file.
    Ggml(GgmlType),
    /// GPTQ/AutoRound 4-bit groups.
    Gptq4 { group_size: usize },
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
        Self::open_dir_quantized(dir, None)
    }

    /// [`Self::open_dir`] for a checkpoint whose `config.json` has a GPTQ/AutoRound
    /// `quantization_config`: each `qweight`/`qzeros`/`scales`(/`g_idx`) group becomes one
    /// `….weight` tensor.
    pub fn open_dir_quantized(dir: &Path, gptq: Option<&GptqConfig>) -> Result<Self, LoadError> {
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
        Self::from_shards_quantized(shards, gptq)
    }

    /// Open a GGUF file in CrispASR's `gemma4e2b` layout: its tensors under their Hugging Face
    /// names (one table, [`gguf::hf_name`]), the front-end resources it adds left out.
    pub fn open_gguf(path: &Path) -> Result<(Self, GgufFile), LoadError> {
        let file = File::open(path).map_err(|source| LoadError::Io {
            path: path.into(),
            source,
        })?;
        // SAFETY: as in `open_dir`, a read-only mapping of a file Hark never writes.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| LoadError::Io {
            path: path.into(),
            source,
        })?;
        let bad = |problem| LoadError::Gguf {
            path: path.into(),
            problem,
        };
        // (An empty file maps to no bytes at all on some systems; parse sees it as truncated.)
        let header = gguf::parse(if map.is_empty() { &[] } else { &map[..] }).map_err(bad)?;
        let mut tensors = HashMap::new();
        for t in &header.tensors {
            if gguf::FRONT_END_RESOURCES.contains(&t.name.as_str()) {
                continue;
            }
            let name = gguf::hf_name(&t.name).unwrap_or_else(|| t.name.clone());
            let (dtype, quant) = match t.ty {
                GgmlType::F32 => (StoredDtype::F32, None),
                GgmlType::F16 => (StoredDtype::F16, None),
                GgmlType::BF16 => (StoredDtype::BF16, None),
                q => (StoredDtype::F32, Some(Quant::Ggml(q))),
            };
            let info = TensorInfo {
                shard: 0,
                dtype,
                shape: t.shape.clone(),
                start: t.start,
                end: t.end,
                quant,
            };
            if tensors.insert(name.clone(), info).is_some() {
                return Err(bad(gguf::GgufProblem::DuplicateTensor(name)));
            }
        }
        let store = Self {
            shards: vec![Shard {
                label: path.display().to_string(),
                storage: Storage::Mapped(Arc::new(map)),
            }],
            tensors,
            used: Mutex::new(HashSet::new()),
        };
        Ok((store, header))
    }

    /// A single safetensors buffer compiled into the binary.
    pub fn from_static(label: &str, bytes: &'static [u8]) -> Result<Self, LoadError> {
        Self::from_shards(vec![Shard {
            label: label.to_string(),
            storage: Storage::Static(bytes),
        }])
    }

    /// A single safetensors buffer built in memory (a synthetic checkpoint from `hark-testkit`).
    pub fn from_owned(label: &str, bytes: Vec<u8>) -> Result<Self, LoadError> {
        Self::from_shards(vec![Shard {
            label: label.to_string(),
            storage: Storage::Owned(Arc::new(bytes)),
        }])
    }

    fn from_shards(shards: Vec<Shard>) -> Result<Self, LoadError> {
        Self::from_shards_quantized(shards, None)
    }

    fn from_shards_quantized(
        shards: Vec<Shard>,
        gptq: Option<&GptqConfig>,
    ) -> Result<Self, LoadError> {
        let mut tensors = HashMap::new();
        // i32 tensors: only the packed parts of GPTQ weights.
        let mut ints: HashMap<String, TensorInfo> = HashMap::new();
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
                    Dtype::I32 => StoredDtype::F32, // placeholder; grouped below
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
                    quant: None,
                };
                if view.dtype() == Dtype::I32 {
                    if ints.insert(name.clone(), info).is_some() || tensors.contains_key(&name) {
                        return Err(bad(format!("tensor {name} appears in more than one shard")));
                    }
                    continue;
                }
                if tensors.insert(name.clone(), info).is_some() || ints.contains_key(&name) {
                    return Err(bad(format!("tensor {name} appears in more than one shard")));
                }
            }
        }
        group_gptq(&shards, &mut tensors, ints, gptq)?;
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

    /// Number of stored values over every tensor.
    pub fn parameters(&self) -> usize {
        self.tensors
            .values()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    /// What names these exact bytes: each file's path, size and modification time, or `None`
    /// for a checkpoint held in memory (keys the packed-weight cache).
    pub fn identity(&self) -> Option<String> {
        let mut parts = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let Storage::Mapped(_) = shard.storage else {
                return None;
            };
            let path = std::fs::canonicalize(&shard.label).ok()?;
            let meta = std::fs::metadata(&path).ok()?;
            let modified = meta
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            parts.push(format!(
                "{} {} {}",
                path.display(),
                meta.len(),
                modified.as_nanos()
            ));
        }
        Some(parts.join("; "))
    }

    /// Give the mapped pages of `name` back to the OS: a tensor converted at load is not read
    /// again, and its pages would otherwise stay in the process's resident memory.
    pub fn release(&self, name: &str) {
        let Some(info) = self.tensors.get(name) else {
            return;
        };
        let Storage::Mapped(map) = &self.shards[info.shard].storage else {
            return;
        };
        // Only whole pages inside the tensor: its neighbours may still be needed.
        const PAGE: usize = 4096;
        let (start, end) = (info.start.next_multiple_of(PAGE), info.end / PAGE * PAGE);
        if end > start {
            // SAFETY: the mapping is private and read-only; dropped pages are read again from
            // the file if anything touches them, so no data is lost.
            let dropped = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
            if let Err(e) = dropped {
                tracing::debug!("madvise({name}): {e}");
            }
        }
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

    /// The stored bytes of a plain tensor; a quantized one is dequantized to f32 bytes here
    /// (its `dtype` is f32), so every reader below serves both.
    fn raw(&self, info: &TensorInfo) -> Cow<'_, [u8]> {
        match &info.quant {
            None => Cow::Borrowed(self.bytes(info.shard, info.start..info.end)),
            Some(_) => {
                let values = self.dequantize(info);
                Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
        }
    }

    fn bytes(&self, shard: usize, range: std::ops::Range<usize>) -> &[u8] {
        &self.shards[shard].storage.bytes()[range]
    }

    fn gptq<'s>(&'s self, info: &TensorInfo, p: &'s GptqParts) -> Gptq4<'s> {
        Gptq4 {
            rows: info.shape[0],
            cols: info.shape[1],
            group_size: p.group_size,
            qweight: self.bytes(info.shard, info.start..info.end),
            qzeros: self.bytes(p.qzeros.0, p.qzeros.1.clone()),
            scales: self.bytes(p.scales.0, p.scales.1.clone()),
            scale_type: p.scale_type,
            g_idx: p.g_idx.as_deref().map(Vec::as_slice),
            zero_offset: p.zero_offset,
        }
    }

    /// The exact f32 values of a quantized tensor.
    fn dequantize(&self, info: &TensorInfo) -> Vec<f32> {
        let n: usize = info.shape.iter().product();
        match &info.quant {
            None => to_f32(info.dtype, self.raw(info)),
            Some(Quant::Ggml(t)) => {
                let mut out = vec![0.0; n];
                quant::dequantize(*t, self.bytes(info.shard, info.start..info.end), &mut out);
                out
            }
            Some(Quant::Gptq(p)) => self.gptq(info, p).dequantize(),
        }
    }

    /// How a tensor is stored, if it exists.
    pub fn format(&self, name: &str) -> Option<StoredFormat> {
        self.tensors.get(name).map(|t| match &t.quant {
            None => StoredFormat::Float(t.dtype),
            Some(Quant::Ggml(ty)) => StoredFormat::Ggml(*ty),
            Some(Quant::Gptq(p)) => StoredFormat::Gptq4 {
                group_size: p.group_size,
            },
        })
    }

    /// A natively quantized matrix `[rows, cols]` as 32-weight blocks for the packed CPU
    /// kernels (see [`crate::quant`] for each mapping): `Ok(None)` for a tensor stored as
    /// plain floats, or whose encoding has no block form (activation-ordered GPTQ), which the
    /// caller then reads through [`Self::f32`]/[`Self::f16`] as usual. Marks the tensor used.
    pub fn native_blocks(
        &self,
        name: &str,
    ) -> Result<Option<(usize, usize, PackedBlocks)>, LoadError> {
        let info = self.info(name)?;
        let Some(q) = &info.quant else {
            return Ok(None);
        };
        let [rows, cols] = info.shape[..] else {
            return Ok(None);
        };
        let blocks = match q {
            Quant::Ggml(t) => quant::repack_ggml(*t, self.bytes(info.shard, info.start..info.end)),
            Quant::Gptq(p) => self.gptq(info, p).repack(),
        };
        match blocks {
            Ok(b) => Ok(Some((rows, cols, b))),
            Err(quant::RepackError::NoBlockForm(_)) => Ok(None),
            Err(e) => Err(LoadError::Quantized {
                path: PathBuf::from(&self.shards[info.shard].label),
                detail: format!("{name}: {e}"),
            }),
        }
    }

    /// A natively quantized matrix as the packed CPU kernels take it, without requantizing:
    /// `Some` for a GGUF `Q8_0` ([`hark_kernels::Format::Q8`]), `Q4_0`/`Q4_1`/`Q4_K` and a
    /// GPTQ/AutoRound weight ([`hark_kernels::Format::Q4`]); `None` for a tensor stored as
    /// floats, or whose encoding has no 32-weight block form (activation-ordered GPTQ), which
    /// the caller then reads through [`Self::f32`]/[`Self::f16`] as usual. Marks the tensor
    /// used. `name` is the Hugging Face name (`….weight`); the matrix is `[out, in]`.
    pub fn packed(&self, name: &str) -> Result<Option<hark_kernels::PackedMatrix>, LoadError> {
        let Some((rows, cols, blocks)) = self.native_blocks(name)? else {
            return Ok(None);
        };
        let packed = match blocks {
            PackedBlocks::Q8(b) => hark_kernels::PackedMatrix::from_q8_blocks(rows, cols, b),
            PackedBlocks::Q4(b) => hark_kernels::PackedMatrix::from_q4_blocks(rows, cols, b),
        };
        packed.map(Some).map_err(|e| LoadError::Quantized {
            path: PathBuf::from(&self.shards[self.tensors[name].shard].label),
            detail: format!("{name}: {e}"),
        })
    }

    /// The whole tensor as f32.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let info = self.info(name)?;
        Ok(match &info.quant {
            None => to_f32(info.dtype, self.raw(info)),
            Some(_) => self.dequantize(info),
        })
    }

    /// The whole tensor as f16 (bf16 is converted; f32 is rounded).
    pub fn f16(&self, name: &str) -> Result<Vec<f16>, LoadError> {
        let info = self.info(name)?;
        let raw = self.raw(info);
        Ok(match info.dtype {
            StoredDtype::F16 => pod_vec::<f16>(&raw),
            StoredDtype::BF16 => {
                let src = pod_vec::<bf16>(&raw);
                src.iter().map(|x| f16::from_f32(x.to_f32())).collect()
            }
            StoredDtype::F32 => {
                let src = pod_vec::<f32>(&raw);
                let mut out = vec![f16::ZERO; src.len()];
                out.convert_from_f32_slice(&src);
                out
            }
        })
    }

    /// The whole tensor as bf16 (f16 and f32 are rounded).
    pub fn bf16(&self, name: &str) -> Result<Vec<bf16>, LoadError> {
        let info = self.info(name)?;
        let raw = self.raw(info);
        Ok(match info.dtype {
            StoredDtype::BF16 => pod_vec::<bf16>(&raw),
            StoredDtype::F16 | StoredDtype::F32 => {
                let src = to_f32(info.dtype, &raw);
                let mut out = vec![bf16::ZERO; src.len()];
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
        match &info.quant {
            None => {}
            Some(Quant::Ggml(t)) => {
                // Rows are whole blocks (checked when the file was opened).
                let rb = t.row_bytes(cols).expect("checked at open");
                let start = info.start + row * rb;
                quant::dequantize(*t, self.bytes(info.shard, start..start + rb), out);
                return Ok(());
            }
            Some(Quant::Gptq(p)) => {
                self.gptq(info, p).row(row, out);
                return Ok(());
            }
        }
        let esize = info.dtype.size();
        let start = info.start + row * cols * esize;
        let raw = &self.shards[info.shard].storage.bytes()[start..start + cols * esize];
        match info.dtype {
            StoredDtype::F32 => out.copy_from_slice(&pod_vec::<f32>(raw)),
            StoredDtype::F16 => pod_vec::<f16>(raw).convert_to_f32_slice(out),
            StoredDtype::BF16 => pod_vec::<bf16>(raw).convert_to_f32_slice(out),
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

/// Replace each GPTQ `prefix.qweight`/`.qzeros`/`.scales`(/`.g_idx`) group by one
/// `prefix.weight` of shape `[out, in]`, checking every part's shape and that the zero points
/// are the symmetric ones the packing convention stores.
fn group_gptq(
    shards: &[Shard],
    tensors: &mut HashMap<String, TensorInfo>,
    mut ints: HashMap<String, TensorInfo>,
    gptq: Option<&GptqConfig>,
) -> Result<(), LoadError> {
    let mut qweights: Vec<String> = ints
        .keys()
        .filter_map(|n| n.strip_suffix(".qweight").map(str::to_string))
        .collect();
    qweights.sort();
    let label = |info: &TensorInfo| PathBuf::from(&shards[info.shard].label);
    let Some(cfg) = gptq else {
        if let Some(first) = qweights.first() {
            let info = &ints[&format!("{first}.qweight")];
            return Err(LoadError::Quantized {
                path: label(info),
                detail: format!(
                    "{first}.qweight is a GPTQ-packed weight but config.json has no quantization_config"
                ),
            });
        }
        if let Some((name, info)) = ints.iter().next() {
            tracing::debug!("{}: tensor {name} has dtype I32", label(info).display());
        }
        return Ok(());
    };
    for prefix in qweights {
        let qweight = ints.remove(&format!("{prefix}.qweight")).expect("listed");
        let path = label(&qweight);
        let bad = |detail: String| LoadError::Quantized {
            path: path.clone(),
            detail: format!("{prefix}: {detail}"),
        };
        let qzeros = ints
            .remove(&format!("{prefix}.qzeros"))
            .ok_or_else(|| bad("qweight without qzeros".into()))?;
        let scales = tensors
            .remove(&format!("{prefix}.scales"))
            .ok_or_else(|| bad("qweight without float scales".into()))?;
        let g_idx = ints.remove(&format!("{prefix}.g_idx"));
        let [packed_rows, out] = qweight.shape[..] else {
            return Err(bad(format!("qweight has shape {:?}", qweight.shape)));
        };
        let inp = packed_rows * 8;
        let gs = cfg.group_size;
        let groups = inp.div_ceil(gs);
        if inp == 0 || out == 0 || !out.is_multiple_of(8) {
            return Err(bad(format!("qweight shape {:?}", qweight.shape)));
        }
        if qzeros.shape != [groups, out / 8] {
            return Err(bad(format!(
                "qzeros has shape {:?}, expected {:?} for [{out}, {inp}] in groups of {gs}",
                qzeros.shape,
                [groups, out / 8]
            )));
        }
        if scales.shape != [groups, out] {
            return Err(bad(format!(
                "scales has shape {:?}, expected {:?}",
                scales.shape,
                [groups, out]
            )));
        }
        let scale_type = match scales.dtype {
            StoredDtype::F16 => ScaleType::F16,
            StoredDtype::BF16 => ScaleType::BF16,
            StoredDtype::F32 => ScaleType::F32,
        };
        let bytes = |i: &TensorInfo| &shards[i.shard].storage.bytes()[i.start..i.end];
        let g_idx = match g_idx {
            None => None,
            Some(g) => {
                if g.shape != [inp] {
                    return Err(bad(format!(
                        "g_idx has shape {:?}, expected [{inp}]",
                        g.shape
                    )));
                }
                let idx: Vec<u32> = pod_vec::<u32>(bytes(&g));
                if let Some(bad_g) = idx.iter().find(|&&v| v as usize >= groups) {
                    return Err(bad(format!("g_idx names group {bad_g} of {groups}")));
                }
                let trivial = idx.iter().enumerate().all(|(i, &v)| v as usize == i / gs);
                if !trivial && !cfg.desc_act {
                    return Err(bad(
                        "g_idx permutes the groups but quantization_config has desc_act false"
                            .into(),
                    ));
                }
                (!trivial).then(|| Arc::new(idx))
            }
        };
        let want = cfg.stored_zero();
        let words = pod_vec::<u32>(bytes(&qzeros));
        if let Some(w) = words
            .iter()
            .find(|&&w| (0..8).any(|k| (w >> (4 * k)) & 15 != want))
        {
            return Err(bad(format!(
                "a zero point word is {w:#010x}: symmetric 4-bit {} weights store {want} in every nibble (zero 8{}); the checkpoint's packing does not match its quantization_config",
                cfg.method,
                if cfg.zero_offset == 1 {
                    " − 1, GPTQ v1"
                } else {
                    ", GPTQ v2"
                }
            )));
        }
        let name = format!("{prefix}.weight");
        if tensors.contains_key(&name) {
            return Err(bad(format!("both {name} and a packed qweight are stored")));
        }
        let info = TensorInfo {
            shard: qweight.shard,
            dtype: StoredDtype::F32,
            shape: vec![out, inp],
            start: qweight.start,
            end: qweight.end,
            quant: Some(Quant::Gptq(GptqParts {
                qzeros: (qzeros.shard, qzeros.start..qzeros.end),
                scales: (scales.shard, scales.start..scales.end),
                scale_type,
                g_idx,
                group_size: gs,
                zero_offset: cfg.zero_offset,
            })),
        };
        tensors.insert(name, info);
    }
    if let Some(name) = ints.keys().min() {
        return Err(LoadError::Quantized {
            path: label(&ints[name]),
            detail: format!("{name}: an i32 tensor outside any GPTQ weight"),
        });
    }
    Ok(())
}

/// Little-endian bytes as `T` values, copied (so the mapping's alignment never matters).
fn pod_vec<T: bytemuck::Pod>(raw: impl AsRef<[u8]>) -> Vec<T> {
    bytemuck::pod_collect_to_vec(raw.as_ref())
}

fn to_f32(dtype: StoredDtype, raw: impl AsRef<[u8]>) -> Vec<f32> {
    let raw = raw.as_ref();
    match dtype {
        StoredDtype::F32 => pod_vec::<f32>(raw),
        StoredDtype::F16 => {
            let src = pod_vec::<f16>(raw);
            let mut out = vec![0.0; src.len()];
            src.convert_to_f32_slice(&mut out);
            out
        }
        StoredDtype::BF16 => {
            let src = pod_vec::<bf16>(raw);
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
    /// Open a checkpoint: a Hugging Face model directory in the released layout (plain, or
    /// W4A16 GPTQ/AutoRound safetensors with a `quantization_config`), a `.gguf` file in
    /// CrispASR's `gemma4e2b` layout, or a directory holding one `.gguf` file and no
    /// safetensors. See [`Self::open_gguf`] for what a GGUF needs beside it.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        if let Some(file) = gguf_file(path)? {
            return Self::open_gguf(&file);
        }
        let dir = path;
        if !dir.is_dir() {
            return Err(LoadError::NoSuchDir(dir.to_path_buf()));
        }
        let config_path = dir.join("config.json");
        let raw_config: serde_json::Value = read_json(&config_path)?;
        let config_json: Gemma4ConfigJson =
            serde_json::from_value(raw_config.clone()).map_err(|source| LoadError::Json {
                path: config_path.clone(),
                source,
            })?;
        let gptq =
            GptqConfig::from_config_json(&raw_config).map_err(|source| LoadError::Config {
                path: config_path.clone(),
                source,
            })?;
        let (generation, processor) = side_configs(dir)?;
        let config = ModelConfig::resolve(&config_json, generation.as_ref(), processor.as_ref())
            .map_err(|source| LoadError::Config {
                path: config_path.clone(),
                source,
            })?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), &config)?;
        let tensors = TensorStore::open_dir_quantized(dir, gptq.as_ref())?;
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

    /// Open a GGUF file of CrispASR's `gemma4e2b` layout.
    ///
    /// Such a file carries the weights, the model's dimensions and the token strings, but not
    /// the tokenizer itself (CrispASR writes no merges) nor the multimodal and stop token ids.
    /// So `tokenizer.json` must lie beside the file (it is checked against the GGUF's token
    /// list). The configuration comes from `config.json` beside the file when there is one
    /// (checked against the metadata); otherwise it is built from the metadata
    /// ([`gguf::config_json`]) with the audio ids and the stop ids (`<eos>`, `<turn|>`) looked
    /// up in the tokenizer, and a missing key is an error naming it. `generation_config.json`
    /// and `processor_config.json` beside the file are read as for a directory.
    pub fn open_gguf(file: &Path) -> Result<Self, LoadError> {
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (tensors, header) = TensorStore::open_gguf(file)?;
        let gguf_err = |problem| LoadError::Gguf {
            path: file.into(),
            problem,
        };
        match header.architecture() {
            Some(gguf::ARCHITECTURE) => {}
            other => {
                return Err(gguf_err(gguf::GgufProblem::BadMetadata {
                    key: "general.architecture".into(),
                    detail: format!(
                        "{}; Hark reads CrispASR's `{}` layout",
                        other.map_or("missing".to_string(), |a| format!("`{a}`")),
                        gguf::ARCHITECTURE
                    ),
                }));
            }
        }
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(LoadError::Tokenizer {
                path: tok_path,
                detail: "not found: a GGUF file carries the token strings but not the tokenizer \
                         (no merges); put the model's tokenizer.json beside the .gguf file"
                    .into(),
            });
        }
        let inner =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| LoadError::Tokenizer {
                path: tok_path.clone(),
                detail: e.to_string(),
            })?;
        gguf::check_token_list(&header, inner.get_vocab_size(true), |id| {
            inner.id_to_token(id)
        })
        .map_err(|detail| LoadError::Tokenizer {
            path: tok_path.clone(),
            detail: format!("does not belong to {}: {detail}", file.display()),
        })?;
        let (generation, processor) = side_configs(&dir)?;
        let config_path = dir.join("config.json");
        let config = if config_path.exists() {
            let json: Gemma4ConfigJson = read_json(&config_path)?;
            let config = ModelConfig::resolve(&json, generation.as_ref(), processor.as_ref())
                .map_err(|source| LoadError::Config {
                    path: config_path.clone(),
                    source,
                })?;
            gguf::check_against_config(&header, &config).map_err(gguf_err)?;
            config
        } else {
            let id = |token: &str| {
                inner
                    .token_to_id(token)
                    .ok_or_else(|| LoadError::Tokenizer {
                        path: tok_path.clone(),
                        detail: format!(
                            "{token} is not in the vocabulary (its id is needed to build the \
                         configuration from the GGUF metadata, as there is no config.json)"
                        ),
                    })
            };
            use crate::tokenizer::special;
            let ids = gguf::TokenIds {
                pad: id("<pad>")?,
                bos: id(special::BOS)?,
                boa: id(special::AUDIO_BEGIN)?,
                audio: id(special::AUDIO_PLACEHOLDER)?,
                eoa: id(special::AUDIO_END)?,
                stop: vec![id("<eos>")?, id(special::TURN_CLOSE)?],
            };
            let shapes: HashMap<String, Vec<usize>> = tensors
                .tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.shape.clone()))
                .collect();
            let value = gguf::config_json(&header, &shapes, &ids).map_err(gguf_err)?;
            let json: Gemma4ConfigJson =
                serde_json::from_value(value).map_err(|source| LoadError::Json {
                    path: file.into(),
                    source,
                })?;
            ModelConfig::resolve(&json, generation.as_ref(), processor.as_ref()).map_err(
                |source| LoadError::Config {
                    path: file.into(),
                    source,
                },
            )?
        };
        let tokenizer = TextTokenizer::from_parsed(inner, &tok_path, &config)?;
        let name = file
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.display().to_string());
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

/// `generation_config.json` and the feature-extractor block (`processor_config.json`, else
/// `preprocessor_config.json`) of a model directory, when present.
fn side_configs(
    dir: &Path,
) -> Result<(Option<GenerationConfigJson>, Option<ProcessorConfigJson>), LoadError> {
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
    Ok((generation, processor))
}

/// The GGUF file `path` names: the path itself if it is a `.gguf` file, or the one `.gguf`
/// file of a directory that has no safetensors (several are an error); `None` otherwise.
fn gguf_file(path: &Path) -> Result<Option<PathBuf>, LoadError> {
    let is_gguf = |p: &Path| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    };
    if path.is_file() {
        return Ok(is_gguf(path).then(|| path.to_path_buf()));
    }
    if !path.is_dir()
        || path.join("model.safetensors").exists()
        || path.join("model.safetensors.index.json").exists()
    {
        return Ok(None);
    }
    let entries = std::fs::read_dir(path).map_err(|source| LoadError::Io {
        path: path.into(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_gguf(p))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(LoadError::Other(format!(
            "{}: several GGUF files ({}); name the one to load",
            path.display(),
            found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn optional_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, LoadError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}
