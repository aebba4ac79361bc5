//! Starting timely: the cluster shape (worker threads, processes, this process's index, hostfile)
//! turned into a timely configuration, and the context every worker of a process shares (the
//! signals of [`crate::signals`], the checkpoints, the live view's hub).

pub use crate::signals::{Failures, Flag, FrontierClock, Pace, Positions, Pressure, Progress, Stop};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// How long a process waits for the others at start (`--connect-timeout`).
    pub connect_timeout: std::time::Duration,
}

/// `--connect-timeout`'s default.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for Cluster {
    fn default() -> Self {
        Cluster { workers: 1, processes: 1, process: 0, hostfile: None, connect_timeout: CONNECT_TIMEOUT }
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
    /// The processes could not all connect (one missing, a different shape, a port in use).
    #[error("cluster: {0}")]
    Connect(String),
    /// Timely could not start the workers.
    #[error("starting the workers: {0}")]
    Start(String),
}

impl Cluster {
    /// Total number of workers across all processes.
    pub fn peers(&self) -> usize {
        self.workers * self.processes
    }

    /// Checks the shape, and gives every process's `host:port` (one `localhost` entry for a single
    /// process, which listens on nothing).
    pub fn hosts(&self) -> Result<Vec<String>, ClusterError> {
        if self.workers == 0 {
            return Err(ClusterError::Zero("workers (-w)"));
        }
        if self.processes == 0 {
            return Err(ClusterError::Zero("processes (-n)"));
        }
        if self.process >= self.processes {
            return Err(ClusterError::Index { process: self.process, processes: self.processes });
        }
        match &self.hostfile {
            Some(path) if self.processes > 1 => read_hostfile(path, self.processes),
            _ => Ok((0..self.processes).map(|i| format!("localhost:{}", 2101 + i)).collect()),
        }
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

impl RunContext {
    /// How far the slowest source is behind "now", in ms: the replay clock's now during a replay
    /// (`--replay-speed`), the wall clock otherwise. None before any source has a watermark.
    pub fn lag_ms(&self) -> Option<crate::Millis> {
        let frontier = self.clock.low()?;
        let now = self.pace.now().unwrap_or_else(crate::time::wall_millis);
        Some(now.saturating_sub(frontier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        let c = Cluster { workers: 0, ..Cluster::default() };
        assert!(c.hosts().is_err());
        let c = Cluster { processes: 2, process: 2, ..Cluster::default() };
        assert!(c.hosts().unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn hostfile_needs_a_line_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1:4000\n").unwrap();
        let c = Cluster { processes: 2, hostfile: Some(path.clone()), ..Cluster::default() };
        assert!(c.hosts().unwrap_err().to_string().contains("1 hosts listed"));
        std::fs::write(&path, "127.0.0.1:4000\n# comment\n127.0.0.1:4001\n").unwrap();
        assert!(c.hosts().is_ok());
    }
}
