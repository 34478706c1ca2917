//! Run-time choice of the instruction-set path.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::error::KernelError;

/// An instruction-set path, ordered from least to most capable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Isa {
    /// Scalar Rust the compiler may auto-vectorise; runs everywhere.
    Portable,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// Avx2 plus AVX-512 F/BW/VL and AVX512-VNNI (Zen 4/5, Ice Lake and later).
    Avx512,
}

impl Isa {
    /// Every path, least capable first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The lowercase name used by `Display`, `FromStr` and `HARK_KERNELS_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| KernelError::UnknownIsa(s.to_owned()))
    }
}

/// The most capable path this CPU runs.
fn hardware_isa() -> Isa {
    static HW: OnceLock<Isa> = OnceLock::new();
    *HW.get_or_init(probe)
}

#[cfg(target_arch = "x86_64")]
fn probe() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma") && has!("f16c");
    let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni");
    match (avx2, avx512) {
        (true, true) => Isa::Avx512,
        (true, false) => Isa::Avx2,
        _ => Isa::Portable,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn probe() -> Isa {
    Isa::Portable
}

/// The path kernels use: the CPU's best, or `HARK_KERNELS_ISA` (portable|avx2|avx512) when set
/// to a valid name, never above what the CPU has. Read once.
pub fn detected_isa() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        let requested = std::env::var("HARK_KERNELS_ISA")
            .ok()
            .and_then(|v| v.parse().ok());
        requested.map_or(hardware_isa(), |isa: Isa| isa.min(hardware_isa()))
    })
}

/// The paths this CPU can run, least capable first.
pub fn available_isas() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&i| i <= hardware_isa())
        .collect()
}

thread_local! {
    static FORCED: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// Runs `f` with kernels called from this thread forced to `isa` (capped at what the CPU has),
/// restoring the previous choice afterwards, also on panic.
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.set(self.0);
        }
    }
    let _restore = Restore(FORCED.replace(Some(isa)));
    f()
}

/// The path for a kernel called now on this thread; never above what the CPU has.
pub(crate) fn current_isa() -> Isa {
    FORCED
        .get()
        .map_or_else(detected_isa, |isa| isa.min(hardware_isa()))
}

thread_local! {
    static INT8_GEMM: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with the int8 GEMM path for Q8/Q4 products of `n >= INT8_GEMM_MIN_N` rows enabled
/// or disabled (then they dequantize to f32 as for smaller `n`) on this thread, restoring the
/// previous choice afterwards, also on panic. Enabled by default.
pub fn with_int8_gemm<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INT8_GEMM.set(self.0);
        }
    }
    let _restore = Restore(INT8_GEMM.replace(enabled));
    f()
}

/// Whether int8 GEMMs are enabled on this thread (see [`with_int8_gemm`]).
pub(crate) fn int8_gemm_enabled() -> bool {
    INT8_GEMM.get()
}
