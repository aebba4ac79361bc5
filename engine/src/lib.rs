//! inflight's engine: everything around a pipeline. It boots timely (threads, processes, hostfile),
//! places records in event time with watermarks, reads sources (file, stdin), writes sinks
//! (file, stdout), routes bad records to the dead-letter output and counts what went through.
//! Pipelines never touch files or threads; they get typed streams from here and hand decisions back.

pub mod checkpoint;
pub mod cluster;
pub mod dead_letter;
pub mod event;
pub mod graph;
pub mod job;
pub mod json;
pub mod kafka;
pub mod key;
pub mod metrics;
pub mod recovery;
pub mod runtime;
pub mod serve;
pub mod signals;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;
pub mod time;
pub mod watermark;

pub use dead_letter::{DeadLetter, DeadReason, Position, SourceName, SourceRef};
pub use event::{Event, ParseError, Sourced};
pub use graph::Graph;
pub use key::{Key, key_hash};
pub use state::State;
pub use time::Millis;

/// A stream of vectors of `D` in event time (milliseconds), the only kind of stream inflight builds.
pub type Stream<'scope, D> = timely::dataflow::Stream<'scope, Millis, Vec<D>>;
/// A timely scope in event time.
pub type Scope<'scope> = timely::dataflow::Scope<'scope, Millis>;
