//! `hark dump --against`: one clip's stages compared with a golden reference file
//! (`tests/fixtures/golden/<model>/<clip>.safetensors`), with the tolerances of
//! `model/tests/golden.rs`, so a machine without Python (a GPU box) can check a backend.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use hark_model::speech::DumpTensors;
use hark_testkit::similarity::Similarity;
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

/// Bounds one backend must meet against the float32 reference.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerance {
    pub name: &'static str,
    /// Smallest cosine per stage.
    pub cosine: f64,
    /// Largest max |Δ| per stage, as a share of max |reference|.
    pub rel_max: f64,
    /// Greedy ids must match up to the first step whose reference top-2 margin is ≤ this.
    pub margin: f32,
}

/// f32 weights (model/tests/golden.rs `F32_TOL`).
pub const F32_TOLERANCE: Tolerance = Tolerance {
    name: "f32",
    cosine: 0.99999,
    rel_max: 1e-3,
    margin: 0.05,
};

/// f16/bf16 weights, or an f32 path on a GPU (model/tests/golden.rs `F16_TOL`).
pub const F16_TOLERANCE: Tolerance = Tolerance {
    name: "f16",
    cosine: 0.997,
    rel_max: 8e-2,
    margin: 0.05,
};

/// One stage against its reference.
#[derive(Debug, Serialize)]
pub struct StageReport {
    pub stage: String,
    pub cosine: f64,
    pub max_abs_diff: f64,
    /// `max_abs_diff` as a share of max |reference|.
    pub rel_max_diff: f64,
    pub ok: bool,
}

/// Greedy decoding against the reference ids.
#[derive(Debug, Serialize)]
pub struct GreedyReport {
    pub got: Vec<u32>,
    pub want: Vec<i64>,
    /// Steps compared: those before the first reference margin within the tolerance.
    pub firm_steps: usize,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct ClipReport {
    pub clip: String,
    pub mel_frames: usize,
    pub audio_tokens: usize,
    pub stages: Vec<StageReport>,
    pub prompt_ids_ok: bool,
    pub greedy: GreedyReport,
    pub ok: bool,
}

/// A golden reference file, read once.
pub struct Golden {
    bytes: Vec<u8>,
    path: String,
}

impl Golden {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read golden reference {}", path.display()))?;
        SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{} is not a safetensors file", path.display()))?;
        Ok(Self {
            bytes,
            path: path.display().to_string(),
        })
    }

    /// Greedy steps the reference ran (the number of steps to dump).
    pub fn steps(&self) -> Result<usize> {
        Ok(self.i64("generated_ids")?.len())
    }

    fn raw(&self, name: &str, dtype: Dtype) -> Result<(Vec<usize>, Vec<u8>)> {
        let st = SafeTensors::deserialize(&self.bytes)?;
        let t = st
            .tensor(name)
            .with_context(|| format!("{} has no tensor {name}", self.path))?;
        ensure!(
            t.dtype() == dtype,
            "{}: {name} is {:?}, expected {dtype:?}",
            self.path,
            t.dtype()
        );
        Ok((t.shape().to_vec(), t.data().to_vec()))
    }

    fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (shape, data) = self.raw(name, Dtype::F32)?;
        let values = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((shape, values))
    }

    fn i64(&self, name: &str) -> Result<Vec<i64>> {
        let (_, data) = self.raw(name, Dtype::I64)?;
        Ok(data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect())
    }

    /// Rows set in a 0/1 mask; they must be a prefix.
    fn valid_rows(&self, name: &str) -> Result<usize> {
        let (_, mask) = self.f32(name)?;
        let valid = mask.iter().filter(|&&m| m != 0.0).count();
        ensure!(
            mask[..valid].iter().all(|&m| m != 0.0),
            "{}: {name} is not a prefix mask",
            self.path
        );
        Ok(valid)
    }

    /// Width of a 2-D reference tensor.
    fn width(&self, name: &str) -> Result<usize> {
        let (shape, _) = self.f32(name)?;
        match shape.as_slice() {
            [_, width] => Ok(*width),
            other => bail!("{}: {name} has shape {other:?}, expected 2-D", self.path),
        }
    }
}

