//! Where the live clients get their audio: the microphone, or files played in its place.
//!
//! Every client (captions, dictation, meetings) reads 16 kHz mono frames from an
//! [`AudioInput`]. Behind it is an `hark-audio-io` [`CaptureSource`]: [`MicCapture`] by default,
//! [`FileCapture`] with `--input FILE` (paced at real time, or as fast as the server takes it
//! with `--fast`), so tests drive every client without a sound card.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use hark_audio_io::{
    AudioError, CaptureHandle, CaptureSource, FileCapture, MicCapture, Pacing, RingConsumer,
    TARGET_RATE, audio_ring, expected_output_len,
};
use tokio::sync::mpsc;

/// Samples per second of everything an [`AudioInput`] delivers.
pub const RATE: u32 = TARGET_RATE;

/// How long an idle reader waits before looking at the ring again.
const POLL: Duration = Duration::from_millis(5);

/// Audio source flags shared by the live clients.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Audio file to use instead of the microphone (WAV, FLAC, MP3, Ogg…); repeat to play
    /// several one after the other.
    #[arg(long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// With --input: send the audio as fast as the server takes it instead of in real time.
    #[arg(long, requires = "inputs")]
    pub fast: bool,
    /// Microphone to capture from (a name or id listed by `hark devices`); default: the
    /// system's default input.
    #[arg(long, env = "HARK_DEVICE", conflicts_with = "inputs")]
    pub device: Option<String>,
}

/// One message of the audio channel.
#[derive(Debug)]
pub enum Chunk {
    /// 16 kHz mono samples in [-1, 1].
    Samples(Vec<f32>),
    /// The source failed; no more audio follows.
    Failed(AudioError),
}

/// A running audio source: frames arrive on [`AudioInput::recv`] until the source ends
/// (end of the last file) or [`AudioInput::stopper`] is used (end of a live capture).
pub struct AudioInput {
    rx: mpsc::Receiver<Chunk>,
    stop: Stopper,
    description: String,
    total_samples: Option<u64>,
}

/// Ends an [`AudioInput`] from anywhere (a signal handler, a control command): the capture
/// stops, what it already captured is still delivered, then the channel closes.
#[derive(Debug, Clone, Default)]
pub struct Stopper(Arc<AtomicBool>);

impl Stopper {
    /// Asks the source to end.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

enum Source {
    Mic(MicCapture),
    Files(Vec<(PathBuf, FileCapture)>),
}

impl AudioInput {
    /// Opens the source the flags name and starts capturing, delivering `frame` of audio at a
    /// time. Fails now, with a message that says what to do, when the microphone or a file
    /// cannot be opened.
    pub fn start(args: &InputArgs, frame: Duration) -> Result<Self> {
        let (source, description, total_samples) = if args.inputs.is_empty() {
            let mic = crate::quiet_stderr::silenced(|| match &args.device {
                Some(name) => MicCapture::by_name(name),
                None => MicCapture::default_device(),
            })
            .map_err(no_microphone)?;
            let description = format!("microphone \"{}\"", mic.name());
            (Source::Mic(mic), description, None)
        } else {
            let pacing = if args.fast {
                Pacing::AsFastAsPossible
            } else {
                Pacing::RealTime
            };
            let mut files = Vec::new();
            let mut total = 0u64;
            for path in &args.inputs {
                let capture = FileCapture::open(path)
                    .with_context(|| format!("cannot read audio file {}", path.display()))?
                    .pacing(pacing);
                let audio = capture.audio();
                total += expected_output_len(audio.frames() as u64, audio.sample_rate);
                files.push((path.clone(), capture));
            }
            let names: Vec<String> = args
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            (Source::Files(files), names.join(", "), Some(total))
        };
        let frame_samples = ((frame.as_secs_f64() * f64::from(RATE)) as usize).max(160);
        // Twenty seconds of frames between the capture thread and the client: enough to ride
        // out a reconnection without stalling a live capture, while a fast file still gets
        // back-pressure from the server.
        let capacity = (20 * RATE as usize / frame_samples).max(4);
        let (tx, rx) = mpsc::channel(capacity);
        let stop = Stopper::default();
        let thread_stop = stop.clone();
        // A microphone must be opened on the thread that owns it (cpal streams are not Send on
        // every host), so the thread starts the capture and reports how that went.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        thread::Builder::new()
            .name("hark-input".into())
            .spawn(move || pump(source, frame_samples, tx, thread_stop, started_tx))
            .context("cannot start the audio input thread")?;
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(no_microphone(e)),
            Err(_) => bail!("the audio input thread ended before the capture started"),
        }
        Ok(AudioInput {
            rx,
            stop,
            description,
            total_samples,
        })
    }

