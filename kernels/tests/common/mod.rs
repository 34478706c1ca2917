//! Shared test helpers: a seeded generator and dequantization of a whole matrix.

use hark_kernels::PackedMatrix;

/// xorshift64*: reproducible values without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.f32()).collect()
    }
}

/// The matrix dequantized row by row, row-major.
pub fn dequantized(m: &PackedMatrix) -> Vec<f32> {
    let mut w = vec![0.0; m.rows() * m.cols()];
    if m.cols() > 0 {
        for (r, row) in w.chunks_exact_mut(m.cols()).enumerate() {
            m.row_f32(r, row);
        }
    }
    w
}
