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
    /// Download a model into the local Hugging Face cache (needs the `download` feature).
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

#[cfg(feature = "download")]
fn fetch(repo: &str, revision: &str) -> Result<()> {
    use anyhow::{Context, bail};
    use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};

    if std::env::var_os("HF_HUB_OFFLINE").is_some_and(|v| v != "0" && !v.is_empty()) {
        bail!("HF_HUB_OFFLINE is set: not downloading {repo}");
    }
    let Some((owner, name)) = repo.split_once('/') else {
        bail!("{repo} is not a repo id (expected org/name)");
    };

    struct Bar(indicatif::ProgressBar);
    impl ProgressHandler for Bar {
        fn on_progress(&self, event: &ProgressEvent) {
            if let ProgressEvent::Download(e) = event {
                match e {
                    DownloadEvent::Start { total_bytes, .. } => self.0.set_length(*total_bytes),
                    DownloadEvent::AggregateProgress {
                        bytes_completed, ..
                    } => self.0.set_position(*bytes_completed),
                    DownloadEvent::Complete => self.0.finish(),
                    DownloadEvent::Progress { .. } => {}
                }
            }
        }
    }
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template"),
    );
    // HF_TOKEN / HF_TOKEN_PATH and HF_HOME / HF_HUB_CACHE are read by the client.
    let client = hf_hub::HFClientSync::new().context("cannot set up the Hugging Face client")?;
    let path = client
        .model(owner, name)
        .snapshot_download()
        .revision(revision.to_string())
        .allow_patterns(
            ["*.json", "*.safetensors", "tokenizer*", "*.jinja"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
        .progress(Bar(bar))
        .send()
        .with_context(|| format!("cannot download {repo}"))?;
    println!("{}", path.display());
    Ok(())
}

#[cfg(not(feature = "download"))]
fn fetch(repo: &str, _revision: &str) -> Result<()> {
    anyhow::bail!(
        "this build of hark cannot download (rebuild with `--features download`), or fetch {repo} with \
         `huggingface-cli download {repo}`; hark finds it in the Hugging Face cache by its repo id"
    )
}
