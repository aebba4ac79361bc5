//! Sources: where records enter a dataflow. A source reads lines, parses them into typed events,
//! places each on-time event at a timely time no later than its event time, holds its capability
//! at the minimum watermark of its partitions, and sends bad or late lines to the dead-letter
//! output. When every partition is finished it drops its capability, which closes all windows.

mod file;
mod kafka;
mod lines;
mod operator;
mod stdin;

pub use kafka::{KafkaInput, StartFrom};
pub use operator::source;

use crate::dead_letter::SourceName;
use crate::time::Millis;
use memmap2::Mmap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a run reads its records from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A JSONL file, split across all workers in line-aligned chunks.
    File(PathBuf),
    /// Standard input, read by worker 0.
    Stdin,
    /// A Kafka topic, its partitions spread over all workers.
    Kafka(KafkaInput),
    /// Records built into the binary (a pipeline's sample), read like a file.
    Bundled(Bundled),
}

/// JSONL built into the binary with `include_bytes!`, and the name its positions carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bundled {
    /// The name positions and dead letters carry (the path it was built from).
    pub name: &'static str,
    /// The records.
    pub bytes: &'static [u8],
}

impl Input {
    /// Parses the CLI form: `-` is stdin, anything else a file path.
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" { Input::Stdin } else { Input::File(PathBuf::from(arg)) }
    }

    /// The name written into positions: the file path as given, `stdin`, or the topic.
    pub fn name(&self) -> SourceName {
        match self {
            Input::File(p) => SourceName::File(Arc::from(p.display().to_string())),
            Input::Stdin => SourceName::File(Arc::from("stdin")),
            Input::Kafka(k) => SourceName::Topic(Arc::from(k.topic.as_str())),
            Input::Bundled(b) => SourceName::File(Arc::from(b.name)),
        }
    }

    /// Opens the input before workers start, so a missing file is a clear error, not a panic.
    pub fn open(&self) -> Result<OpenInput, SourceError> {
        match self {
            Input::Stdin => Ok(OpenInput::Stdin),
            Input::Kafka(k) => Ok(OpenInput::Kafka(k.clone())),
            Input::Bundled(b) => {
                let map = (!b.bytes.is_empty()).then(|| copy_to_map(b.bytes)).transpose().map_err(|e| {
                    SourceError::Open { path: PathBuf::from(b.name), error: format!("mapping the bundled sample: {e}") }
                })?;
                Ok(OpenInput::File { name: self.name(), map: map.map(Arc::new), lines: Arc::default() })
            }
            Input::File(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| SourceError::Open { path: path.clone(), error: e.to_string() })?;
                let meta =
                    file.metadata().map_err(|e| SourceError::Open { path: path.clone(), error: e.to_string() })?;
                if !meta.is_file() {
                    return Err(SourceError::Open {
                        path: path.clone(),
                        error: "not a regular file (use `-` to read a pipe)".into(),
                    });
                }
                // Mapping the file lets every worker parse its chunks in place without copies.
                // A file truncated by another process while we read it is outside our contract.
                let map = if meta.len() == 0 {
                    None
                } else {
                    Some(map_file(&file).map_err(|e| SourceError::Open { path: path.clone(), error: e.to_string() })?)
                };
                Ok(OpenInput::File { name: self.name(), map: map.map(Arc::new), lines: Arc::default() })
            }
        }
    }
}

#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<Mmap> {
    // SAFETY: the mapping is read-only; the only hazard is the file being truncated while mapped,
    // which inflight documents as unsupported for input files.
    unsafe { Mmap::map(file) }
}

/// The bundled bytes in an anonymous read-only mapping, so the file reader serves them unchanged.
fn copy_to_map(bytes: &[u8]) -> std::io::Result<Mmap> {
    let mut map = memmap2::MmapMut::map_anon(bytes.len())?;
    map.copy_from_slice(bytes);
    map.make_read_only()
}