    /// The next chunk, or `None` once the source has ended and everything was delivered.
    pub async fn recv(&mut self) -> Option<Chunk> {
        self.rx.recv().await
    }

    /// A handle that ends this input.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// What is being captured, for status lines.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Total samples a file source delivers; `None` for a microphone.
    pub fn total_samples(&self) -> Option<u64> {
        self.total_samples
    }
}

/// A clear message for a missing or unusable microphone.
fn no_microphone(e: AudioError) -> anyhow::Error {
    match e {
        AudioError::NoInputDevice(why) => anyhow::anyhow!(
            "no microphone available ({why}); list the input devices with `hark devices`, pick \
             one with --device NAME, or read audio from a file with --input FILE"
        ),
        other => anyhow::anyhow!("cannot capture from the microphone: {other}"),
    }
}

/// The input thread: runs each capture in turn and cuts its ring into frames.
fn pump(
    source: Source,
    frame: usize,
    tx: mpsc::Sender<Chunk>,
    stop: Stopper,
    started: std::sync::mpsc::Sender<Result<(), AudioError>>,
) {
    let ring_samples = RATE as usize; // one second between converter and this thread
    match source {
        Source::Mic(mic) => {
            let (producer, consumer) = audio_ring(ring_samples);
            // The main thread only waits for `started` meanwhile.
            let handle = match crate::quiet_stderr::silenced(|| mic.start(producer)) {
                Ok(handle) => {
                    let _ = started.send(Ok(()));
                    handle
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            drain(consumer, handle, frame, &tx, &stop);
        }
        Source::Files(files) => {
            let _ = started.send(Ok(()));
            let mut pending = Vec::with_capacity(frame);
            for (path, capture) in files {
                let (producer, consumer) = audio_ring(ring_samples);
                let handle = match capture.start(producer) {
                    Ok(handle) => handle,
                    Err(e) => {
                        tracing::error!("cannot play {}: {e}", path.display());
                        let _ = tx.blocking_send(Chunk::Failed(e));
                        return;
                    }
                };
                // Files follow each other without a gap: frames may straddle two files.
                if !drain_into(consumer, handle, frame, &tx, &stop, &mut pending) {
                    return;
                }
                if stop.requested() {
                    break;
                }
            }
            if !pending.is_empty() {
                let _ = tx.blocking_send(Chunk::Samples(pending));
            }
        }
    }
}

fn drain(
    consumer: RingConsumer,
    handle: CaptureHandle,
    frame: usize,
    tx: &mpsc::Sender<Chunk>,
    stop: &Stopper,
) {
    let mut pending = Vec::with_capacity(frame);
    if drain_into(consumer, handle, frame, tx, stop, &mut pending) && !pending.is_empty() {
        let _ = tx.blocking_send(Chunk::Samples(pending));
    }
}

/// Moves samples from one capture's ring to the channel in `frame`-sized chunks until the
/// capture ends; the unfinished last frame stays in `pending`. False when the reader is gone
/// or the capture failed (the failure was sent).
fn drain_into(
    mut consumer: RingConsumer,
    handle: CaptureHandle,
    frame: usize,
    tx: &mpsc::Sender<Chunk>,
    stop: &Stopper,
    pending: &mut Vec<f32>,
) -> bool {
    let mut handle = Some(handle);
    let mut scratch = vec![0f32; frame];
    loop {
        if stop.requested()
            && let Some(h) = handle.take()
        {
            // Stopping flushes the converter and closes the ring; keep draining to its end.
            if let Err(e) = h.stop() {
                let _ = tx.blocking_send(Chunk::Failed(e));
                return false;
            }
        }
        let closed = consumer.is_closed();
        let want = frame - pending.len();
        let n = consumer.pop_into(&mut scratch[..want]);
        pending.extend_from_slice(&scratch[..n]);
        if pending.len() == frame {
            let full = std::mem::replace(pending, Vec::with_capacity(frame));
            if tx.blocking_send(Chunk::Samples(full)).is_err() {
                return false;
            }
            continue;
        }
        if n == 0 && closed {
            break;
        }
        if n == 0 {
            thread::sleep(POLL);
        }
    }
    if let Some(h) = handle.take()
        && let Err(e) = h.wait()
    {
        let _ = tx.blocking_send(Chunk::Failed(e));
        return false;
    }
    let dropped = consumer.dropped();
    if dropped > 0 {
        tracing::warn!("{dropped} samples were lost because the client fell behind the capture");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn args(files: &[&str], fast: bool) -> InputArgs {
        InputArgs {
            inputs: files
                .iter()
                .map(|f| repo().join("tests/fixtures/audio").join(f))
                .collect(),
            fast,
            device: None,
        }
    }

    async fn collect(mut input: AudioInput) -> Vec<f32> {
        let mut all = Vec::new();
        while let Some(chunk) = input.recv().await {
            match chunk {
                Chunk::Samples(s) => all.extend(s),
                Chunk::Failed(e) => panic!("{e}"),
            }
        }
        all
    }

    #[tokio::test]
    async fn files_play_back_to_back_at_16k() {
        let input = AudioInput::start(
            &args(&["hello.wav", "hello-44k1-stereo.wav"], true),
            Duration::from_millis(50),
        )
        .unwrap();
        let total = input.total_samples().unwrap();
        let samples = collect(input).await;
        let a =
            hark_audio_io::load_mono_16k(repo().join("tests/fixtures/audio/hello.wav")).unwrap();
        let b =
            hark_audio_io::load_mono_16k(repo().join("tests/fixtures/audio/hello-44k1-stereo.wav"))
                .unwrap();
        assert_eq!(samples.len(), a.len() + b.len());
        assert_eq!(total, samples.len() as u64);
        // The same conversion path as the offline loader: identical samples.
        assert_eq!(&samples[..a.len()], &a[..]);
        assert_eq!(&samples[a.len()..], &b[..]);
    }

    #[tokio::test]
    async fn real_time_pacing_takes_the_clip_duration() {
        let started = std::time::Instant::now();
        let input =
            AudioInput::start(&args(&["hello.wav"], false), Duration::from_millis(20)).unwrap();
        let n = collect(input).await.len();
        let seconds = n as f64 / f64::from(RATE);
        let took = started.elapsed().as_secs_f64();
        assert!(took > seconds * 0.9, "{took} s for {seconds} s of audio");
    }

    #[tokio::test]
    async fn stop_ends_a_paced_file_early() {
        let input =
            AudioInput::start(&args(&["fox.wav"], false), Duration::from_millis(20)).unwrap();
        let stopper = input.stopper();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stopper.stop();
        });
        let total = input.total_samples().unwrap() as usize;
        let n = collect(input).await.len();
        assert!(n > 0 && n < total / 2, "{n} of {total}");
    }

    #[test]
    fn missing_file_and_microphone_errors_say_what_to_do() {
        let err = AudioInput::start(&args(&["nope.wav"], true), Duration::from_millis(20))
            .err()
            .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("nope.wav") && text.contains("not found"),
            "{text}"
        );

        let mic = InputArgs {
            inputs: vec![],
            fast: false,
            device: Some("no-such-microphone".into()),
        };
        let text = format!(
            "{:#}",
            AudioInput::start(&mic, Duration::from_millis(20))
                .err()
                .unwrap()
        );
        assert!(
            text.contains("no microphone") && text.contains("--input FILE"),
            "{text}"
        );
    }
}
