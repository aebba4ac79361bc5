//! What a source needs from an event type: how to parse one line and where it sits in event time.

use crate::dead_letter::{DeadReason, Position};
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// Why one input record could not be turned into an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Malformed (syntax, missing field, wrong type) or invalid (a value out of range).
    pub reason: DeadReason,
    /// One line saying what is wrong, for the dead-letter record.
    pub message: String,
}

impl ParseError {
    /// A syntax or shape error: not JSON, a missing field, a wrong type.
    pub fn malformed(message: impl Into<String>) -> Self {
        ParseError { reason: DeadReason::Malformed, message: message.into() }
    }

    /// A well-formed record with a value the pipeline cannot use.
    pub fn invalid(message: impl Into<String>) -> Self {
        ParseError { reason: DeadReason::Invalid, message: message.into() }
    }
}

/// An event type a source can read: one record per line (JSONL).
pub trait Event: Sized + 'static {
    /// Parses one line (without its line terminator).
    fn parse(line: &[u8]) -> Result<Self, ParseError>;
    /// Parses a record that comes with a time of its own (a Kafka record timestamp), which an event
    /// type may use when the payload has none. By default the payload must carry its time.
    fn parse_with_time(record: &[u8], _record_time: Option<Millis>) -> Result<Self, ParseError> {
        Self::parse(record)
    }
    /// The event's time in milliseconds since the epoch.
    fn event_time(&self) -> Millis;
    /// Reads the record at the start of `block` (lines of a file) if it can tell where the record
    /// ends by itself: the event and the record's length, followed in `block` by `\n` or nothing.
    /// It must give exactly what [`Event::parse`] of that line gives, and None for anything else
    /// (any doubt, any error): the line is then split off and parsed as usual. Saves the search
    /// for the line's end; the default always says None.
    fn parse_prefix(_block: &[u8]) -> Option<(Self, usize)> {
        None
    }
}

/// An event with where it was read and when (wall clock), as sources emit them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sourced<E> {
    /// The parsed event.
    pub event: E,
    /// Its position in the source.
    pub pos: Position,
    /// Wall-clock nanoseconds when its batch was read, for end-to-end latency.
    pub ingest_ns: u64,
}
