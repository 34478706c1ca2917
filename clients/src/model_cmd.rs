//! `hark model`: inspect a checkpoint, or download one into the Hugging Face cache.

use anyhow::Result;
use clap::{Args, Subcommand};
use hark_model::Checkpoint;

use crate::model_args::ModelArgs;

#[derive(Debug, Clone, Args)]
pub struct ModelCmd {
    #[command(subcommand)]
    pub action: ModelAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ModelAction {
    /// Print what a checkpoint is (architecture, sizes, token ids, tensors) after checking it.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Download a model into the local Hugging Face cache, resuming an interrupted download.
    /// Gemma is gated: accept its licence on huggingface.co, then set HF_TOKEN.
    Fetch {
        /// Repo id, e.g. google/gemma-4-E2B-it.
        repo: String,
        /// Branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
    },
}

pub fn run(cmd: ModelCmd) -> Result<()> {
    match cmd.action {
        ModelAction::Info { model } => info(&model.checkpoint()?),
        ModelAction::Fetch { repo, revision } => fetch(&repo, &revision),
    }
}

fn info(ckpt: &Checkpoint) -> Result<()> {
    hark_model::speech::check_tensors(ckpt)?;
    let c = &ckpt.config;
    let t = &c.text;
    let a = &c.audio;
    let params = ckpt.tensors.parameters();
    let full = t
        .layers
        .iter()
        .filter(|l| l.kind == hark_model::config::LayerKind::Full)
        .count();
    println!("model          {}", ckpt.name);
    println!(
        "parameters     {:.3} B stored ({} tensors)",
        params as f64 / 1e9,
        ckpt.tensors.names().count()
    );
    println!(
        "decoder        {} layers ({} full, {} sliding), hidden {}, {} heads, vocab {}",
        t.num_layers(),
        full,
        t.num_layers() - full,
        t.hidden_size,
        t.num_heads,
        t.vocab_size
    );
    println!(
        "               KV sharing from layer {}, per-layer embeddings {}, final softcap {}",
        t.first_shared_layer(),
        t.ple_dim,
        t.final_logit_softcap
            .map_or_else(|| "none".to_owned(), |cap| cap.to_string())
    );
    println!(
        "audio encoder  {} conformer layers, hidden {}, {} heads, window {} frames, chunk {}",
        a.num_layers, a.hidden_size, a.num_heads, a.max_past, a.chunk_size
    );
    println!(
        "audio tokens   begin {} / placeholder {} / end {}; at most {} per span",
        c.audio_tokens.begin, c.audio_tokens.placeholder, c.audio_tokens.end, c.max_audio_tokens
    );
    println!("stop ids       {:?}", c.stop_token_ids);
    println!(
        "vision tower   {}",
        if c.has_vision_tower {
            "present (skipped)"
        } else {
            "none"
        }
    );
    Ok(())
}

/// Download `repo` into the Hugging Face cache with a progress bar; prints the snapshot
/// directory. Partial files from an interrupted run are resumed.
fn fetch(repo: &str, revision: &str) -> Result<()> {
    use hark_model::download::{Progress, Request, download};

    let request = Request::from_env(repo, revision)?;
    // indicatif draws nothing when stderr is not a terminal.
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template"),
    );
    let path = download(&request, &mut |p| match p {
        Progress::Total(n) => bar.set_length(n),
        Progress::Done(n) => bar.set_position(n),
    });
    bar.finish_and_clear();
    println!("{}", path?.display());
    Ok(())
}