/// An input opened once per process and shared by its workers.
#[derive(Clone)]
pub enum OpenInput {
    /// A mapped file (None when empty).
    File {
        /// The path as given, for positions.
        name: SourceName,
        /// The file's bytes.
        map: Option<Arc<Mmap>>,
        /// Newlines per chunk, as the workers learn them.
        lines: Arc<file::LineCounts>,
    },
    /// Standard input.
    Stdin,
    /// A Kafka topic.
    Kafka(KafkaInput),
}

/// How a source reads.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Allowed out-of-orderness: a record older than the partition's newest minus this is late.
    pub lateness: Millis,
    /// Size of the file chunks that are the unit of parallel reading and of watermarks. It does not
    /// depend on the number of workers, so lateness (and so the output) is the same at any parallelism.
    pub chunk_size: u64,
    /// Bytes of input parsed per activation (rounded up to a whole line).
    pub batch_bytes: usize,
    /// Flow control: read nothing while the outputs lag more than this behind the source's
    /// watermark (event time, ms; 0 = no fixed bound, see `file_skew`).
    pub max_lag: Millis,
    /// With no `max_lag`: how far ahead of the others a worker reading its chunks of a file may get.
    pub file_skew: FileSkew,
    /// How long after its event time a record's effect is out (the pipeline's window width): a
    /// Kafka offset is committed once the outputs for that long after it are acknowledged.
    pub settle: Millis,
    /// Replay a file at this many times its event-time pace (None: as fast as possible).
    pub replay_speed: Option<f64>,
}

/// How far apart in event time the workers reading one file may get when no `max_lag` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileSkew {
    /// Twice the event time that one round of chunks (one per worker) covers. Workers read
    /// interleaved chunks, so one is naturally up to a round ahead of another; unbounded, a faster
    /// worker ran ever further ahead, and the windows it filled stayed open until the slowest
    /// caught up (at two workers: +100 MB, the kernel zeroing fresh pages for a third of the run,
    /// and the last decisions 200 ms late).
    Bounded,
    /// No bound (`--max-lag 0`).
    Free,
}

/// The flow-control bound for inputs from Kafka: the durable frontier (outputs acknowledged by
/// the broker) may trail the sources by this much event time. It also bounds how much is read but
/// not yet committed, so it stays on for Kafka whatever the pipeline.
pub const KAFKA_MAX_LAG: Millis = 60_000;

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            lateness: 0,
            chunk_size: 4 << 20,
            batch_bytes: 256 << 10,
            max_lag: 0,
            file_skew: FileSkew::Bounded,
            settle: 1_000,
            replay_speed: None,
        }
    }
}

/// Counters a source reports when it finishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceStats {
    /// Records parsed into events and on time.
    pub events: u64,
    /// Records dead-lettered as malformed or invalid.
    pub bad: u64,
    /// Records dead-lettered as late.
    pub late: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl SourceStats {
    /// Adds another source's counters to these.
    pub fn add(&mut self, other: &SourceStats) {
        self.events += other.events;
        self.bad += other.bad;
        self.late += other.late;
        self.bytes += other.bytes;
    }

    /// Records read in total (good, bad and late).
    pub fn records(&self) -> u64 {
        self.events + self.bad + self.late
    }
}

/// Where one split of a source (a file chunk, a Kafka partition) continues: its replay point and
/// its watermark, saved in checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SplitState {
    /// The chunk index or partition number.
    pub id: u64,
    /// Byte offset of the next line, or the next Kafka offset.
    pub offset: u64,
    /// Its 1-based line number (files).
    pub line: u64,
    /// The split's watermark.
    pub wm: crate::watermark::Watermark,
}

/// Split states by id, from every part of a restored source.
pub(crate) type Restart = std::collections::HashMap<u64, SplitState>;

/// A source that cannot start or cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input file cannot be opened (the user's to fix).
    #[error("cannot read input {path:?}: {error}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The operating system's reason.
        error: String,
    },
}
