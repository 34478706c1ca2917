//! Small building blocks shared by the audio encoder and the decoder.
//!
//! Precision policy: matmul weights are held in a [`WeightDtype`] (f32, f16, bf16, or int8 /
//! int4 blocks with scales; see [`crate::weights`]); everything else — activations, norms,
//! residuals, softmax — stays f32.

use std::cell::RefCell;
use std::sync::Arc;

use burn::tensor::{DType, Tensor, TensorData, activation, backend::Backend};

use crate::checkpoint::TensorStore;
use crate::config::Activation;
use crate::error::LoadError;
use crate::packed_cache::PackedCache;
use crate::weights::{Matrix, WeightDtype, Weights};

/// Reads tensors of a checkpoint onto a device, within a scope (a name prefix, as candle's
/// `VarBuilder`): `l.pp("self_attn").f32("q_norm.weight", ..)` reads
/// `{scope}.self_attn.q_norm.weight`.
///
/// A loader made by [`record`] reads nothing: it notes the name and shape of every tensor a
/// `load` asks it for and hands back empty values. The checkpoint check's list of expected
/// tensors is that record, so each tensor name is written once, in the `load` of its block.
#[derive(Clone)]
pub struct Loader<'a, B: Backend> {
    pub store: &'a Arc<TensorStore>,
    pub device: B::Device,
    pub weights: Weights,
    /// Packed weights from an earlier start, and where this load's go.
    pub cache: Option<&'a PackedCache>,
    /// Full name of this scope; empty at the root.
    prefix: String,
    /// Recording mode: where the `(name, shape)` of every tensor asked for goes.
    recorder: Option<&'a Recorder>,
}

type Recorder = RefCell<Vec<(String, Vec<usize>)>>;

/// The backend of a recording loader's empty values (any compiled backend: nothing runs on it).
#[cfg(feature = "flex")]
pub(crate) type RecordBackend = burn::backend::Flex;
#[cfg(all(feature = "ndarray", not(feature = "flex")))]
pub(crate) type RecordBackend = burn::backend::NdArray;
#[cfg(all(feature = "cuda", not(any(feature = "flex", feature = "ndarray"))))]
pub(crate) type RecordBackend = burn::backend::Cuda;

/// Names and shapes of every tensor `load` reads, in order, found by running it on a recording
/// loader. `load` gets empty tensors (and zeros for host buffers and scalars), so anything it
/// computes from them must be skipped when [`Loader::is_recording`].
pub(crate) fn record<T>(
    load: impl FnOnce(&Loader<'_, RecordBackend>) -> Result<T, LoadError>,
) -> Vec<(String, Vec<usize>)> {
    // A valid safetensors buffer holding no tensors: the store a recording loader never reads.
    const NO_TENSORS: &[u8] = b"\x08\0\0\0\0\0\0\0{}      ";
    let store = Arc::new(
        TensorStore::from_static("<recording>", NO_TENSORS).expect("an empty safetensors buffer"),
    );
    let recorder = Recorder::default();
    let loader = Loader {
        store: &store,
        device: Default::default(),
        weights: WeightDtype::F32.into(),
        cache: None,
        prefix: String::new(),
        recorder: Some(&recorder),
    };
    load(&loader).expect("a recording loader reads nothing, so loading cannot fail");
    drop(loader);
    recorder.into_inner()
}

impl<'a, B: Backend> Loader<'a, B> {
    /// A loader at the root scope.
    pub fn new(store: &'a Arc<TensorStore>, device: B::Device, weights: Weights) -> Self {
        Self {
            store,
            device,
            weights,
            cache: None,
            prefix: String::new(),
            recorder: None,
        }
    }

    /// The scope `name` below this one (`name` may hold dots: `l.pp("layers.3")`).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let mut scoped = self.clone();
        scoped.prefix = self.name(&name.to_string());
        scoped
    }

    /// The full name of `name` in this scope.
    pub fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether this loader only records names (see [`record`]).
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// In recording mode: note the tensor and return true (the caller returns an empty value
    /// instead of reading).
    fn recorded(&self, name: &str, shape: &[usize]) -> bool {
        match self.recorder {
            Some(r) => {
                r.borrow_mut().push((name.to_string(), shape.to_vec()));
                true
            }
            None => false,
        }
    }

    fn empty<const D: usize>(&self) -> Tensor<B, D> {
        Tensor::empty([0; D], &self.device)
    }

    /// An f32 tensor of the given rank (norm weights, biases, conv kernels).
    pub fn f32<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, LoadError> {
        let name = self.name(name);
        if self.recorded(&name, &shape) {
            return Ok(self.empty());
        }
        self.read_f32(&name, shape)
    }

    fn read_f32<const D: usize>(
        &self,
        full_name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, LoadError> {
        let data = self.store.f32(full_name)?;
        Ok(Tensor::from_data(
            TensorData::new(data, shape),
            &self.device,
        ))
    }

    /// A scalar, checked for as a 0-d tensor (a one-element buffer is accepted too).
    pub fn scalar(&self, name: &str) -> Result<f32, LoadError> {
        let name = self.name(name);
        if self.recorded(&name, &[]) {
            return Ok(0.0);
        }
        let data = self.store.f32(&name)?;
        data.first()
            .copied()
            .ok_or_else(|| LoadError::Other(format!("{name} is empty")))
    }

    /// A matmul weight `[out, in]` in the configured precision and place.
    pub fn matrix(&self, name: &str, out: usize, inp: usize) -> Result<Matrix<B>, LoadError> {
        let name = self.name(name);
        if self.recorded(&name, &[out, inp]) {
            return Ok(Matrix::Device(self.empty()));
        }
        Matrix::load(
            self.store,
            self.cache,
            &name,
            [out, inp],
            self.weights,
            &self.device,
        )
    }

    /// A host-side f32 buffer of `shape`, row-major (zeros when recording).
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        let name = self.name(name);
        if self.recorded(&name, shape) {
            return Ok(vec![0.0; shape.iter().product()]);
        }
        self.store.f32(&name)
    }

    /// A table that is only gathered from, row by row, and never loaded whole (see
    /// [`TensorStore::row_f32`]): marked as used; returns its full name.
    pub fn gathered(&self, name: &str, shape: &[usize]) -> String {
        let name = self.name(name);
        if !self.recorded(&name, shape) {
            self.store.mark_used(&name);
        }
        name
    }
}

