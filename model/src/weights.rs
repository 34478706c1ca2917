//! Matmul weights: their precision ([`WeightDtype`]), where they live and which code multiplies
//! by them ([`Kernels`]), and the loaded matrix itself ([`Matrix`]).
//!
//! On the CPU backends the weights are packed in host memory for `hark-kernels` (f32, f16,
//! bf16, or int8/int4 blocks with scales), whatever the Burn backend; on the GPU they are Burn
//! tensors. The forward code is the same for both: it calls [`Matrix::matmul`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use burn::tensor::{DType, Int, Tensor, TensorData, backend::Backend};
use hark_kernels::{Format, PackedMatrix};

use crate::checkpoint::TensorStore;
use crate::error::LoadError;
use crate::packed_cache::PackedCache;

/// Precision of matmul weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightDtype {
    F32,
    F16,
    BF16,
    /// int8 in blocks of 32 with an f16 scale (ggml Q8_0's layout).
    Q8,
    /// int4 in blocks of 32 with an f16 scale and minimum (ggml Q4_1's layout).
    Q4,
}

impl WeightDtype {
    pub const ALL: [WeightDtype; 5] = [
        WeightDtype::F32,
        WeightDtype::F16,
        WeightDtype::BF16,
        WeightDtype::Q8,
        WeightDtype::Q4,
    ];

    pub fn name(self) -> &'static str {
        self.format().name()
    }

    /// The packed format of the CPU kernels.
    pub fn format(self) -> Format {
        match self {
            WeightDtype::F32 => Format::F32,
            WeightDtype::F16 => Format::F16,
            WeightDtype::BF16 => Format::BF16,
            WeightDtype::Q8 => Format::Q8,
            WeightDtype::Q4 => Format::Q4,
        }
    }

    /// The Burn element type, for the precisions Burn's matmul computes in.
    pub fn burn_dtype(self) -> Option<DType> {
        match self {
            WeightDtype::F32 => Some(DType::F32),
            WeightDtype::F16 => Some(DType::F16),
            _ => None,
        }
    }
}

impl fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where matmul weights live and which code multiplies by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernels {
    /// Burn tensors on the model's device (the GPU path; f32 or f16).
    Burn,
    /// Packed in host memory and multiplied by `hark-kernels` (the CPU path, every precision).
    /// Correct on any backend; fast where the backend's tensors live in host memory.
    Host,
}

/// How a model's matmul weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weights {
    pub dtype: WeightDtype,
    pub kernels: Kernels,
}

impl From<WeightDtype> for Weights {
    /// Packed host weights: what the CPU backends use.
    fn from(dtype: WeightDtype) -> Self {
        Weights {
            dtype,
            kernels: Kernels::Host,
        }
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kernels {
            Kernels::Host => write!(f, "{} (cpu kernels)", self.dtype),
            Kernels::Burn => write!(f, "{} (burn)", self.dtype),
        }
    }
}

/// The user's `--weights` choice: a precision, or `auto` (decided by model size and backend,
/// see [`BackendKind::weights`](crate::BackendKind::weights)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsChoice {
    #[default]
    Auto,
    Fixed(WeightDtype),
}

impl WeightsChoice {
    pub const NAMES: &'static str = "auto, f32, f16, bf16, q8, q4";
}

impl FromStr for WeightsChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(WeightsChoice::Auto);
        }
        WeightDtype::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .map(WeightsChoice::Fixed)
            .ok_or_else(|| format!("unknown weights `{s}` (choose {})", Self::NAMES))
    }
}

impl fmt::Display for WeightsChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsChoice::Auto => f.write_str("auto"),
            WeightsChoice::Fixed(d) => d.fmt(f),
        }
    }
}

impl serde::Serialize for WeightsChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WeightsChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A matmul weight `[out, in]`, stored as in the checkpoint (never transposed at load).
#[derive(Debug, Clone)]
pub enum Matrix<B: Backend> {
    /// A Burn tensor on the device (f32 or f16); the matmul reads its transposed view.
    Device(Tensor<B, 2>),
    /// Packed in host memory for Hark's CPU kernels.
    Packed(Arc<PackedMatrix>),
}

/// Rows converted to f32 at a time while packing (bounds the transient memory of large
/// tables such as the 262 144-row embedding).
const PACK_ROWS: usize = 4096;

