//! Sinks: where results leave a dataflow. The file/stdout sink gathers formatted lines on worker 0
//! and writes them in event-time order (lines of one time sorted), so the output of a run is the
//! same file whatever the number of workers or processes.

mod file;
mod kafka;

pub use file::{LineSink, write_lines};
pub use kafka::{KafkaOutput, KafkaRecord, produce};

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where a run writes an output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A file, created or truncated.
    File(PathBuf),
    /// Standard output.
    Stdout,
    /// Standard error (the default for dead letters, so they are never silent).
    Stderr,
    /// Nowhere (benchmarks): lines are still formatted and counted.
    Discard,
    /// A Kafka topic.
    Kafka(KafkaOutput),
}

impl Output {
    /// Parses the CLI form: `-` is stdout, anything else a file path.
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" { Output::Stdout } else { Output::File(PathBuf::from(arg)) }
    }

    /// Opens the output in the process that writes it (process 0); other processes get a handle
    /// that writes nothing, since their lines travel to worker 0.
    pub fn open(&self, process: usize) -> Result<OpenOutput, SinkError> {
        let writer: Option<Box<dyn Write + Send>> = match self {
            _ if process != 0 => None,
            Output::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| SinkError::Open { path: path.clone(), error: e.to_string() })?;
                }
                let f = std::fs::File::create(path)
                    .map_err(|e| SinkError::Open { path: path.clone(), error: e.to_string() })?;
                Some(Box::new(std::io::BufWriter::with_capacity(1 << 20, f)))
            }
            Output::Stdout => Some(Box::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()))),
            Output::Stderr => Some(Box::new(std::io::stderr())),
            Output::Discard | Output::Kafka(_) => Some(Box::new(std::io::sink())),
        };
        let discard = matches!(self, Output::Discard);
        Ok(OpenOutput { name: self.describe(), discard, writer: Arc::new(Mutex::new(writer)) })
    }

    fn describe(&self) -> String {
        match self {
            Output::File(p) => p.display().to_string(),
            Output::Stdout => "stdout".into(),
            Output::Stderr => "stderr".into(),
            Output::Discard => "discard".into(),
            Output::Kafka(k) => format!("kafka topic {}", k.topic),
        }
    }
}

/// An opened output, handed to the one worker that writes it.
#[derive(Clone)]
pub struct OpenOutput {
    name: String,
    /// Nothing is written: lines need not travel to worker 0 or be put in order.
    discard: bool,
    writer: Arc<Mutex<Option<Box<dyn Write + Send>>>>,
}

impl OpenOutput {
    /// Takes the writer (worker 0 does, once).
    fn take(&self) -> Option<Box<dyn Write + Send>> {
        self.writer.lock().ok().and_then(|mut w| w.take())
    }
}

/// An output that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The file cannot be created (the user's to fix).
    #[error("cannot write output {path:?}: {error}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The operating system's reason.
        error: String,
    },
}
