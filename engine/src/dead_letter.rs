//! Where a record came from (source, partition, byte offset, line) and the dead-letter record that
//! carries a bad input out of the pipeline with its reason, instead of crashing or losing it.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A record's place in its source: for files the byte offset and 1-based line of its first byte
/// (partition 0); for partitioned sources the partition and offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Partition of the source (0 for files and stdin).
    pub partition: u32,
    /// Byte offset of the record's first byte (files) or the record's offset (partitioned sources).
    pub offset: u64,
    /// 1-based line number, or 0 where lines mean nothing.
    pub line: u64,
}

/// The name of a source: a file (or `stdin`) or a Kafka topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SourceName {
    /// A file path, or `stdin`.
    File(Arc<str>),
    /// A Kafka topic.
    Topic(Arc<str>),
}

impl SourceName {
    /// The name as given.
    pub fn as_str(&self) -> &str {
        match self {
            SourceName::File(n) | SourceName::Topic(n) => n,
        }
    }
}

/// A position together with the name of its source, as written into decisions and dead letters:
/// `{"file", "offset", "line"}` for files, `{"topic", "partition", "offset"}` for Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The file read (or `stdin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Arc<str>>,
    /// The topic read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Arc<str>>,
    /// The topic's partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Byte offset in the file, or record offset in the partition.
    pub offset: u64,
    /// 1-based line number in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl SourceRef {
    /// Writes this as a JSON object, the bytes serde_json writes for it (see
    /// [`crate::json::write_str`]).
    pub fn write_json(&self, out: &mut String) {
        use crate::json::write_str;
        let mut int = itoa::Buffer::new();
        out.push('{');
        if let Some(file) = &self.file {
            out.push_str(r#""file":"#);
            write_str(out, file);
            out.push(',');
        }
        if let Some(topic) = &self.topic {
            out.push_str(r#""topic":"#);
            write_str(out, topic);
            out.push(',');
        }
        if let Some(partition) = self.partition {
            out.push_str(r#""partition":"#);
            out.push_str(int.format(partition));
            out.push(',');
        }
        out.push_str(r#""offset":"#);
        out.push_str(int.format(self.offset));
        if let Some(line) = self.line {
            out.push_str(r#","line":"#);
            out.push_str(int.format(line));
        }
        out.push('}');
    }

    /// Names the position `pos` of source `name`.
    pub fn new(name: &SourceName, pos: Position) -> Self {
        match name {
            SourceName::File(f) => SourceRef {
                file: Some(Arc::clone(f)),
                topic: None,
                partition: None,
                offset: pos.offset,
                line: (pos.line > 0).then_some(pos.line),
            },
            SourceName::Topic(t) => SourceRef {
                file: None,
                topic: Some(Arc::clone(t)),
                partition: Some(pos.partition),
                offset: pos.offset,
                line: None,
            },
        }
    }
}

/// Why a record left through the dead-letter output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// Not valid JSON, a missing field or a field of the wrong type.
    Malformed,
    /// Well-formed but with a value the pipeline cannot use (negative price, unknown status, …).
    Invalid,
    /// Older than the watermark of its partition when it arrived.
    Late,
}

impl DeadReason {
    /// The reason as written in the output (`malformed`, `invalid`, `late`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Malformed => "malformed",
            DeadReason::Invalid => "invalid",
            DeadReason::Late => "late",
        }
    }
}

/// A record that could not go through the pipeline, with why and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The kind of failure.
    pub reason: DeadReason,
    /// A one-line explanation for a person.
    pub error: String,
    /// Where the record was read.
    pub source: SourceRef,
    /// The record as read (lossy UTF-8, truncated to [`DeadLetter::MAX_RAW`] bytes).
    pub raw: String,
}

impl DeadLetter {
    /// Longest raw record kept in a dead letter, in bytes.
    pub const MAX_RAW: usize = 64 * 1024;

    /// Builds a dead letter for `raw` read at `pos` of source `name`.
    pub fn new(reason: DeadReason, error: String, name: &SourceName, pos: Position, raw: &[u8]) -> Self {
        let raw = &raw[..raw.len().min(Self::MAX_RAW)];
        DeadLetter { reason, error, source: SourceRef::new(name, pos), raw: String::from_utf8_lossy(raw).into_owned() }
    }
}