impl<B: Backend> Matrix<B> {
    /// Read `name` (`[out, in]`) from the store as `weights` say. The tensor's mapped pages are
    /// given back to the OS once converted.
    pub fn load(
        store: &TensorStore,
        cache: Option<&PackedCache>,
        name: &str,
        [out, inp]: [usize; 2],
        weights: Weights,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let matrix = match weights.kernels {
            Kernels::Host => {
                let packed = match cache.and_then(|c| c.get(name, out, inp)) {
                    Some(p) => p,
                    None => {
                        let p = Arc::new(pack(store, name, [out, inp], weights.dtype)?);
                        if let Some(c) = cache {
                            c.insert(name, p.clone());
                        }
                        p
                    }
                };
                Matrix::Packed(packed)
            }
            Kernels::Burn => {
                let weight = match weights.dtype {
                    WeightDtype::F32 => {
                        Tensor::from_data(TensorData::new(store.f32(name)?, [out, inp]), device)
                    }
                    WeightDtype::F16 => Tensor::from_data(
                        TensorData::new(store.f16(name)?, [out, inp]),
                        (device, DType::F16),
                    ),
                    other => {
                        return Err(LoadError::Other(format!(
                            "{other} weights need Hark's CPU kernels; on this device use f16 or f32"
                        )));
                    }
                };
                Matrix::Device(weight)
            }
        };
        store.release(name);
        Ok(matrix)
    }

    pub fn out_features(&self) -> usize {
        match self {
            Matrix::Device(w) => w.dims()[0],
            Matrix::Packed(w) => w.rows(),
        }
    }

    /// `x Wᵀ`: `[rows, in]` (f32) → `[rows, out]` (f32).
    pub fn matmul(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Matrix::Device(w) => {
                let w = w.clone().transpose();
                if w.dtype() == DType::F16 {
                    x.cast(DType::F16).matmul(w).cast(DType::F32)
                } else {
                    x.matmul(w)
                }
            }
            Matrix::Packed(w) => {
                let [rows, _] = x.dims();
                let device = x.device();
                let x = x
                    .into_data()
                    .into_vec::<f32>()
                    .expect("activations are f32");
                let mut y = vec![0.0f32; rows * w.rows()];
                w.matmul(&x, rows, &mut y);
                Tensor::from_data(TensorData::new(y, [rows, w.rows()]), &device)
            }
        }
    }

    /// Rows `ids` of the matrix (a tied embedding table), as f32 on `device`.
    pub fn rows(&self, ids: &[u32], device: &B::Device) -> Tensor<B, 2> {
        match self {
            Matrix::Device(w) => {
                let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
                let n = ids.len();
                let index = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), device);
                w.clone().select(0, index).cast(DType::F32)
            }
            Matrix::Packed(w) => {
                let width = w.cols();
                let mut out = vec![0.0f32; ids.len() * width];
                for (row, &id) in out.chunks_mut(width).zip(ids) {
                    w.row_f32(id as usize, row);
                }
                Tensor::from_data(TensorData::new(out, [ids.len(), width]), device)
            }
        }
    }
}

/// Pack `name` for the CPU kernels in `dtype`. A natively quantized tensor (GGUF, GPTQ) is
/// taken as stored whenever a quantized precision is asked for, and dequantized for a float
/// one. A matrix whose width does not split into quantization blocks keeps f16. Conversions go
/// [`PACK_ROWS`] rows at a time.
fn pack(
    store: &TensorStore,
    name: &str,
    [out, inp]: [usize; 2],
    dtype: WeightDtype,
) -> Result<PackedMatrix, LoadError> {
    if matches!(dtype, WeightDtype::Q8 | WeightDtype::Q4)
        && let Some(native) = store.packed(name)?
    {
        return Ok(native);
    }
    let format = match dtype.format() {
        f @ (Format::Q8 | Format::Q4) if !hark_kernels::quantizable(inp, f) => Format::F16,
        f => f,
    };
    let bad = |e: hark_kernels::KernelError| LoadError::Other(format!("{name}: {e}"));
    match format {
        Format::F16 => Ok(PackedMatrix::from_f16(out, inp, store.f16(name)?)),
        Format::BF16 => Ok(PackedMatrix::from_bf16(out, inp, store.bf16(name)?)),
        Format::F32 => {
            PackedMatrix::from_f32(out, inp, &store.f32(name)?, Format::F32).map_err(bad)
        }
        Format::Q8 | Format::Q4 => {
            store.mark_used(name);
            let block = match format {
                Format::Q8 => std::mem::size_of::<hark_kernels::BlockQ8>(),
                _ => std::mem::size_of::<hark_kernels::BlockQ4>(),
            };
            let mut bytes = Vec::with_capacity(out * inp / hark_kernels::QK * block);
            let mut rows = vec![0.0f32; PACK_ROWS.min(out) * inp];
            for first in (0..out).step_by(PACK_ROWS) {
                let n = PACK_ROWS.min(out - first);
                let chunk = &mut rows[..n * inp];
                for (r, row) in chunk.chunks_mut(inp).enumerate() {
                    store.row_f32(name, first + r, row)?;
                }
                let packed = PackedMatrix::from_f32(n, inp, chunk, format).map_err(bad)?;
                bytes.extend_from_slice(packed.as_bytes());
            }
            PackedMatrix::from_shared_bytes(out, inp, format, Arc::new(bytes), 0).map_err(bad)
        }
    }
}