/// `y = x Wᵀ (+ b)` with `W` stored `[out, in]` as in the checkpoint.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    weight: Matrix<B>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    pub fn load(
        l: &Loader<B>,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Self, LoadError> {
        let weight = l.matrix(&format!("{name}.weight"), out, inp)?;
        let bias = if bias {
            Some(l.f32(&format!("{name}.bias"), [out])?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    pub fn out_features(&self) -> usize {
        self.weight.out_features()
    }

    /// `x`: `[rows, in]` (f32) → `[rows, out]` (f32).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = self.weight.matmul(x);
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze_dim(0),
            None => y,
        }
    }

    /// Rows of the weight matrix (for a tied embedding table), as f32 on `device`.
    pub fn rows(&self, ids: &[u32], device: &B::Device) -> Tensor<B, 2> {
        self.weight.rows(ids, device)
    }
}

/// HF `Gemma4ClippableLinear`: `clamp(W clamp(x, in_min, in_max), out_min, out_max)`.
#[derive(Debug, Clone)]
pub struct ClippableLinear<B: Backend> {
    linear: Linear<B>,
    /// `(input_min, input_max, output_min, output_max)`; `None` when clipping is off.
    bounds: Option<[f32; 4]>,
}

impl<B: Backend> ClippableLinear<B> {
    pub fn load(
        l: &Loader<B>,
        name: &str,
        out: usize,
        inp: usize,
        clipped: bool,
    ) -> Result<Self, LoadError> {
        let linear = Linear::load(l, &format!("{name}.linear"), out, inp, false)?;
        let bounds = if clipped {
            Some([
                l.scalar(&format!("{name}.input_min"))?,
                l.scalar(&format!("{name}.input_max"))?,
                l.scalar(&format!("{name}.output_min"))?,
                l.scalar(&format!("{name}.output_max"))?,
            ])
        } else {
            None
        };
        Ok(Self { linear, bounds })
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.bounds {
            None => self.linear.forward(x),
            Some([in_lo, in_hi, out_lo, out_hi]) => {
                let x = clamp_finite(x, in_lo, in_hi);
                clamp_finite(self.linear.forward(x), out_lo, out_hi)
            }
        }
    }
}

/// Clamp, skipping the pass when both bounds are infinite (the checkpoint default).
pub fn clamp_finite<B: Backend, const D: usize>(x: Tensor<B, D>, lo: f32, hi: f32) -> Tensor<B, D> {
    match (lo.is_finite(), hi.is_finite()) {
        (false, false) => x,
        (true, false) => x.clamp_min(lo),
        (false, true) => x.clamp_max(hi),
        (true, true) => x.clamp(lo, hi),
    }
}

/// HF `Gemma4RMSNorm`: `x · (mean(x²) + eps)^-½ · w` over the last axis, weight used as is
/// (no `1 + w`), optionally without weight.
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    weight: Option<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn load(l: &Loader<B>, name: &str, dim: usize, eps: f64) -> Result<Self, LoadError> {
        Ok(Self {
            weight: Some(l.f32(&format!("{name}.weight"), [dim])?),
            eps,
        })
    }

    pub fn without_weight(eps: f64) -> Self {
        Self { weight: None, eps }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let ms = x.clone().powi_scalar(2).mean_dim(D - 1);
        let y = x * (ms + self.eps).powf_scalar(-0.5);
        match &self.weight {
            Some(w) => {
                let mut shape = [1usize; D];
                shape[D - 1] = w.dims()[0];
                y * w.clone().reshape(shape)
            }
            None => y,
        }
    }
}

/// Apply an activation function.
pub fn activate<B: Backend, const D: usize>(act: Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match act {
        Activation::Silu => activation::silu(x),
        Activation::GeluTanh => gelu_tanh(x),
        Activation::Gelu => activation::gelu(x),
        Activation::Relu => activation::relu(x),
    }
}

/// `½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, torch's `gelu(approximate="tanh")` (Gemma's
/// `gelu_pytorch_tanh`), with x³ as products like torch computes it: Burn's
/// `gelu_approximate` takes `powf(x, 3)` per element, which cost more than the rest of the
/// decoder's element-wise work together on prefill-sized MLP activations.
fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let inner = (x.clone() * x.clone())
        .mul_scalar(0.044715 * SQRT_2_OVER_PI)
        .add_scalar(SQRT_2_OVER_PI)
        * x.clone();
    (inner.tanh().mul_scalar(0.5).add_scalar(0.5)) * x
}

/// `cap · tanh(x / cap)`.
pub fn softcap<B: Backend, const D: usize>(x: Tensor<B, D>, cap: f64) -> Tensor<B, D> {
    x.div_scalar(cap).tanh().mul_scalar(cap)
}

/// Host copy of a tensor as f32.
pub fn to_vec<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.cast(DType::F32)
        .into_data()
        .to_vec::<f32>()
        .expect("an f32 tensor converts to f32")
}
