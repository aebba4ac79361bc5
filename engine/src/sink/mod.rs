//! Sinks: where results leave a dataflow. The file/stdout sink gathers formatted lines on worker 0
//! and writes them in event-time order (lines of one time sorted), so the output of a run is the
//! same file whatever the number of workers or processes.

mod file;
mod kafka;

pub use file::{LineSink, write_lines};
pub use kafka::{KafkaOutput, KafkaRecord, produce, written_ids};

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
    /// that writes nothing, since their lines travel to worker 0. With `resume` (a restore), a
    /// file is not truncated here: the sink cuts it back to the length the checkpoint recorded.
    pub fn open(&self, process: usize, resume: bool) -> Result<OpenOutput, SinkError> {
        let path = match self {
            Output::File(p) if resume => Some(p.clone()),
            _ => None,
        };
        let writer: Option<Box<dyn Write + Send>> = match self {
            _ if process != 0 || path.is_some() => None,
            Output::File(path) => {
                // A missing directory is more likely a typo than a wish: it is not created.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
                    let error = format!("directory {} does not exist", dir.display());
                    return Err(SinkError::Open { path: path.clone(), error });
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
        let resume = path.filter(|_| process == 0);
        Ok(OpenOutput { name: self.describe(), discard, writer: Arc::new(Mutex::new(writer)), resume })
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
    /// A file to continue after a restore (process 0).
    resume: Option<PathBuf>,
}

impl OpenOutput {
    /// Takes the writer (worker 0 does, once).
    fn take(&self) -> Option<Box<dyn Write + Send>> {
        self.writer.lock().ok().and_then(|mut w| w.take())
    }

    /// Opens the file to continue after a restore: cut back to `len` bytes, the length it had at
    /// the checkpoint, and appended to from there.
    /// The writer, continuing a restored output at `len` bytes, and the lines kept before that.
    fn resume_at(&self, len: u64) -> Result<(Option<Box<dyn Write + Send>>, u64), String> {
        let Some(path) = &self.resume else { return Ok((self.take(), 0)) };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot reopen output {path:?}: {e}"))?;
        let meta = file.metadata().map_err(|e| format!("cannot read output {path:?}: {e}"))?;
        if !meta.is_file() {
            // A device or pipe (e.g. /dev/null): nothing to cut back.
            return Ok((Some(Box::new(std::io::BufWriter::with_capacity(1 << 20, file))), 0));
        }
        let now = meta.len();
        if now < len {
            return Err(format!(
                "output {path:?} has {now} bytes but had {len} at the checkpoint: it was changed, cannot continue it"
            ));
        }
        file.set_len(len).map_err(|e| format!("cannot cut output {path:?} back to {len} bytes: {e}"))?;
        let kept = count_lines(path).map_err(|e| format!("cannot read output {path:?}: {e}"))?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(|e| format!("output {path:?}: {e}"))?;
        Ok((Some(Box::new(std::io::BufWriter::with_capacity(1 << 20, file))), kept))
    }
}

/// The lines of the file at `path` (for the summary of a restored run: its output already held
/// them).
fn count_lines(path: &std::path::Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let (mut buf, mut lines) = (vec![0u8; 1 << 20], 0u64);
    loop {
        match std::io::Read::read(&mut file, &mut buf)? {
            0 => return Ok(lines),
            n => lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64,
        }
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
