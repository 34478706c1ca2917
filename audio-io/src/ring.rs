//! Single-producer single-consumer sample ring between a capture thread and its reader.
//!
//! A thin layer over `ringbuf`'s lock-free heap ring that adds what an audio stream needs on
//! top of a FIFO: a count of samples dropped because the ring was full (overflow is counted,
//! never silent) and an end-of-stream flag raised when the producer is closed or dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// State both ends observe.
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    closed: AtomicBool,
    abandoned: AtomicBool,
}

/// Creates a ring holding up to `capacity_samples` samples.
///
/// # Panics
///
/// If `capacity_samples` is 0 (a programming error, not a data error).
pub fn audio_ring(capacity_samples: usize) -> (RingProducer, RingConsumer) {
    assert!(
        capacity_samples > 0,
        "an audio ring needs a capacity of at least one sample"
    );
    let (producer, consumer) = HeapRb::<f32>::new(capacity_samples).split();
    let shared = Arc::new(Shared::default());
    (
        RingProducer {
            inner: producer,
            shared: Arc::clone(&shared),
        },
        RingConsumer {
            inner: consumer,
            shared,
        },
    )
}

/// Writing end of an audio ring. Closing it (or dropping it) marks the end of the stream.
///
/// Every method is wait-free and allocation-free, so it can be used from a real-time audio
/// callback.
pub struct RingProducer {
    inner: HeapProd<f32>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingProducer")
            .field("capacity", &self.capacity())
            .field("vacant", &self.vacant())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl RingProducer {
    /// Writes as many of `samples` as fit, in order, and counts the rest as dropped.
    /// Returns the number written.
    pub fn push(&mut self, samples: &[f32]) -> usize {
        let written = self.inner.push_slice(samples);
        let lost = samples.len() - written;
        if lost > 0 {
            self.shared
                .dropped
                .fetch_add(lost as u64, Ordering::Relaxed);
        }
        written
    }

    /// Free space in samples (at least this much; the consumer may free more meanwhile).
    pub fn vacant(&self) -> usize {
        self.inner.vacant_len()
    }

    /// Total capacity in samples.
    pub fn capacity(&self) -> usize {
        self.inner.capacity().get()
    }

    /// Samples dropped so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// True once the consumer has been dropped: nobody will read what is pushed.
    pub fn is_abandoned(&self) -> bool {
        self.shared.abandoned.load(Ordering::Acquire)
    }

    /// Ends the stream. Same as dropping the producer.
    pub fn close(self) {}
}

impl Drop for RingProducer {
    fn drop(&mut self) {
        // Release: a consumer that sees `closed` also sees every sample pushed before it.
        self.shared.closed.store(true, Ordering::Release);
    }
}

/// Reading end of an audio ring.
pub struct RingConsumer {
    inner: HeapCons<f32>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RingConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingConsumer")
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .field("dropped", &self.dropped())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl RingConsumer {
    /// Moves up to `out.len()` samples into `out`, oldest first. Returns the number moved.
    pub fn pop_into(&mut self, out: &mut [f32]) -> usize {
        self.inner.pop_slice(out)
    }

    /// Samples ready to be read.
    pub fn available(&self) -> usize {
        self.inner.occupied_len()
    }

    /// Total capacity in samples.
    pub fn capacity(&self) -> usize {
        self.inner.capacity().get()
    }

    /// True once the producer is closed or dropped. Every sample it pushed is already visible
    /// then, so a reader that sees `true` can drain [`available`](Self::available) samples and
    /// stop.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// True when the stream has ended and every sample has been read.
    pub fn is_finished(&self) -> bool {
        self.is_closed() && self.available() == 0
    }

    /// Samples the producer dropped so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for RingConsumer {
    fn drop(&mut self) {
        self.shared.abandoned.store(true, Ordering::Release);
    }
}
