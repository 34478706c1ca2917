//! Choosing a Burn backend at run time.
//!
//! Model code is generic over `B: Backend`; binaries pick the backend from a flag and run a
//! [`BackendTask`] on it. flex (pure Rust, gemm, native f16 matmul) is the default CPU
//! backend; ndarray is selectable; cuda is compiled in with the `cuda` feature and probed
//! before use, because cubecl panics rather than erroring when the driver is missing.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;

use crate::weights::{Kernels, WeightDtype, Weights, WeightsChoice};

/// A backend Hark can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    #[default]
    Flex,
    NdArray,
    Cuda,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Flex, BackendKind::NdArray, BackendKind::Cuda];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::NdArray => "ndarray",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this build has the backend compiled in.
    pub fn compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::NdArray => cfg!(feature = "ndarray"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Which code multiplies by the matmul weights: Hark's packed CPU kernels on the CPU
    /// backends (every precision, quantized included), Burn's matmul on the GPU.
    pub fn kernels(self) -> Kernels {
        match self {
            BackendKind::Flex | BackendKind::NdArray => Kernels::Host,
            BackendKind::Cuda => Kernels::Burn,
        }
    }

    /// The weights to load for the user's choice and a model of `parameters` weights.
    /// `auto`: int8 on the CPU and f16 on the GPU for large models (decode reads every weight
    /// once per token, so bytes per weight set its speed), f32 for small ones (exact parity
    /// with the float32 reference costs nothing there).
    pub fn weights(
        self,
        choice: WeightsChoice,
        parameters: usize,
    ) -> Result<Weights, BackendError> {
        let kernels = self.kernels();
        let dtype = match choice {
            WeightsChoice::Fixed(d) => d,
            WeightsChoice::Auto if parameters <= 200_000_000 => WeightDtype::F32,
            WeightsChoice::Auto => match kernels {
                Kernels::Host => WeightDtype::Q8,
                Kernels::Burn => WeightDtype::F16,
            },
        };
        if kernels == Kernels::Burn && dtype.burn_dtype().is_none() {
            return Err(BackendError::Unsupported {
                backend: self.name(),
                weights: dtype,
            });
        }
        Ok(Weights { dtype, kernels })
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" | "cpu" => Ok(BackendKind::Flex),
            "ndarray" => Ok(BackendKind::NdArray),
            "cuda" | "gpu" => Ok(BackendKind::Cuda),
            other => Err(BackendError::Unknown(other.to_string())),
        }
    }
}

/// Where the model runs: the `device` setting of harkd and `--device` of hark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

/// A CPU backend by name (`cuda` follows from [`Device::Cuda`]): the `backend` setting of
/// harkd and `--backend` of hark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    Flex,
    Ndarray,
    Cuda,
}

impl BackendKind {
    /// The backend a device and an optional backend name select (flex when only the CPU is
    /// named).
    pub fn select(device: Device, backend: Option<BackendName>) -> Result<Self, BackendError> {
        Ok(match (device, backend) {
            (Device::Cuda, None | Some(BackendName::Cuda)) => BackendKind::Cuda,
            (Device::Cuda, Some(other)) => return Err(BackendError::NotOnCuda(other)),
            (Device::Cpu, None | Some(BackendName::Flex)) => BackendKind::Flex,
            (Device::Cpu, Some(BackendName::Ndarray)) => BackendKind::NdArray,
            (Device::Cpu, Some(BackendName::Cuda)) => BackendKind::Cuda,
        })
    }
}

/// `weights` is a plain string in a configuration schema, one of these names.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for WeightsChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WeightsChoice".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<String> = std::iter::once("auto".to_string())
            .chain(
                crate::weights::WeightDtype::ALL
                    .iter()
                    .map(|d| d.name().to_string()),
            )
            .collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

/// The backend cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{0}` (choose flex, ndarray or cuda)")]
    Unknown(String),
    #[error("this build of Hark has no {0} backend (rebuild with `--features {0}`)")]
    NotCompiled(&'static str),
    #[error("device cuda cannot use the {0:?} backend")]
    NotOnCuda(BackendName),
    #[error("no usable CUDA GPU: {0}")]
    CudaUnavailable(String),
    #[error("the {backend} backend cannot run {weights} weights (use f16 or f32 there)")]
    Unsupported {
        backend: &'static str,
        weights: WeightDtype,
    },
}