/// Cosine and max |Δ| of the first `rows × width` values.
fn stage(
    name: &str,
    got: &[f32],
    want: &[f32],
    rows: usize,
    width: usize,
    tol: &Tolerance,
) -> Result<StageReport> {
    let n = rows * width;
    ensure!(
        got.len() >= n,
        "{name}: have {} values, need {n}",
        got.len()
    );
    ensure!(
        want.len() >= n,
        "{name}: reference has {} values, need {n}",
        want.len()
    );
    let s = Similarity::of(&got[..n], &want[..n]);
    Ok(StageReport {
        stage: name.to_owned(),
        // NaN fails both bounds: a NaN activation is a failure, not a pass.
        ok: s.within(tol.cosine, tol.rel_max),
        cosine: s.cosine,
        max_abs_diff: s.max_abs_diff,
        rel_max_diff: s.rel_max_diff,
    })
}

/// Compare every stage of `dump` with `golden` (the whole chain, as `hark dump` runs it).
pub fn compare_clip(
    clip: &str,
    dump: &DumpTensors,
    n_mels: usize,
    golden: &Golden,
    tol: &Tolerance,
) -> Result<ClipReport> {
    let frames = golden.valid_rows("mel_mask")?;
    let tokens = golden.valid_rows("subsample_mask")?;
    ensure!(
        dump.mel_frames == frames && dump.audio_tokens == tokens,
        "{clip}: {} mel frames and {} audio tokens, the reference has {frames} and {tokens}",
        dump.mel_frames,
        dump.audio_tokens
    );
    let mut stages = vec![stage(
        "mel",
        &dump.mel,
        &golden.f32("mel")?.1,
        frames,
        n_mels,
        tol,
    )?];
    let mut per_token = |name: &str, got: &[f32]| -> Result<()> {
        let width = golden.width(name)?;
        stages.push(stage(name, got, &golden.f32(name)?.1, tokens, width, tol)?);
        Ok(())
    };
    per_token("subsample", &dump.subsample)?;
    for (i, layer) in dump.audio_layers.iter().enumerate() {
        per_token(&format!("audio_layer.{i}"), layer)?;
    }
    per_token("audio_tower", &dump.audio_tower)?;
    per_token("audio_embeds", &dump.audio_embeds)?;
    let (shape, logits) = golden.f32("prompt_logits_last")?;
    stages.push(stage(
        "prompt_logits_last",
        &dump.generation.prompt_logits_last,
        &logits,
        1,
        shape.first().copied().unwrap_or(0),
        tol,
    )?);

    let prompt: Vec<i64> = dump.prompt_ids.iter().map(|&i| i64::from(i)).collect();
    let prompt_ids_ok = prompt == golden.i64("prompt_ids")?;

    let want = golden.i64("generated_ids")?;
    let (_, margins) = golden.f32("generated_margins")?;
    let firm = margins
        .iter()
        .position(|&m| m <= tol.margin)
        .unwrap_or(margins.len())
        .min(want.len());
    let got = dump.generation.ids.clone();
    let greedy_ok = got.len() >= firm
        && got[..firm]
            .iter()
            .zip(&want[..firm])
            .all(|(&g, &w)| i64::from(g) == w);
    let ok = prompt_ids_ok && greedy_ok && stages.iter().all(|s| s.ok);
    Ok(ClipReport {
        clip: clip.to_owned(),
        mel_frames: frames,
        audio_tokens: tokens,
        stages,
        prompt_ids_ok,
        greedy: GreedyReport {
            got,
            want,
            firm_steps: firm,
            ok: greedy_ok,
        },
        ok,
    })
}
