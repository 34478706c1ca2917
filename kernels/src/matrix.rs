//! `PackedMatrix`: a weight matrix `[rows = out features, cols = in features]` in one format.

use std::fmt;
use std::sync::Arc;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::error::KernelError;
use crate::format::{BlockQ4, BlockQ8, Format, QK};
use crate::quantize::{quantize_q4, quantize_q8};
use crate::weights::Weights;
use crate::{gemm, gemm_i8, gemv};

/// Bytes shared with other owners, e.g. a memory-mapped packed-weight cache file.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

enum Storage {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    Q8(Vec<BlockQ8>),
    Q4(Vec<BlockQ4>),
    /// `bytes[offset..offset + len]`, aligned for the format (checked when built).
    Shared {
        bytes: SharedBytes,
        offset: usize,
        len: usize,
    },
}

/// A row-major weight matrix (rows = output features, cols = input features) in packed form.
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    format: Format,
    storage: Storage,
}

impl fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("format", &self.format)
            .field("storage_bytes", &self.storage_bytes())
            .field("shared", &matches!(self.storage, Storage::Shared { .. }))
            .finish()
    }
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), KernelError> {
    if expected == got {
        Ok(())
    } else {
        Err(KernelError::Length {
            what,
            expected,
            got,
        })
    }
}

impl PackedMatrix {
    fn new(rows: usize, cols: usize, format: Format, storage: Storage) -> Self {
        PackedMatrix {
            rows,
            cols,
            format,
            storage,
        }
    }

    /// Packs row-major f32 weights (`w.len() == rows * cols`), quantizing for Q8/Q4.
    pub fn from_f32(
        rows: usize,
        cols: usize,
        w: &[f32],
        format: Format,
    ) -> Result<Self, KernelError> {
        format.packed_len(rows, cols)?;
        check_len("weights", rows * cols, w.len())?;
        let storage = match format {
            Format::F32 => Storage::F32(w.to_vec()),
            Format::F16 => {
                let mut h = vec![f16::ZERO; w.len()];
                h.convert_from_f32_slice(w);
                Storage::F16(h)
            }
            Format::BF16 => {
                let mut h = vec![bf16::ZERO; w.len()];
                h.convert_from_f32_slice(w);
                Storage::BF16(h)
            }
            Format::Q8 => Storage::Q8(quantize_q8(w)?),
            Format::Q4 => Storage::Q4(quantize_q4(w)?),
        };
        Ok(Self::new(rows, cols, format, storage))
    }

    /// Wraps row-major f16 weights; panics unless `w.len() == rows * cols`.
    pub fn from_f16(rows: usize, cols: usize, w: Vec<f16>) -> Self {
        assert_eq!(
            w.len(),
            rows * cols,
            "from_f16: {rows}x{cols} needs that many weights"
        );
        Self::new(rows, cols, Format::F16, Storage::F16(w))
    }

    /// Wraps row-major bf16 weights; panics unless `w.len() == rows * cols`.
    pub fn from_bf16(rows: usize, cols: usize, w: Vec<bf16>) -> Self {
        assert_eq!(
            w.len(),
            rows * cols,
            "from_bf16: {rows}x{cols} needs that many weights"
        );
        Self::new(rows, cols, Format::BF16, Storage::BF16(w))
    }

    /// Wraps row-major Q8 blocks (`cols % 32 == 0`, `rows * cols / 32` blocks).
    pub fn from_q8_blocks(
        rows: usize,
        cols: usize,
        blocks: Vec<BlockQ8>,
    ) -> Result<Self, KernelError> {
        Format::Q8.packed_len(rows, cols)?;
        check_len("q8 blocks", rows * cols / QK, blocks.len())?;
        Ok(Self::new(rows, cols, Format::Q8, Storage::Q8(blocks)))
    }

    /// Wraps row-major Q4 blocks (`cols % 32 == 0`, `rows * cols / 32` blocks).
    pub fn from_q4_blocks(
        rows: usize,
        cols: usize,
        blocks: Vec<BlockQ4>,
    ) -> Result<Self, KernelError> {
        Format::Q4.packed_len(rows, cols)?;
        check_len("q4 blocks", rows * cols / QK, blocks.len())?;
        Ok(Self::new(rows, cols, Format::Q4, Storage::Q4(blocks)))
    }

