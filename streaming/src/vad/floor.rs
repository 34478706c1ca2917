//! Running estimate of the background (noise) energy.

/// Minimum of frame energies (dB) over a sliding window, kept as the minima of a few
/// sub-blocks so the update is O(1) and the memory fixed.
///
/// The minimum follows the quietest moments, which in speech are the pauses between
/// syllables, so it settles near the noise level whether or not someone is talking, and a
/// louder noise source is adopted once it has lasted one window. The minimum of single
/// frames sits below the noise's mean (20 ms frames of steady noise scatter over ~9 dB);
/// the gate's margin above the floor absorbs that.
pub(crate) struct NoiseFloor {
    /// Minima of the last completed blocks, used as a ring.
    blocks: [f32; BLOCKS],
    next: usize,
    block_frames: u32,
    in_block: u32,
    current: f32,
}

const BLOCKS: usize = 8;

impl NoiseFloor {
    /// A floor over about `window_frames` frames.
    pub(crate) fn new(window_frames: u32) -> Self {
        Self {
            // Empty blocks must not pull the minimum down: the first frame sets the floor.
            blocks: [f32::INFINITY; BLOCKS],
            next: 0,
            block_frames: window_frames.div_ceil(BLOCKS as u32).max(1),
            in_block: 0,
            current: f32::INFINITY,
        }
    }

    /// Adds one frame's energy in dB and returns the floor including it.
    pub(crate) fn update(&mut self, energy_db: f32) -> f32 {
        self.current = self.current.min(energy_db);
        self.in_block += 1;
        let floor = self.blocks.iter().fold(self.current, |m, &b| m.min(b));
        if self.in_block == self.block_frames {
            self.blocks[self.next] = self.current;
            self.next = (self.next + 1) % BLOCKS;
            self.in_block = 0;
            self.current = f32::INFINITY;
        }
        floor
    }
}

/// Mean-square power in dB relative to full scale, never below -100.
pub(crate) fn power_db(power: f32) -> f32 {
    10.0 * (power + 1e-10).log10()
}

#[cfg(test)]
mod tests {
    use super::NoiseFloor;

    #[test]
    fn follows_the_minimum_and_forgets_it_after_the_window() {
        // 16 frames: blocks of 2 frames.
        let mut f = NoiseFloor::new(16);
        assert_eq!(f.update(-40.0), -40.0);
        assert_eq!(f.update(-70.0), -70.0);
        for _ in 0..14 {
            assert_eq!(f.update(-30.0), -70.0);
        }
        // The block holding -70 is overwritten once eight newer blocks exist.
        assert_eq!(f.update(-30.0), -70.0);
        assert_eq!(f.update(-30.0), -70.0);
        assert_eq!(f.update(-30.0), -30.0);
    }
}
