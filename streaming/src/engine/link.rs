//! A front end's end of one stream: audio in through a lock-free SPSC ring, outputs back
//! through a tokio channel, flushes and aborts as commands to the serving worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::Thread;
use std::time::Duration;

use hark_audio_io::RingProducer;
use tokio::sync::{Notify, mpsc as tmpsc};

use super::worker::Command;
use crate::events::Event;

/// What a stream reports to its front end, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An engine event. `position` is the samples processed when it was emitted, `backlog`
    /// the samples queued behind them.
    Event {
        event: Event,
        position: u64,
        backlog: u64,
    },
    /// Everything pushed before [`StreamLink::flush`] returned `token` has been processed and
    /// the open segment (if any) finalised; its events came before this.
    Flushed { token: u64, position: u64 },
    /// The stream ended after [`StreamLink::close`]; nothing follows.
    Finished { position: u64 },
}

/// State the worker and the front end share for one stream.
#[derive(Debug, Default)]
pub(super) struct LinkShared {
    /// Samples the worker has processed.
    pub(super) processed: AtomicU64,
    /// Signalled whenever the worker takes audio out of the queue.
    pub(super) room: Notify,
}

/// The queue was closed: the worker dropped the stream (it failed or was aborted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream is no longer served")]
pub struct LinkClosed;

/// A front end's end of one stream. Dropping it before the stream finished aborts the stream
/// (no more model work is spent on it).
pub struct StreamLink {
    id: u64,
    worker: usize,
    /// `None` once closed.
    audio: Option<RingProducer>,
    commands: mpsc::Sender<Command>,
    thread: Thread,
    shared: Arc<LinkShared>,
    events: tmpsc::UnboundedReceiver<Output>,
    pushed: u64,
    next_token: u64,
    /// The worker is done with the stream (finished, failed or gone).
    ended: bool,
}

impl StreamLink {
    pub(super) fn new(
        id: u64,
        worker: usize,
        audio: RingProducer,
        commands: mpsc::Sender<Command>,
        thread: Thread,
        shared: Arc<LinkShared>,
        events: tmpsc::UnboundedReceiver<Output>,
    ) -> Self {
        Self {
            id,
            worker,
            audio: Some(audio),
            commands,
            thread,
            shared,
            events,
            pushed: 0,
            next_token: 0,
            ended: false,
        }
    }

    /// Index of the worker serving the stream.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Samples pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Samples the worker has processed so far.
    pub fn processed(&self) -> u64 {
        self.shared.processed.load(Ordering::Relaxed)
    }

    /// Samples pushed but not yet processed.
    pub fn backlog(&self) -> u64 {
        self.pushed.saturating_sub(self.processed())
    }

    /// Queue 16 kHz mono samples. Never drops audio: when the queue is full (the worker is
    /// a whole queue behind) it waits for room, which stops the session reading its socket
    /// and so slows the client down through TCP.
    pub async fn push(&mut self, mut samples: &[f32]) -> Result<(), LinkClosed> {
        let Some(audio) = self.audio.as_mut() else {
            return Err(LinkClosed);
        };
        while !samples.is_empty() {
            if audio.is_abandoned() {
                return Err(LinkClosed);
            }
            let room = audio.vacant().min(samples.len());
            if room > 0 {
                let n = audio.push(&samples[..room]);
                self.pushed += n as u64;
                samples = &samples[n..];
                self.thread.unpark();
                continue;
            }
            // The timeout covers a worker that died without notifying.
            let _ =
                tokio::time::timeout(Duration::from_millis(50), self.shared.room.notified()).await;
        }
        Ok(())
    }

    /// Finalise the open segment once everything pushed so far is processed. The matching
    /// [`Output::Flushed`] carries the returned token.
    pub fn flush(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        let _ = self.commands.send(Command::Flush {
            id: self.id,
            at: self.pushed,
            token,
        });
        self.thread.unpark();
        token
    }

    /// End of audio: the stream is finalised after the queued audio, then
    /// [`Output::Finished`] arrives.
    pub fn close(&mut self) {
        drop(self.audio.take());
        self.thread.unpark();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.audio.is_none()
    }

    /// An output that is ready now, without waiting.
    pub fn try_recv(&mut self) -> Option<Output> {
        if self.ended {
            return None;
        }
        match self.events.try_recv() {
            Ok(out) => {
                self.ended = matches!(out, Output::Finished { .. });
                Some(out)
            }
            Err(tmpsc::error::TryRecvError::Empty) => None,
            Err(tmpsc::error::TryRecvError::Disconnected) => {
                self.ended = true;
                None
            }
        }
    }

    /// The next output; `None` once the stream has ended (after `Finished`, an error, or an
    /// abort).
    pub async fn recv(&mut self) -> Option<Output> {
        if self.ended {
            return None;
        }
        let out = self.events.recv().await;
        if matches!(out, None | Some(Output::Finished { .. })) {
            self.ended = true;
        }
        out
    }
}

impl Drop for StreamLink {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.commands.send(Command::Abort { id: self.id });
        }
        drop(self.audio.take());
        self.thread.unpark();
    }
}
