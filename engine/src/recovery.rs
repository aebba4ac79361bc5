//! Taking checkpoints while a job runs, and restoring from one (storage is [`crate::checkpoint`]).
//!
//! Checkpoint times are the multiples of `--checkpoint-interval` in event time. A source never
//! moves its time past a multiple `M` in one step: it stops at `M`, writes its replay points and
//! waits until checkpoint `M` is committed. So no record at a time >= `M` exists anywhere until
//! checkpoint `M` is whole, and every stateful operator sees its input frontier reach `M` holding
//! exactly the state of the times < `M`: that is when it writes its part.
//!
//! A part says which checkpoint times it is valid for: `(lo, hi]`, where `hi` is the largest
//! multiple at or below the writer's frontier and `lo` the larger of its previous part's `hi` and
//! the latest time it applied. A source whose time jumps over several multiples (a gap in the
//! data, the start of a run) or an operator whose input ended (`hi` = ∞) is valid for all of them
//! with one part. Worker 0 of process 0 commits `M` once every participant of every worker has a
//! part valid for `M`: it links the parts into `ckpt-M`, records the output topics' end offsets,
//! and writes the manifest last.
//!
//! Operators take part through the state they declare while a worker's graph is built
//! ([`crate::state`]): each declaration is a [`Participant`] with a unique name and a version, and
//! the manifest lists them, so a restore into a graph with other state fails at start.

