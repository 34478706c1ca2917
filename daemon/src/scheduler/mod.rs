//! harkd serves every stream on [`hark_streaming::engine`]: sessions open a [`StreamLink`]
//! there and only map its [`Output`]s to protocol messages and metrics. The names here are the
//! daemon's words for the engine's types.

pub use hark_streaming::engine::{
    Engine as Scheduler, EngineConfig as SchedulerConfig, LinkClosed, OpenError, Output,
    StreamLink, WorkerStats, batched_stream_factory, stream_factory,
};