/// Work to run with a concrete backend type.
pub trait BackendTask {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Run `task` on the chosen backend (device 0 for CUDA).
pub fn run_on<T: BackendTask>(kind: BackendKind, task: T) -> Result<T::Output, BackendError> {
    match kind {
        BackendKind::Flex => {
            #[cfg(feature = "flex")]
            {
                Ok(task.run::<burn::backend::Flex>(Default::default()))
            }
            #[cfg(not(feature = "flex"))]
            {
                drop(task);
                Err(BackendError::NotCompiled("flex"))
            }
        }
        BackendKind::NdArray => {
            #[cfg(feature = "ndarray")]
            {
                Ok(task.run::<burn::backend::NdArray>(Default::default()))
            }
            #[cfg(not(feature = "ndarray"))]
            {
                drop(task);
                Err(BackendError::NotCompiled("ndarray"))
            }
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                probe_cuda()?;
                Ok(task.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::new(0)))
            }
            #[cfg(not(feature = "cuda"))]
            {
                drop(task);
                Err(BackendError::NotCompiled("cuda"))
            }
        }
    }
}

/// Check that the CUDA driver library loads and reports a device, without touching cubecl
/// (which panics when the driver is absent).
#[cfg(feature = "cuda")]
pub fn probe_cuda() -> Result<(), BackendError> {
    type CuInit = unsafe extern "C" fn(u32) -> i32;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut i32) -> i32;
    let fail = |m: String| BackendError::CudaUnavailable(m);
    // SAFETY: loading the system CUDA driver runs its initialisers, which is what any CUDA
    // program does; the symbols are called with the signatures of the CUDA driver API.
    unsafe {
        let lib = libloading::Library::new("libcuda.so.1")
            .or_else(|_| libloading::Library::new("libcuda.so"))
            .map_err(|e| {
                fail(format!(
                    "cannot load libcuda ({e}); is the NVIDIA driver installed?"
                ))
            })?;
        let init: libloading::Symbol<CuInit> =
            lib.get(b"cuInit\0").map_err(|e| fail(e.to_string()))?;
        let rc = init(0);
        if rc != 0 {
            return Err(fail(format!("cuInit failed with code {rc}")));
        }
        let count: libloading::Symbol<CuDeviceGetCount> = lib
            .get(b"cuDeviceGetCount\0")
            .map_err(|e| fail(e.to_string()))?;
        let mut n = 0i32;
        let rc = count(&mut n);
        if rc != 0 || n == 0 {
            return Err(fail(format!(
                "no CUDA device (cuDeviceGetCount → {rc}, {n} devices)"
            )));
        }
        // Keep the driver loaded for the process lifetime; cubecl loads it again by name.
        std::mem::forget(lib);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_backend_name_select_a_backend() {
        use BackendName as N;
        assert_eq!(
            BackendKind::select(Device::Cpu, None).unwrap(),
            BackendKind::Flex
        );
        assert_eq!(
            BackendKind::select(Device::Cpu, Some(N::Ndarray)).unwrap(),
            BackendKind::NdArray
        );
        assert_eq!(
            BackendKind::select(Device::Cuda, None).unwrap(),
            BackendKind::Cuda
        );
        let err = BackendKind::select(Device::Cuda, Some(N::Flex)).unwrap_err();
        assert!(
            err.to_string().contains("cannot use the Flex backend"),
            "{err}"
        );
    }

    #[test]
    fn parses_names_and_refuses_unknown() {
        assert_eq!("flex".parse::<BackendKind>().unwrap(), BackendKind::Flex);
        assert_eq!(
            "ndarray".parse::<BackendKind>().unwrap(),
            BackendKind::NdArray
        );
        assert_eq!("cuda".parse::<BackendKind>().unwrap(), BackendKind::Cuda);
        assert!("tpu".parse::<BackendKind>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        struct Nothing;
        impl BackendTask for Nothing {
            type Output = ();
            fn run<B: Backend>(self, _: B::Device) {}
        }
        let err = run_on(BackendKind::Cuda, Nothing).unwrap_err();
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
}