    /// A zero-copy view of packed data (as written by [`as_bytes`](Self::as_bytes)) at
    /// `bytes[offset..]`, e.g. in a memory-mapped cache file. If `offset` is misaligned for the
    /// format the data is copied into an aligned buffer instead. `bytes.as_ref()` must return the
    /// same slice on every call (true of `Vec<u8>`, `memmap2::Mmap`, …).
    pub fn from_shared_bytes(
        rows: usize,
        cols: usize,
        format: Format,
        bytes: SharedBytes,
        offset: usize,
    ) -> Result<Self, KernelError> {
        let len = format.packed_len(rows, cols)?;
        let all = (*bytes).as_ref();
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= all.len())
            .ok_or(KernelError::OutOfRange {
                offset,
                end: offset.saturating_add(len),
                len: all.len(),
            })?;
        let data = &all[offset..end];
        if (data.as_ptr() as usize).is_multiple_of(format.align()) {
            return Ok(Self::new(
                rows,
                cols,
                format,
                Storage::Shared { bytes, offset, len },
            ));
        }
        let storage = match format {
            Format::F32 => Storage::F32(bytemuck::pod_collect_to_vec(data)),
            Format::F16 => Storage::F16(bytemuck::pod_collect_to_vec(data)),
            Format::BF16 => Storage::BF16(bytemuck::pod_collect_to_vec(data)),
            Format::Q8 => Storage::Q8(bytemuck::pod_collect_to_vec(data)),
            Format::Q4 => Storage::Q4(bytemuck::pod_collect_to_vec(data)),
        };
        Ok(Self::new(rows, cols, format, storage))
    }

    /// The packed data, row-major, as stored (for writing a cache file).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::F32(w) => bytemuck::cast_slice(w),
            Storage::F16(w) => bytemuck::cast_slice(w),
            Storage::BF16(w) => bytemuck::cast_slice(w),
            Storage::Q8(w) => bytemuck::cast_slice(w),
            Storage::Q4(w) => bytemuck::cast_slice(w),
            Storage::Shared { bytes, offset, len } => &(**bytes).as_ref()[*offset..offset + len],
        }
    }

    pub(crate) fn weights(&self) -> Weights<'_> {
        Weights::cast(self.format, self.as_bytes())
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Size of the packed data in bytes.
    pub fn storage_bytes(&self) -> usize {
        self.as_bytes().len()
    }

    /// Dequantizes row `r` into `out` (`out.len() == cols`), e.g. for embedding gathers.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows, "row {r} of a {}-row matrix", self.rows);
        assert_eq!(out.len(), self.cols, "row_f32: output length");
        self.weights().rows_f32(r, self.cols, out);
    }

    /// `y[n, rows] = x[n, cols] · Wᵀ`, overwriting `y`. Panics unless `x.len() == n * cols` and
    /// `y.len() == n * rows`. Uses the calling thread's ISA (see [`crate::with_isa`]) and the
    /// global rayon pool.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32]) {
        assert_eq!(x.len(), n * self.cols, "matmul: x must be n x cols");
        assert_eq!(y.len(), n * self.rows, "matmul: y must be n x rows");
        if y.is_empty() {
            return;
        }
        if self.cols == 0 {
            y.fill(0.0);
            return;
        }
        let gemv_max_n = if self.format.is_quantized() {
            crate::GEMV_MAX_N
        } else {
            gemv::FLOAT_GEMV_MAX_N
        };
        if n <= gemv_max_n {
            gemv::gemv(self.weights(), self.rows, self.cols, x, n, y);
        } else if self.format.is_quantized() && crate::int8_gemm_applies(n) {
            gemm_i8::gemm(self.weights(), self.rows, self.cols, x, n, y);
        } else {
            gemm::gemm(self.weights(), self.rows, self.cols, x, n, y);
        }
    }
}
