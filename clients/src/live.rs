//! Plumbing the live clients share: their async runtime, moving captured audio into a
//! session, and stopping cleanly on Ctrl-C / SIGTERM.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::input::{AudioInput, Chunk, Stopper};
use crate::remote::Control;

/// Audio per frame sent to the daemon: small enough for low latency, large enough to keep
/// the message rate modest.
pub const FRAME: Duration = Duration::from_millis(50);
/// Frame size for files sent as fast as possible.
pub const FAST_FRAME: Duration = Duration::from_millis(250);

/// The runtime of a live client: one thread is plenty (capture runs on its own threads).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Frame length for the input flags (bigger frames when a file goes as fast as possible).
pub fn frame_for(fast: bool) -> Duration {
    if fast { FAST_FRAME } else { FRAME }
}

/// Moves every captured frame into the session, then asks it to close. Resolves to the
/// number of samples delivered, or the capture's error.
pub fn forward_audio(mut input: AudioInput, tx: mpsc::Sender<Control>) -> JoinHandle<Result<u64>> {
    tokio::spawn(async move {
        let mut samples = 0u64;
        let result = loop {
            match input.recv().await {
                Some(Chunk::Samples(s)) => {
                    samples += s.len() as u64;
                    if tx.send(Control::Audio(s)).await.is_err() {
                        break Ok(samples);
                    }
                }
                Some(Chunk::Failed(e)) => break Err(e).context("audio capture failed"),
                None => break Ok(samples),
            }
        };
        let _ = tx.send(Control::Close).await;
        result
    })
}

/// On the first Ctrl-C or SIGTERM, ends the audio input (the session then finishes what it
/// has); on a second one, exits at once.
pub fn stop_on_signal(stopper: Stopper) {
    tokio::spawn(async move {
        if wait_for_signal().await.is_err() {
            return;
        }
        eprintln!("\nstopping (finishing the last segment; press Ctrl-C again to quit now)");
        stopper.stop();
        if wait_for_signal().await.is_ok() {
            std::process::exit(130);
        }
    });
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Turns the capture task's outcome into the client's.
pub async fn audio_outcome(task: JoinHandle<Result<u64>>) -> Result<u64> {
    match task.await {
        Ok(result) => result,
        Err(e) => bail!("the audio task failed: {e}"),
    }
}
