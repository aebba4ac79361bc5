//! Starting timely: the cluster shape (worker threads, processes, this process's index, hostfile)
//! turned into a timely configuration, and the small shared context every worker of a process sees
//! (a progress counter for the terminal, and a place to report fatal errors).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many workers, in how many processes, and which process this is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads per process (`-w`).
    pub workers: usize,
    /// Number of processes (`-n`).
    pub processes: usize,
    /// This process's index, 0-based (`-p`).
    pub process: usize,
    /// File with one `host:port` line per process (`-h`); without it, localhost:2101+i.
    pub hostfile: Option<PathBuf>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster { workers: 1, processes: 1, process: 0, hostfile: None }
    }
}

/// A cluster description that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `-w 0` or `-n 0`.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// `-p` outside 0..n.
    #[error("process index {process} is out of range for {processes} processes (use 0..{processes})")]
    Index {
        /// The index given.
        process: usize,
        /// The process count given.
        processes: usize,
    },
    /// The hostfile cannot be read or has too few lines.
    #[error("hostfile {path:?}: {error}")]
    Hostfile {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        error: String,
    },
}

impl Cluster {
    /// Total number of workers across all processes.
    pub fn peers(&self) -> usize {
        self.workers * self.processes
    }

    /// The timely configuration for this process.
    pub fn timely_config(&self) -> Result<timely::Config, ClusterError> {
        if self.workers == 0 {
            return Err(ClusterError::Zero("workers (-w)"));
        }
        if self.processes == 0 {
            return Err(ClusterError::Zero("processes (-n)"));
        }
        if self.process >= self.processes {
            return Err(ClusterError::Index { process: self.process, processes: self.processes });
        }
        if self.processes == 1 {
            return Ok(timely::Config::process(self.workers));
        }
        let addresses = match &self.hostfile {
            Some(path) => read_hostfile(path, self.processes)?,
            None => (0..self.processes).map(|i| format!("localhost:{}", 2101 + i)).collect(),
        };
        Ok(timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        })
    }
}

fn read_hostfile(path: &PathBuf, processes: usize) -> Result<Vec<String>, ClusterError> {
    let err = |error: String| ClusterError::Hostfile { path: path.clone(), error };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let hosts: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect();
    if let Some(bad) = hosts.iter().find(|h| !h.contains(':')) {
        return Err(err(format!("line {bad:?} is not host:port")));
    }
    if hosts.len() < processes {
        return Err(err(format!("{} hosts listed but -n {processes} processes", hosts.len())));
    }
    Ok(hosts.into_iter().take(processes).collect())
}

/// Records read so far by this process's sources (for the progress indicator).
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Counts `n` more records.
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records read so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Fatal errors reported by operators (an unreadable input, an unwritable output); the run fails
/// with them at the end instead of a worker panicking.
#[derive(Clone, Debug, Default)]
pub struct Failures(Arc<Mutex<Vec<String>>>);

impl Failures {
    /// Reports a fatal error.
    pub fn report(&self, message: String) {
        tracing::error!("{message}");
        if let Ok(mut list) = self.0.lock() {
            list.push(message);
        }
    }

    /// The errors reported so far, left in place.
    pub fn peek(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// All errors reported so far.
    pub fn take(&self) -> Vec<String> {
        self.0.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }
}

/// A request to stop (SIGINT/SIGTERM): sources finish as if their input ended, so windows close,
/// sinks flush and offsets are committed.
#[derive(Clone, Debug, Default)]
pub struct Stop(Flag);

impl Stop {
    /// Asks every source of the process to finish.
    pub fn request(&self) {
        self.0.set();
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.get()
    }
}

/// A flag set once and read from other threads (a stop request; the dataflow running, for
/// `/health`).
#[derive(Clone, Debug, Default)]
pub struct Flag(Arc<std::sync::atomic::AtomicBool>);

impl Flag {
    /// Sets the flag.
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether it is set.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where partitioned sources stopped: (topic, partition, next offset), for committing at the end.
#[derive(Clone, Debug, Default)]
pub struct Positions(Arc<Mutex<Vec<(String, i32, i64)>>>);

impl Positions {
    /// Records the next offsets of `topic`'s partitions.
    pub fn record(&self, topic: &str, next: &[(i32, i64)]) {
        if let Ok(mut list) = self.0.lock() {
            list.extend(next.iter().map(|(p, o)| (topic.to_owned(), *p, *o)));
        }
    }

    /// All recorded positions.
    pub fn take(&self) -> Vec<(String, i32, i64)> {
        self.0.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }
}

/// When each source of this process moved its time forward (wall clock at the poll that let it):
/// a result about event time `t` became possible once every source had moved to `t` or beyond, so
/// "result out − that moment" is the engine's own latency, free of the wait for the window to end.
/// Covers this process's workers only.
#[derive(Clone, Debug, Default)]
pub struct FrontierClock(Arc<Mutex<Vec<Moves>>>);

/// One source's moves: (event time moved to, wall-clock ns of the poll), oldest first.
type Moves = std::collections::VecDeque<(crate::Millis, u64)>;

impl FrontierClock {
    /// Most moves remembered per source.
    const KEEP: usize = 100_000;

