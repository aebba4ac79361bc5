//! What the threads of one process signal each other while a job runs: records read, fatal
//! errors, a stop request, where partitioned sources stopped, when sources moved forward, buffers
//! over their bounds and the replay clock. Leaf types: they depend on nothing else in the engine,
//! so every module may use them without importing the runner ([`crate::runtime`] gathers them in
//! its `RunContext`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
pub struct Pace(Arc<std::sync::OnceLock<(std::time::Instant, u64, f64)>>);

impl Pace {
    /// How long a source at watermark `wm` must wait before reading more (None: read now).
    pub fn wait(&self, wm: u64, speed: f64) -> Option<std::time::Duration> {
        let (start, t0, _) = *self.0.get_or_init(|| (std::time::Instant::now(), wm, speed));
        let ahead = wm.saturating_sub(t0) as f64 / 1000.0 / speed;
        let due = start + std::time::Duration::from_secs_f64(ahead);
        due.checked_duration_since(std::time::Instant::now())
    }

    /// The replay clock's event time now (None until a replay has started).
    pub fn now(&self) -> Option<crate::Millis> {
        let (start, t0, speed) = *self.0.get()?;
        Some(t0 + (start.elapsed().as_secs_f64() * speed * 1000.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_clock_runs_at_its_speed_from_the_first_watermark() {
        let pace = Pace::default();
        assert_eq!(pace.now(), None);
        assert_eq!(pace.wait(1_000_000, 100.0), None);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = pace.now().unwrap();
        // 50 ms of wall time at 100x: 5 s of event time (and not much more).
        assert!((1_005_000..1_030_000).contains(&now), "{now}");
    }

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
}
