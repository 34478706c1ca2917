//! Dynamic batching of decoder passes across streams.
//!
//! Engine workers each serve their own streams; whenever one of them needs a decoder pass (an
//! audio append, a hypothesis check, a decode step) it hands the pass to the batcher thread and
//! waits. The batcher runs the passes of every worker that is in a decoder phase together in
//! one [`TextDecoder::forward_batch`](hark_model::decoder::TextDecoder::forward_batch), so the
//! weights are read once for all of them — on a GPU that is the difference between one stream
//! and dozens per step, and on a CPU it turns memory-bound decode steps into one matrix product.
//!
//! A batch runs as soon as every worker currently in a decoder phase has submitted (workers
//! busy with their encoders do not hold it back), or after `max_wait` at the latest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use burn::tensor::{Tensor, backend::Backend};
use hark_model::SpeechModel;
use hark_model::decoder::{DecoderCache, Logits, Request};

/// A decoder pass handed to the batcher; the cache travels with it and comes back.
struct Job<B: Backend> {
    embeds: Tensor<B, 2>,
    ids: Vec<u32>,
    cache: DecoderCache<B>,
    logits: Logits,
    reply: mpsc::SyncSender<(DecoderCache<B>, Option<Tensor<B, 2>>)>,
}

/// Counters of the batcher.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Batched passes run.
    pub batches: std::sync::atomic::AtomicU64,
    /// Sequence passes run (the sum of the batch sizes).
    pub sequences: std::sync::atomic::AtomicU64,
}

/// The batcher thread.
pub struct Batcher<B: Backend> {
    client: BatchClient<B>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<BatchStats>,
}

/// A worker's handle to the batcher.
pub struct BatchClient<B: Backend> {
    jobs: mpsc::Sender<Job<B>>,
    /// Workers inside a decoder phase.
    active: Arc<AtomicUsize>,
}

impl<B: Backend> Clone for BatchClient<B> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            active: self.active.clone(),
        }
    }
}

/// Marks a worker as inside a decoder phase while it lives.
pub struct Phase {
    active: Arc<AtomicUsize>,
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<B: Backend> Batcher<B> {
    pub fn start(model: Arc<SpeechModel<B>>, max_batch: usize, max_wait: Duration) -> Self
    where
        SpeechModel<B>: Send + Sync,
        DecoderCache<B>: Send,
        Tensor<B, 2>: Send,
    {
        let (tx, rx) = mpsc::channel::<Job<B>>();
        let active = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(BatchStats::default());
        let (worker_active, worker_stats) = (active.clone(), stats.clone());
        let thread = thread::Builder::new()
            .name("hark-batcher".into())
            .spawn(move || {
                run(
                    model,
                    rx,
                    worker_active,
                    worker_stats,
                    max_batch.max(1),
                    max_wait,
                )
            })
            .expect("spawn the batcher thread");
        Self {
            client: BatchClient { jobs: tx, active },
            thread: Some(thread),
            stats,
        }
    }

    pub fn client(&self) -> BatchClient<B> {
        self.client.clone()
    }

    pub fn stats(&self) -> &Arc<BatchStats> {
        &self.stats
    }
}

impl<B: Backend> Drop for Batcher<B> {
    fn drop(&mut self) {
        // The thread ends when every client's sender is gone; ours goes first.
        let (dead, _) = mpsc::channel();
        self.client.jobs = dead;
        if let Some(t) = self.thread.take() {
            // Workers hold clients until they stop; they are joined before the batcher.
            let _ = t.join();
        }
    }
}

impl<B: Backend> BatchClient<B> {
    /// Enter a decoder phase (a sequence of passes the worker will submit back to back).
    pub fn phase(&self) -> Phase {
        self.active.fetch_add(1, Ordering::AcqRel);
        Phase {
            active: self.active.clone(),
        }
    }

    /// Run one pass through the batcher; blocks until its batch has run.
    pub fn forward(
        &self,
        embeds: Tensor<B, 2>,
        ids: &[u32],
        cache: &mut DecoderCache<B>,
        logits: Logits,
    ) -> Option<Tensor<B, 2>> {
        let (reply, result) = mpsc::sync_channel(1);
        let owned = std::mem::replace(cache, DecoderCache::empty());
        self.jobs
            .send(Job {
                embeds,
                ids: ids.to_vec(),
                cache: owned,
                logits,
                reply,
            })
            .expect("the batcher outlives its workers");
        let (back, out) = result.recv().expect("the batcher answers every job");
        *cache = back;
        out
    }
}

fn run<B: Backend>(
    model: Arc<SpeechModel<B>>,
    jobs: mpsc::Receiver<Job<B>>,
    active: Arc<AtomicUsize>,
    stats: Arc<BatchStats>,
    max_batch: usize,
    max_wait: Duration,
) {
    let mut pending: Vec<Job<B>> = Vec::new();
    loop {
        if pending.is_empty() {
            match jobs.recv() {
                Ok(job) => pending.push(job),
                Err(_) => return,
            }
        }
        // Gather the passes of every worker in a decoder phase, up to the batch limit.
        let deadline = Instant::now() + max_wait;
        while pending.len() < max_batch {
            while let Ok(job) = jobs.try_recv() {
                pending.push(job);
            }
            if pending.len() >= active.load(Ordering::Acquire).max(1) || pending.len() >= max_batch
            {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match jobs.recv_timeout(deadline - now) {
                Ok(job) => pending.push(job),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let take = pending.len().min(max_batch);
        let mut batch: Vec<Job<B>> = pending.drain(..take).collect();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .sequences
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let requests: Vec<Request<'_, B>> = batch
            .iter_mut()
            .map(|j| Request {
                embeds: j.embeds.clone(),
                ple_ids: &j.ids,
                cache: &mut j.cache,
                logits: j.logits,
            })
            .collect();
        let outs = model.decoder.forward_batch(requests);
        for (job, out) in batch.into_iter().zip(outs) {
            // A worker that vanished (its stream panicked) just drops the reply.
            let _ = job.reply.send((job.cache, out));
        }
    }
}
