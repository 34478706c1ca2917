//! A stream's state machine as the engine holds it: the model backend erased, so one engine
//! type serves every backend.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use hark_model::SpeechModel;

use crate::batcher::BatchClient;
use crate::events::Event;
use crate::segment::DecoderExec;
use crate::stream::{Stream, StreamConfig, StreamError};

/// One stream's state machine, with the model backend erased.
pub trait StreamDriver: Send {
    /// Feed 16 kHz mono samples; with `allow_partials` false no partial is decoded.
    fn push(
        &mut self,
        samples: &[f32],
        allow_partials: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), StreamError>;
    /// Finalise the open segment and keep listening.
    fn flush(&mut self, out: &mut Vec<Event>);
    /// End of audio: finalise the open segment.
    fn close(&mut self, out: &mut Vec<Event>);
}

impl<B: Backend> StreamDriver for Stream<B>
where
    Stream<B>: Send,
{
    fn push(
        &mut self,
        samples: &[f32],
        allow_partials: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), StreamError> {
        Stream::push(self, samples, allow_partials, out)
    }
    fn flush(&mut self, out: &mut Vec<Event>) {
        Stream::flush(self, out)
    }
    fn close(&mut self, out: &mut Vec<Event>) {
        Stream::close(self, out)
    }
}

/// Makes a stream's state machine. Runs the prompt-prefix prefill, so call it off the async
/// threads.
pub type StreamFactory =
    Arc<dyn Fn(StreamConfig) -> Result<Box<dyn StreamDriver>, StreamError> + Send + Sync>;

/// The factory for streams of `model` that run their decoder passes on the engine's worker.
pub fn stream_factory<B: Backend>(model: Arc<SpeechModel<B>>) -> StreamFactory
where
    Stream<B>: Send,
    SpeechModel<B>: Send + Sync,
{
    Arc::new(move |cfg| {
        Stream::new(model.clone(), cfg).map(|s| Box::new(s) as Box<dyn StreamDriver>)
    })
}

/// The factory for streams of `model` whose decoder passes go through a shared batcher.
pub fn batched_stream_factory<B: Backend>(
    model: Arc<SpeechModel<B>>,
    batcher: BatchClient<B>,
) -> StreamFactory
where
    Stream<B>: Send,
    SpeechModel<B>: Send + Sync,
    BatchClient<B>: Send + Sync,
{
    Arc::new(move |cfg| {
        Stream::with_exec(model.clone(), cfg, DecoderExec::Batched(batcher.clone()))
            .map(|s| Box::new(s) as Box<dyn StreamDriver>)
    })
}