use crate::checkpoint::{self, CheckpointError, Found, Manifest, PartInfo, StateInfo};
use crate::kafka::KafkaConfig;
use crate::signals::Failures;
use crate::time::Millis;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `--checkpoint-dir`, `--checkpoint-interval`, `--checkpoint-keep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The pipeline's name (a checkpoint of another pipeline is refused).
    pub pipeline: String,
    /// Where checkpoints live (local, or shared by all processes).
    pub dir: PathBuf,
    /// Event time between checkpoints, ms.
    pub interval: Millis,
    /// Complete checkpoints kept.
    pub keep: usize,
}

/// Separates a part's participant, worker and `lo` in its file name.
const SEP: char = '~';
/// `hi` of a part written when the writer's input ended: valid for every later checkpoint.
const END: Millis = Millis::MAX;
/// The part that records the output topics' end offsets at commit time.
pub const KAFKA_OUT: &str = "kafka-out";

/// The last committed checkpoint, for `/health` and the run's log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LastCheckpoint {
    /// Its event time T.
    pub time: Millis,
    /// Total size of its parts in bytes.
    pub bytes: u64,
    /// From the first part seen to the manifest, ms.
    pub duration_ms: u64,
    /// Wall-clock ms when it was committed.
    pub written_at: u64,
}

/// What a run restores from.
#[derive(Debug, Default)]
pub struct Restored {
    /// The checkpoint's time T.
    pub time: Millis,
    /// The state the graph that wrote it declared.
    state: Vec<StateInfo>,
    /// Parts by participant: (worker that wrote it, bytes).
    parts: HashMap<String, Vec<(usize, Vec<u8>)>>,
}

/// A process's view of checkpointing, shared by its workers.
#[derive(Debug)]
pub struct Checkpoints {
    config: CheckpointConfig,
    pipeline: String,
    workers: usize,
    processes: usize,
    /// Newest checkpoint time known to be committed (0: none).
    committed: AtomicU64,
    /// The checkpoint a stop request ends the run at (0: none yet).
    final_at: AtomicU64,
    restored: Option<Restored>,
    last: Mutex<Option<LastCheckpoint>>,
    /// Every checkpoint this run committed (for the run's report and benchmarks).
    history: Mutex<Vec<LastCheckpoint>>,
    /// Parts written by this process (the coordinator looks for new ones when it changes).
    parts_written: AtomicU64,
    /// Output topics whose end offsets each checkpoint records (the sink skips what is there).
    outputs: Mutex<Vec<(KafkaConfig, String)>>,
}

impl Checkpoints {
    /// Opens `config.dir` for `pipeline`: finds the newest whole checkpoint to restore from and
    /// (process 0) removes everything newer, left by the run that stopped.
    pub fn open(
        config: CheckpointConfig,
        workers: usize,
        processes: usize,
        process: usize,
    ) -> Result<Self, CheckpointError> {
        if config.interval == 0 {
            return Err(CheckpointError::Invalid {
                path: config.dir.display().to_string(),
                reason: "the checkpoint interval must be longer than 0".into(),
            });
        }
        std::fs::create_dir_all(&config.dir)
            .map_err(|error| CheckpointError::Io { path: config.dir.display().to_string(), error })?;
        let found = checkpoint::latest(&config.dir, &config.pipeline)?;
        if process == 0 {
            let after = found.as_ref().map_or(0, |f| f.manifest.time);
            for removed in checkpoint::remove_after(&config.dir, after)? {
                tracing::info!(dir = %removed.display(), "removed an unfinished checkpoint of the previous run");
            }
        }
        let restored = found.map(load).transpose()?;
        if let Some(r) = &restored {
            tracing::info!(time = r.time, dir = %config.dir.display(), "restoring from checkpoint");
        }
        let committed = restored.as_ref().map_or(0, |r| r.time);
        Ok(Checkpoints {
            pipeline: config.pipeline.clone(),
            config,
            workers,
            processes,
            committed: AtomicU64::new(committed),
            final_at: AtomicU64::new(0),
            restored,
            last: Mutex::new(None),
            history: Mutex::new(Vec::new()),
            parts_written: AtomicU64::new(0),
            outputs: Mutex::new(Vec::new()),
        })
    }

    /// The checkpoint being restored from, if any.
    pub fn restored(&self) -> Option<&Restored> {
        self.restored.as_ref()
    }

    /// The time restored from (0 on a fresh start).
    pub fn restored_time(&self) -> Millis {
        self.restored.as_ref().map_or(0, |r| r.time)
    }

    /// The newest checkpoint this process knows to be complete (0: none yet), and the directory.
    pub fn complete(&self) -> (Millis, &std::path::Path) {
        (self.committed.load(Ordering::Acquire), &self.config.dir)
    }

    /// The checkpoint interval, ms.
    pub fn interval(&self) -> Millis {
        self.config.interval
    }

    /// The largest checkpoint time in `(from, to]`, if there is one.
    pub fn multiple_in(&self, from: Millis, to: Millis) -> Option<Millis> {
        let m = to - to % self.config.interval;
        (m > from).then_some(m)
    }

    /// The first checkpoint time after `time`.
    pub fn next_after(&self, time: Millis) -> Millis {
        (time / self.config.interval).saturating_add(1).saturating_mul(self.config.interval)
    }

    /// Whether checkpoint `time` is committed (in another process: its manifest exists).
    pub fn is_committed(&self, time: Millis) -> bool {
        if self.committed.load(Ordering::Acquire) >= time {
            return true;
        }
        if self.processes > 1 && checkpoint::dir_of(&self.config.dir, time).join(checkpoint::MANIFEST).exists() {
            self.committed.fetch_max(time, Ordering::AcqRel);
            return true;
        }
        false
    }

    /// Asks the run to end at checkpoint `time` (a stop request); the first asked wins, and the
    /// time the run ends at is returned.
    pub fn end_at(&self, time: Millis) -> Millis {
        match self.final_at.compare_exchange(0, time, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => time,
            Err(first) => first,
        }
    }

    /// The checkpoint a stop request ends the run at, once it is committed.
    pub fn ended(&self) -> Option<Millis> {
        let at = self.final_at.load(Ordering::Acquire);
        (at > 0 && self.is_committed(at)).then_some(at)
    }

    /// The stop checkpoint asked for, committed or not.
    pub fn ending_at(&self) -> Option<Millis> {
        let at = self.final_at.load(Ordering::Acquire);
        (at > 0).then_some(at)
    }

    /// The last committed checkpoint of this run.
    pub fn last(&self) -> Option<LastCheckpoint> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Every checkpoint this run committed, oldest first.
    pub fn history(&self) -> Vec<LastCheckpoint> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Registers an output topic whose end offsets every checkpoint records.
    pub fn add_output_topic(&self, kafka: &KafkaConfig, topic: &str) {
        if let Ok(mut o) = self.outputs.lock() {
            o.push((kafka.clone(), topic.to_owned()));
        }
    }

    /// Checks that a graph declaring `declared` can restore the checkpoint restored from: the same
    /// state names with the same versions, or one line naming what is missing, extra or changed.
    pub fn check_state(&self, declared: &[StateInfo]) -> Result<(), String> {
        let Some(restored) = &self.restored else { return Ok(()) };
        let saved = &restored.state;
        let names = |list: Vec<&StateInfo>| list.iter().map(|s| format!("'{}'", s.name)).collect::<Vec<_>>().join(", ");
        let missing: Vec<&StateInfo> = saved.iter().filter(|s| !declared.iter().any(|d| d.name == s.name)).collect();
        let extra: Vec<&StateInfo> = declared.iter().filter(|d| !saved.iter().any(|s| s.name == d.name)).collect();
        let changed: Vec<String> = declared
            .iter()
            .filter_map(|d| {
                let s = saved.iter().find(|s| s.name == d.name)?;
                (s.version != d.version)
                    .then(|| format!("'{}' is version {} there, {} here", d.name, s.version, d.version))
            })
            .collect();
        if missing.is_empty() && extra.is_empty() && changed.is_empty() {
            return Ok(());
        }
        let mut what = Vec::new();
        if !extra.is_empty() {
            what.push(format!("this graph has state the checkpoint lacks: {}", names(extra)));
        }
        if !missing.is_empty() {
            what.push(format!("the checkpoint has state this graph lacks: {}", names(missing)));
        }
        what.extend(changed);
        Err(format!(
            "checkpoint {} in {} was written by another graph of {} ({}); restore it with the build that wrote it, or use another --checkpoint-dir",
            restored.time,
            self.config.dir.display(),
            self.pipeline,
            what.join("; ")
        ))
    }

    /// The output topic offsets recorded by the checkpoint restored from: (topic, partition, end).
    pub fn restored_output_offsets(&self) -> Result<Vec<(String, i32, i64)>, CheckpointError> {
        match self.restored.as_ref().and_then(|r| r.parts.get(KAFKA_OUT)).and_then(|p| p.first()) {
            Some((_, bytes)) => checkpoint::decode(bytes),
            None => Ok(Vec::new()),
        }
    }
}

fn load(found: Found) -> Result<Restored, CheckpointError> {
    let mut parts: HashMap<String, Vec<(usize, Vec<u8>)>> = HashMap::new();
    for (name, bytes) in found.parts()? {
        let (participant, worker, _) = parse_part(&name).ok_or_else(|| CheckpointError::Invalid {
            path: found.dir.join(&name).display().to_string(),
            reason: "not a part name this build writes".into(),
        })?;
        parts.entry(participant.to_owned()).or_default().push((worker, bytes));
    }
    for list in parts.values_mut() {
        list.sort_by_key(|(w, _)| *w);
    }
    Ok(Restored { time: found.manifest.time, state: found.manifest.state.clone(), parts })
}

fn part_name(participant: &str, worker: usize, lo: Millis) -> String {
    format!("{participant}{SEP}w{worker}{SEP}{lo}")
}

fn parse_part(name: &str) -> Option<(&str, usize, Millis)> {
    let mut it = name.split(SEP);
    let participant = it.next()?;
    let worker = it.next()?.strip_prefix('w')?.parse().ok()?;
    let lo = it.next()?.parse().ok()?;
    it.next().is_none().then_some((participant, worker, lo))
}

/// One operator's share of the checkpoints on one worker.
#[derive(Debug)]
pub struct Participant {
    shared: Arc<Checkpoints>,
    name: String,
    worker: usize,
    /// Checkpoint times up to here are covered by parts already written.
    covered_to: Millis,
    /// The latest time of anything applied to the state.
    applied_max: Option<Millis>,
    failures: Failures,
}

impl Participant {
    /// The participant `name` of worker `worker` (see [`crate::state::States::declare`]).
    pub(crate) fn new(shared: Arc<Checkpoints>, name: String, worker: usize, failures: Failures) -> Self {
        let covered_to = shared.restored_time();
        Participant { shared, name, worker, covered_to, applied_max: None, failures }
    }

    /// Its name in part files and in the manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Notes that input at `time` changed the state.
    pub fn applied(&mut self, time: Millis) {
        self.applied_max = Some(self.applied_max.map_or(time, |m| m.max(time)));
    }

    /// The parts this participant wrote in the checkpoint restored from, by old worker (all of
    /// them: state keyed by something else than the worker is redistributed by the caller).
    pub fn restored(&self) -> &[(usize, Vec<u8>)] {
        self.shared.restored.as_ref().and_then(|r| r.parts.get(&self.name)).map_or(&[], Vec::as_slice)
    }

    /// Reports a fatal error (e.g. a restored part this build cannot decode): the run fails.
    pub fn report(&self, message: String) {
        self.failures.report(message);
    }

    /// The shared checkpoint state.
    pub fn shared(&self) -> &Arc<Checkpoints> {
        &self.shared
    }

    /// Writes a part if the state now is the state of a checkpoint time not covered yet: the
    /// operator's input frontier is `frontier` (None: the input ended) and everything before it
    /// has been applied. `state` is only called when a part is written, with the checkpoint time
    /// the part is for (the latest it is valid for). Call it after the activation's input has
    /// been applied.
    pub fn offer(&mut self, frontier: Option<Millis>, state: impl FnOnce(Millis) -> Result<Vec<u8>, CheckpointError>) {
        let hi = match frontier {
            Some(f) => f - f % self.shared.config.interval,
            None => END,
        };
        let lo = self.covered_to.max(self.applied_max.unwrap_or(0));
        tracing::trace!(participant = %self.name, worker = self.worker, ?frontier, hi, lo, covered_to = self.covered_to, applied_max = ?self.applied_max, "offer");
        if hi <= lo {
            // Nothing new to cover, or input of a later time was applied already: a checkpoint
            // time a source jumped over (its part covers it, this one cannot) is never committed,
            // and the one the sources stop at is (nothing at or after it exists before).
            return;
        }
        self.covered_to = hi;
        let written = state(hi).and_then(|bytes| {
            checkpoint::write_part(&self.shared.config.dir, hi, &part_name(&self.name, self.worker, lo), &bytes)
        });
        match written {
            Ok(_) => {
                self.shared.parts_written.fetch_add(1, Ordering::Release);
                crash_point();
            }
            Err(e) => self.failures.report(format!("writing a checkpoint failed: {e}")),
        }
    }
}

/// Fault injection for the recovery tests: with `INFLIGHT_CRASH_AFTER_PARTS=N` the process
/// aborts right after writing its N-th checkpoint part, so a checkpoint is left half-written the
/// way a crash leaves it (a kill at a random moment rarely lands there).
fn crash_point() {
    static AFTER: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static WRITTEN: AtomicU64 = AtomicU64::new(0);
    let after = AFTER.get_or_init(|| std::env::var("INFLIGHT_CRASH_AFTER_PARTS").ok().and_then(|v| v.parse().ok()));
    if let Some(n) = after {
        if WRITTEN.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("inflight: INFLIGHT_CRASH_AFTER_PARTS={n}: aborting in the middle of a checkpoint");
            std::process::abort();
        }
    }
}

/// A part found on disk, not yet in a committed checkpoint.
struct Pending {
    participant: String,
    worker: usize,
    lo: Millis,
    hi: Millis,
    path: PathBuf,
}

/// Commits checkpoints once they are whole (worker 0 of process 0).
pub struct Coordinator {
    shared: Arc<Checkpoints>,
    state: Vec<StateInfo>,
    expected: Vec<(String, usize)>,
    last_poll: Instant,
    /// `parts_written` at the last poll.
    seen_parts: u64,
    first_seen: BTreeMap<Millis, Instant>,
    offsets: Option<rdkafka::consumer::BaseConsumer>,
    failures: Failures,
}

/// How often the coordinator looks for parts.
const POLL: Duration = Duration::from_millis(1);

impl Coordinator {
    /// A coordinator expecting the parts of `state` (one worker's declarations) from every worker.
    pub fn new(shared: Arc<Checkpoints>, state: &[StateInfo], failures: Failures) -> Self {
        let peers = shared.workers * shared.processes;
        let expected = (0..peers).flat_map(|w| state.iter().map(move |s| (s.name.clone(), w))).collect();
        Coordinator {
            shared,
            state: state.to_vec(),
            expected,
            last_poll: Instant::now() - POLL,
            seen_parts: 0,
            first_seen: BTreeMap::new(),
            offsets: None,
            failures,
        }
    }

    /// Commits every checkpoint that has become whole; cheap when called often. It looks at once
    /// when a worker of this process wrote a part, and every [`POLL`] for other processes' parts.
    pub fn poll(&mut self) {
        let written = self.shared.parts_written.load(Ordering::Acquire);
        let remote = self.shared.processes > 1 && self.last_poll.elapsed() >= POLL;
        if written == self.seen_parts && !remote {
            return;
        }
        self.seen_parts = written;
        self.last_poll = Instant::now();
        if let Err(e) = self.commit_whole() {
            self.failures.report(format!("committing a checkpoint failed: {e}"));
        }
    }

    fn commit_whole(&mut self) -> Result<(), CheckpointError> {
        let root = self.shared.config.dir.clone();
        let committed = self.shared.committed.load(Ordering::Acquire);
        let pending = pending_parts(&root, committed)?;
        let mut candidates: Vec<Millis> = pending.iter().map(|p| p.hi).filter(|hi| *hi != END).collect();
        candidates.sort_unstable();
        candidates.dedup();
        for m in candidates {
            self.first_seen.entry(m).or_insert_with(Instant::now);
            // A time some participant cannot cover (a source jumped over it) is skipped: a later
            // one, where the sources stop, will be whole.
            let chosen: Option<Vec<&Pending>> = self
                .expected
                .iter()
                .map(|(name, worker)| {
                    pending.iter().find(|p| &p.participant == name && p.worker == *worker && p.lo < m && m <= p.hi)
                })
                .collect();
            if let Some(chosen) = chosen {
                self.commit(m, &chosen)?;
            }
        }
        Ok(())
    }

    fn commit(&mut self, m: Millis, chosen: &[&Pending]) -> Result<(), CheckpointError> {
        let root = &self.shared.config.dir.clone();
        let dir = checkpoint::dir_of(root, m);
        let mut parts = Vec::with_capacity(chosen.len() + 1);
        for p in chosen {
            let name = part_name(&p.participant, p.worker, p.lo);
            if p.hi != m {
                link_or_copy(&p.path, &dir.join(&name))?;
            }
            let bytes = std::fs::read(&p.path)
                .map_err(|error| CheckpointError::Io { path: p.path.display().to_string(), error })?;
            parts.push(PartInfo { name, bytes: bytes.len() as u64, crc32: crc32fast::hash(&bytes) });
        }
        let offsets = self.output_offsets()?;
        if !offsets.is_empty() {
            parts.push(checkpoint::write_part(root, m, &part_name(KAFKA_OUT, 0, 0), &checkpoint::encode(&offsets)?)?);
        }
        let manifest = Manifest {
            format: checkpoint::FORMAT,
            pipeline: self.shared.pipeline.clone(),
            time: m,
            workers: self.shared.workers,
            processes: self.shared.processes,
            written_at: crate::time::wall_nanos() / 1_000_000,
            state: self.state.clone(),
            parts,
        };
        checkpoint::commit(root, &manifest)?;
        self.shared.committed.fetch_max(m, Ordering::AcqRel);
        let duration = self.first_seen.get(&m).map_or(Duration::ZERO, Instant::elapsed);
        self.first_seen = self.first_seen.split_off(&(m + 1));
        let last = LastCheckpoint {
            time: m,
            bytes: manifest.bytes(),
            duration_ms: duration.as_millis() as u64,
            written_at: manifest.written_at,
        };
        metrics::counter!(crate::metrics::names::CHECKPOINTS).increment(1);
        metrics::histogram!(crate::metrics::names::CHECKPOINT_DURATION).record(duration.as_secs_f64());
        metrics::gauge!(crate::metrics::names::CHECKPOINT_BYTES).set(last.bytes as f64);
        metrics::gauge!(crate::metrics::names::CHECKPOINT_TIME).set(m as f64);
        tracing::debug!(time = m, bytes = last.bytes, duration_ms = last.duration_ms, "checkpoint committed");
        if let Ok(mut h) = self.shared.history.lock() {
            h.push(last.clone());
        }
        if let Ok(mut l) = self.shared.last.lock() {
            *l = Some(last);
        }
        checkpoint::prune(root, self.shared.config.keep)?;
        Ok(())
    }

    /// The end offsets of every partition of the output topics (all of their records of times < the
    /// checkpoint are acknowledged, and none later is sent yet).
    fn output_offsets(&mut self) -> Result<Vec<(String, i32, i64)>, CheckpointError> {
        use rdkafka::consumer::Consumer;
        let outputs = self.shared.outputs.lock().map(|o| o.clone()).unwrap_or_default();
        let mut offsets = Vec::new();
        for (kafka, topic) in outputs {
            let invalid = |reason: String| CheckpointError::Invalid { path: format!("kafka topic {topic}"), reason };
            if self.offsets.is_none() {
                self.offsets = Some(
                    kafka
                        .client_config(&[("group.id", "inflight-checkpoint")])
                        .create()
                        .map_err(|e| invalid(format!("cannot create a consumer: {e}")))?,
                );
            }
            let Some(consumer) = self.offsets.as_ref() else { continue };
            let count =
                kafka.partitions(consumer, &topic, Duration::from_secs(10)).map_err(|e| invalid(e.to_string()))?;
            for p in 0..count {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .map_err(|e| invalid(format!("reading end offsets: {e}")))?;
                offsets.push((topic.clone(), p, high));
            }
        }
        Ok(offsets)
    }
}

/// Parts in checkpoint directories newer than `after` (including parts valid until the end).
fn pending_parts(root: &Path, after: Millis) -> Result<Vec<Pending>, CheckpointError> {
    let mut out = Vec::new();
    let mut dirs = checkpoint::listed(root)?;
    dirs.push((END, checkpoint::dir_of(root, END)));
    for (hi, dir) in dirs {
        if hi <= after {
            continue;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Pruned or removed meanwhile.
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(name) = file.to_str() else { continue };
            let Some((participant, worker, lo)) = parse_part(name) else { continue };
            out.push(Pending { participant: participant.to_owned(), worker, lo, hi, path: entry.path() });
        }
    }
    Ok(out)
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), CheckpointError> {
    let io = |error| CheckpointError::Io { path: to.display().to_string(), error };
    if to.exists() {
        return Ok(());
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(io)?;
    }
    Ok(())
}
