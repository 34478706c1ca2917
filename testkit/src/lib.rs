//! Development scaffolding, kept out of the model library's public surface: synthetic Gemma 4
//! checkpoints with random weights at any configuration (the real E2B shapes included), used by
//! the tests, `hark bench` and `harkd --model synthetic:e2b` load tests; and the similarity
//! measure numerical comparisons state their tolerances in; the committed fixtures.

pub mod fixtures;
pub mod similarity;
pub mod synthetic;