    /// Source `worker` moved to event time `to` after a poll at `wall_ns`.
    pub fn advanced(&self, worker: usize, to: crate::Millis, wall_ns: u64) {
        if let Ok(mut all) = self.0.lock() {
            if all.len() <= worker {
                all.resize_with(worker + 1, Default::default);
            }
            let moves = &mut all[worker];
            if moves.len() == Self::KEEP {
                moves.pop_front();
            }
            moves.push_back((to, wall_ns));
        }
    }

    /// The event time every source of this process has reached (None before each has moved).
    pub fn low(&self) -> Option<crate::Millis> {
        let all = self.0.lock().ok()?;
        all.iter().map(|moves| moves.back().map(|(t, _)| *t)).min().flatten()
    }

    /// The wall time at which every source had passed `time` (None if one has not, or is unknown).
    pub fn passed(&self, time: crate::Millis) -> Option<u64> {
        let all = self.0.lock().ok()?;
        let mut latest = None;
        for moves in all.iter() {
            let i = moves.partition_point(|(t, _)| *t <= time);
            let (_, wall) = moves.get(i)?;
            latest = latest.max(Some(*wall));
        }
        latest
    }
}

/// Operators of this process holding more buffered input than they should (the LLM stage when
/// its endpoint is slower than the input): while any does, the sources read nothing. Timely has no
/// back-pressure of its own; this and the outputs probe are how the graph pushes back.
#[derive(Clone, Debug, Default)]
pub struct Pressure(Arc<AtomicU64>);

impl Pressure {
    /// One more operator is over its bound.
    pub fn engage(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// One operator is back under its bound.
    pub fn release(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// Should sources pause?
    pub fn engaged(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

/// The replay clock shared by a process's sources: event time `t0` (the first watermark any
/// source saw) is due at the moment it was seen, and later times `speed` times faster than real.
#[derive(Clone, Debug, Default)]
pub struct Pace(Arc<std::sync::OnceLock<(std::time::Instant, u64)>>);

impl Pace {
    /// How long a source at watermark `wm` must wait before reading more (None: read now).
    pub fn wait(&self, wm: u64, speed: f64) -> Option<std::time::Duration> {
        let (start, t0) = *self.0.get_or_init(|| (std::time::Instant::now(), wm));
        let ahead = wm.saturating_sub(t0) as f64 / 1000.0 / speed;
        let due = start + std::time::Duration::from_secs_f64(ahead);
        due.checked_duration_since(std::time::Instant::now())
    }
}

/// What every worker of a process shares.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    /// Records read.
    pub progress: Progress,
    /// Fatal errors.
    pub failures: Failures,
    /// Stop requests.
    pub stop: Stop,
    /// Final source positions.
    pub positions: Positions,
    /// When sources moved forward, for the engine's latency.
    pub clock: FrontierClock,
    /// Buffers over their bounds: sources pause while any is.
    pub pressure: Pressure,
    /// Set once this process's dataflow is built and running.
    pub ready: Flag,
    /// The run's checkpoints, once the job has opened them (for `/health`).
    pub checkpoints: Arc<std::sync::OnceLock<Arc<crate::recovery::Checkpoints>>>,
    /// The replay clock (`--replay-speed`).
    pub pace: Pace,
    /// The live view's hub (`--serve`; set on every process, fed on process 0).
    pub live: Arc<std::sync::OnceLock<Arc<crate::serve::Hub>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_clock_takes_the_slowest_source() {
        let c = FrontierClock::default();
        c.advanced(0, 1_000, 10);
        c.advanced(0, 2_000, 20);
        c.advanced(1, 1_500, 15);
        c.advanced(1, 2_500, 30);
        // Time 1_200 was passed by source 0 at 20 (its move to 2_000) and by source 1 at 15.
        assert_eq!(c.passed(1_200), Some(20));
        assert_eq!(c.passed(1_999), Some(30));
        // A source at 2_000 has finished everything before 2_000, not 2_000 itself.
        assert_eq!(c.passed(2_000), None, "source 0 has not passed 2_000");
    }

    #[test]
    fn rejects_bad_shapes() {
        let c = Cluster { workers: 0, ..Cluster::default() };
        assert!(c.timely_config().is_err());
        let c = Cluster { processes: 2, process: 2, ..Cluster::default() };
        assert!(c.timely_config().unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn hostfile_needs_a_line_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1:4000\n").unwrap();
        let c = Cluster { processes: 2, hostfile: Some(path.clone()), ..Cluster::default() };
        assert!(c.timely_config().unwrap_err().to_string().contains("1 hosts listed"));
        std::fs::write(&path, "127.0.0.1:4000\n# comment\n127.0.0.1:4001\n").unwrap();
        assert!(c.timely_config().is_ok());
    }
}
