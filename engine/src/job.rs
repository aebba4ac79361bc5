//! Running a pipeline: the engine opens the input and outputs, starts timely with the cluster
//! shape, builds source → pipeline → sinks in every worker, runs to the end of input, and returns
//! the totals. A pipeline only supplies the function from events to results.

use crate::checkpoint::CheckpointError;
use crate::dead_letter::DeadLetter;
use crate::event::{Event, Sourced};
use crate::graph::Graph;
use crate::kafka::{Committer, KafkaError};
use crate::metrics::names;
use crate::recovery::{self, CheckpointConfig, Checkpoints, Coordinator};
use crate::runtime::{Cluster, ClusterError, RunContext};
use crate::serve::tap::Taps;
use crate::sink::{KafkaOutput, KafkaRecord, LineSink, OpenOutput, Output, SinkError, produce, write_lines};
use crate::source::{Input, KafkaInput, OpenInput, SourceConfig, SourceError, SourceStats, source};
use crate::state::States;
use crate::stats::{gather_stats, latency_histogram};
use crate::time::Millis;
use crate::time::wall_nanos;
use crate::{Scope, Stream};
use hdrhistogram::Histogram;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concatenate, Probe};

/// A result record the engine can write and time.
pub trait Emitted: Serialize + 'static {
    /// Wall-clock nanoseconds when the newest input behind this record was read (0 if unknown).
    fn ingest_ns(&self) -> u64 {
        0
    }
    /// The event time the record is about (for a window, its end), if it has one.
    fn event_time_ms(&self) -> Option<Millis> {
        None
    }
    /// The key that picks the Kafka partition (records of one key stay in order).
    fn key(&self) -> Option<&str> {
        None
    }
    /// Kafka headers.
    fn headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// A deterministic id: after a restore, records already in an output topic are not sent again.
    fn id(&self) -> Option<String> {
        None
    }
    /// Why the record is a dead letter (None for results).
    fn dead_reason(&self) -> Option<&'static str> {
        None
    }
    /// Writes the record as one line of JSON (without the newline); by default with serde_json. A
    /// type that writes its own must write exactly what serde_json would.
    fn write_json(&self, out: &mut String) -> Result<(), String> {
        out.push_str(&serde_json::to_string(self).map_err(|e| e.to_string())?);
        Ok(())
    }
}

impl Emitted for DeadLetter {
    fn id(&self) -> Option<String> {
        let s = &self.source;
        let name = s.file.as_deref().or(s.topic.as_deref()).unwrap_or_default();
        Some(format!("dead/{name}/{}/{}", s.partition.unwrap_or(0), s.offset))
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("reason", self.reason.as_str().to_owned())]
    }

    fn dead_reason(&self) -> Option<&'static str> {
        Some(self.reason.as_str())
    }
}

/// An output ready to be written by the dataflow.
enum Prepared {
    Lines(OpenOutput),
    Kafka(KafkaOutput),
}

impl Prepared {
    fn new(output: &Output, process: usize, checkpoints: Option<&Arc<Checkpoints>>) -> Result<Self, JobError> {
        Ok(match output {
            Output::Kafka(k) => {
                if process == 0 {
                    k.kafka.ensure_topic(&k.topic, k.partitions)?;
                }
                if let (Some(c), 0) = (checkpoints, process) {
                    c.add_output_topic(&k.kafka, &k.topic);
                }
                Prepared::Kafka(k.clone())
            }
            other => {
                let resume = checkpoints.is_some_and(|c| c.restored().is_some());
                if checkpoints.is_some() && matches!(other, Output::Stdout | Output::Stderr) {
                    tracing::warn!(
                        output = ?other,
                        "this output cannot be rewound: after a restore, lines written after the checkpoint repeat"
                    );
                }
                Prepared::Lines(other.open(process, resume)?)
            }
        })
    }
}

/// Everything a run needs besides the pipeline.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Where records come from.
    pub input: Input,
    /// More inputs of the same record type, read alongside `input` and merged with it (the flight
    /// pipeline's reference-data updates). Decisions name `input` as their source.
    pub side_inputs: Vec<Input>,
    /// How the source reads.
    pub source: SourceConfig,
    /// Where results go.
    pub output: Output,
    /// Where dead letters go.
    pub dead_letter: Output,
    /// Workers and processes.
    pub cluster: Cluster,
    /// Checkpoints (None: the run takes none and restores from none).
    pub checkpoint: Option<CheckpointConfig>,
}

/// What a finished run reports (totals are for the whole cluster on process 0).
#[derive(Debug)]
pub struct JobReport {
    /// Source counters summed over all workers.
    pub source: SourceStats,
    /// Results written.
    pub outputs: u64,
    /// Results the output file already held when a restored run continued it.
    pub outputs_before: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Wall time from start to the end of the last worker.
    pub elapsed: Duration,
    /// Read-to-result latency of this process's results, in microseconds (results forced out by
    /// a stop request are not counted).
    pub latency: Histogram<u64>,
    /// Engine latency: a result leaving minus the moment every local source had passed its event
    /// time (the poll that made it possible), in microseconds.
    pub engine: Histogram<u64>,
    /// Event time to result: wall clock when a result left minus its event time, in microseconds.
    /// For live data (event time ≈ now) this is how long after its window ended a decision came.
    pub lag: Histogram<u64>,
    /// The checkpoint the run restored from.
    pub restored_from: Option<Millis>,
    /// The checkpoint a stop request ended the run at (the run did not drain).
    pub stopped_at: Option<Millis>,
    /// Records not sent because the output topic already had them (after a restore).
    pub skipped: u64,
    /// From the start of the run (a restore included) to its first result, on this process.
    pub first_output: Option<Duration>,
    /// The checkpoints this run committed (process 0).
    pub checkpoints: Vec<recovery::LastCheckpoint>,
}

impl JobReport {
    /// Records read per second of wall time.
    pub fn events_per_sec(&self) -> f64 {
        self.source.records() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A run that could not start or did not finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Bad input path.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Bad output path.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Bad cluster flags.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A Kafka broker refused or could not be reached.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Checkpoints cannot be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A setting that does not work with another.
    #[error("{0}")]
    Config(String),
    /// An operator reported a fatal error.
    #[error("{0}")]
    Failed(String),
}

/// What one worker hands back when its dataflow is done.
struct WorkerResult {
    source: Option<SourceStats>,
    outputs: u64,
    outputs_before: u64,
    dead_letters: u64,
    timing: Histograms,
}

/// Runs `pipeline` over the job's input until the input ends. `pipeline` is called once per
/// worker to build that worker's part of the dataflow. The phases: open the inputs, the
/// checkpoints and the outputs; run every worker ([`run_worker`]); sum the workers' results;
/// commit what was consumed.
pub fn run<E, D, F>(config: &JobConfig, ctx: &RunContext, pipeline: F) -> Result<JobReport, JobError>
where
    E: Event,
    D: Emitted,
    F: for<'s> Fn(&Graph<'s>, Stream<'s, Sourced<E>>) -> Stream<'s, D> + Send + Sync + 'static,
{
    let start_ns = wall_nanos();
    config.cluster.hosts()?;
    let inputs = open_inputs(config)?;
    let checkpoints = open_checkpoints(config, ctx)?;
    let outputs = Outputs::open(config, checkpoints.as_ref())?;
    let (skipped, first_ns) = (outputs.skipped.clone(), outputs.first.clone());
    let job = WorkerJob { inputs, outputs, source: config.source.clone(), ctx: ctx.clone() };
    let started = Instant::now();
    let describe = peer_loss_note(ctx, checkpoints.clone());
    let guards = crate::cluster::execute(&config.cluster, describe, move |worker| run_worker(worker, &job, &pipeline))?;

    let mut report = JobReport {
        source: SourceStats::default(),
        outputs: 0,
        outputs_before: 0,
        dead_letters: 0,
        elapsed: Duration::ZERO,
        latency: latency_histogram(),
        lag: latency_histogram(),
        engine: latency_histogram(),
        restored_from: checkpoints.as_ref().and_then(|c| c.restored().map(|r| r.time)),
        stopped_at: None,
        skipped: 0,
        first_output: None,
        checkpoints: Vec::new(),
    };
    for result in guards.join() {
        let r = result.map_err(|e| JobError::Failed(format!("a worker stopped: {e}")))?;
        if let Some(s) = r.source {
            report.source = s;
        }
        report.outputs += r.outputs;
        report.outputs_before += r.outputs_before;
        report.dead_letters += r.dead_letters;
        let _ = report.latency.add(&r.timing.read);
        let _ = report.lag.add(&r.timing.event);
        let _ = report.engine.add(&r.timing.engine);
    }
    let failures = ctx.failures.take();
    if !failures.is_empty() {
        return Err(JobError::Failed(failures.join("; ")));
    }
    commit_consumed(config, ctx)?;
    report.skipped = skipped.load(Ordering::Relaxed);
    let first = first_ns.load(Ordering::Relaxed);
    report.first_output = (first > 0).then(|| Duration::from_nanos(first.saturating_sub(start_ns)));
    report.stopped_at = checkpoints.as_ref().and_then(|c| c.ended());
    report.checkpoints = checkpoints.as_ref().map(|c| c.history()).unwrap_or_default();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The end of the line printed when a peer is lost: what this process had done, and how to resume.
fn peer_loss_note(ctx: &RunContext, checkpoints: Option<Arc<Checkpoints>>) -> crate::cluster::Describe {
    let progress = ctx.progress.clone();
    Arc::new(move || {
        let read = progress.get();
        match checkpoints.as_ref().map(|c| c.complete()) {
            Some((0, _)) => format!(
                "this process had read {read} records and no checkpoint was complete yet: restart every process with the same command (they start over)"
            ),
            Some((at, dir)) => format!(
                "this process had read {read} records: restart every process with the same command to resume from the last complete checkpoint ({}, in {})",
                crate::time::format_rfc3339(at),
                dir.display()
            ),
            None => format!(
                "this process had read {read} records, and without --checkpoint-dir a restart starts over: restart every process with the same command"
            ),
        }
    })
}

/// Every input of the job opened (the main one first); Kafka input topics exist.
fn open_inputs(config: &JobConfig) -> Result<Vec<OpenInput>, JobError> {
    let mut inputs = Vec::new();
    for input in std::iter::once(&config.input).chain(&config.side_inputs) {
        inputs.push(input.open()?);
        if let (Input::Kafka(k), 0) = (input, config.cluster.process) {
            if k.create {
                k.kafka.ensure_topic(&k.topic, 1)?;
            } else {
                k.kafka.require_topic(&k.topic, "; produce to it first, or pass --create-topics")?;
            }
        }
    }
    Ok(inputs)
}

/// The run's checkpoints, if it takes them (the newest whole one found is restored from).
fn open_checkpoints(config: &JobConfig, ctx: &RunContext) -> Result<Option<Arc<Checkpoints>>, JobError> {
    let Some(c) = &config.checkpoint else { return Ok(None) };
    if std::iter::once(&config.input).chain(&config.side_inputs).any(|i| matches!(i, Input::Stdin)) {
        return Err(JobError::Config(
            "checkpoints need an input that can be read again (a file or a Kafka topic), not stdin".into(),
        ));
    }
    let cluster = &config.cluster;
    let shared = Arc::new(Checkpoints::open(c.clone(), cluster.workers, cluster.processes, cluster.process)?);
    let _ = ctx.checkpoints.set(shared.clone());
    Ok(Some(shared))
}

/// Everything read has left through the sinks (flushed and acknowledged): only now do the
/// consumed offsets become committed, so a restart from `committed` neither skips nor repeats.
fn commit_consumed(config: &JobConfig, ctx: &RunContext) -> Result<(), JobError> {
    let positions = ctx.positions.take();
    for input in std::iter::once(&config.input).chain(&config.side_inputs) {
        if let Input::Kafka(k) = input {
            let own: Vec<_> = positions.iter().filter(|(topic, _, _)| *topic == k.topic).cloned().collect();
            commit(k, &own)?;
        }
    }
    Ok(())
}

/// What every worker of the process gets to build and run its dataflow.
struct WorkerJob {
    inputs: Vec<OpenInput>,
    outputs: Outputs,
    source: SourceConfig,
    ctx: RunContext,
}

/// One worker: builds its graph, refuses to run a graph whose state does not match the checkpoint,
/// steps it to the end (polling the checkpoint coordinator on worker 0), and reports its totals.
fn run_worker<E, D, F>(worker: &mut timely::worker::Worker, job: &WorkerJob, pipeline: &F) -> WorkerResult
where
    E: Event,
    D: Emitted,
    F: for<'s> Fn(&Graph<'s>, Stream<'s, Sourced<E>>) -> Stream<'s, D>,
{
    let ctx = &job.ctx;
    let shared = ctx.checkpoints.get().cloned();
    let index = worker.index();
    let states = States::new(shared.clone(), index, worker.peers(), ctx.failures.clone());
    let taps = Taps::new(ctx.live.get().cloned());
    let built = worker.dataflow::<crate::Millis, _, _>(|scope| {
        let graph = Graph::new(scope, states.clone(), taps);
        build(&graph, &job.inputs, &job.source, &job.outputs, ctx, pipeline)
    });
    let declared = states.declared();
    // A bad declaration, or a graph whose state does not match the checkpoint's, ends the run
    // before it reads anything: every worker builds the same graph and finds the same, and
    // the first worker of each process says why.
    let mut refused = states.errors();
    if let Some(Err(e)) = shared.as_ref().map(|s| s.check_state(&declared)) {
        refused.push(e);
    }
    if !refused.is_empty() {
        if index % job.outputs.workers == 0 {
            refused.into_iter().for_each(|e| ctx.failures.report(e));
        }
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
    }
    ctx.ready.set();
    match &shared {
        None => while worker.step_or_park(None) {},
        Some(shared) => {
            let mut coordinator =
                (index == 0).then(|| Coordinator::new(shared.clone(), &declared, ctx.failures.clone()));
            while worker.step_or_park(Some(Duration::from_millis(1))) {
                if let Some(c) = coordinator.as_mut() {
                    c.poll();
                }
                // A stop request ended the run at a checkpoint: leave without draining (the
                // dataflow is dropped, or timely would wait for it to finish).
                if shared.ended().is_some() {
                    for id in worker.installed_dataflows() {
                        worker.drop_dataflow(id);
                    }
                    break;
                }
            }
        }
    }
    WorkerResult {
        source: (index == 0).then(|| *built.totals.borrow()),
        outputs: built.outputs.written(),
        outputs_before: built.outputs.before(),
        dead_letters: built.dead.written(),
        timing: built.timing.take(),
    }
}

/// Latency histograms, µs: read → result, event time → result, and the engine's own share.
struct Histograms {
    read: Histogram<u64>,
    event: Histogram<u64>,
    engine: Histogram<u64>,
}

/// A worker's [`Histograms`], fed by its result sink while the dataflow runs.
#[derive(Clone)]
struct Timing(Rc<RefCell<Histograms>>);

impl Timing {
    fn new() -> Self {
        Timing(Rc::new(RefCell::new(Histograms {
            read: latency_histogram(),
            event: latency_histogram(),
            engine: latency_histogram(),
        })))
    }

    /// The histograms so far, leaving empty ones.
    fn take(&self) -> Histograms {
        std::mem::replace(
            &mut *self.0.borrow_mut(),
            Histograms { read: latency_histogram(), event: latency_histogram(), engine: latency_histogram() },
        )
    }
}

/// What a worker's built dataflow reports through.
struct Built {
    /// The sources' counters (summed over the workers on worker 0).
    totals: Rc<RefCell<SourceStats>>,
    outputs: LineSink,
    dead: LineSink,
    timing: Timing,
}

/// The outputs as every worker of the process sees them.
struct Outputs {
    output: Prepared,
    dead: Prepared,
    /// Ids already in the output topics (after a restore): not sent again.
    skip: Arc<HashSet<String>>,
    skipped: Arc<AtomicU64>,
    /// Wall-clock ns of the first result (0: none yet).
    first: Arc<AtomicU64>,
    /// Workers per process (the first of each process reports a refused graph).
    workers: usize,
}

impl Outputs {
    fn open(config: &JobConfig, checkpoints: Option<&Arc<Checkpoints>>) -> Result<Self, JobError> {
        let process = config.cluster.process;
        let output = Prepared::new(&config.output, process, checkpoints)?;
        let dead = Prepared::new(&config.dead_letter, process, checkpoints)?;
        let skip = match checkpoints {
            Some(c) => already_written(config, c)?,
            None => HashSet::new(),
        };
        Ok(Outputs {
            output,
            dead,
            skip: Arc::new(skip),
            skipped: Arc::default(),
            first: Arc::default(),
            workers: config.cluster.workers.max(1),
        })
    }
}

/// After a restore, the ids of what the output topics got after the checkpoint: not sent again.
fn already_written(config: &JobConfig, checkpoints: &Checkpoints) -> Result<HashSet<String>, JobError> {
    let offsets = checkpoints.restored_output_offsets()?;
    let mut ids = HashSet::new();
    for output in [&config.output, &config.dead_letter] {
        if let Output::Kafka(k) = output {
            let own: Vec<_> = offsets.iter().filter(|(t, _, _)| *t == k.topic).cloned().collect();
            ids.extend(crate::sink::written_ids(&k.kafka, &own)?);
        }
    }
    if !ids.is_empty() {
        tracing::info!(
            records = ids.len(),
            "records already in the output topics after the checkpoint: not sent again"
        );
    }
    Ok(ids)
}

fn build<'s, E, D, F>(
    graph: &Graph<'s>,
    inputs: &[OpenInput],
    source_config: &SourceConfig,
    sinks: &Outputs,
    ctx: &RunContext,
    pipeline: &F,
) -> Built
where
    E: Event,
    D: Emitted,
    F: for<'a> Fn(&Graph<'a>, Stream<'a, Sourced<E>>) -> Stream<'a, D>,
{
    let scope = graph.scope();
    // The outputs' probe: how far results (and dead letters) are handed over, or with Kafka
    // acknowledged. Sources use it to commit offsets and to pause when the graph lags behind.
    let probe = ProbeHandle::new();
    let (mut events, mut dead, mut stats) = (Vec::new(), Vec::new(), Vec::new());
    for input in inputs {
        let src = source::<E>(graph, input, source_config, ctx, &probe);
        events.push(src.events);
        dead.push(src.dead);
        stats.push(src.stats);
    }
    let results = pipeline(graph, merged(scope, events));
    let timing = Timing::new();
    let outputs = emit(
        graph,
        results,
        Target { state: "output", output: &sinks.output, timing: Some(timing.clone()) },
        sinks,
        ctx,
        &probe,
    );
    let dead = merged(scope, dead);
    let stats = merged(scope, stats);
    if graph.taps().serving() {
        graph.taps().dead_letters(dead.clone().map(|d: DeadLetter| d.reason.as_str().to_owned()));
        graph.taps().source_stats(stats.clone());
    }
    let dead =
        emit(graph, dead, Target { state: "dead-letter", output: &sinks.dead, timing: None }, sinks, ctx, &probe);
    Built { totals: gather_stats(stats), outputs, dead, timing }
}

/// One stream of all of `streams` (the one itself when there is one).
fn merged<'s, D: 'static>(scope: Scope<'s>, mut streams: Vec<Stream<'s, D>>) -> Stream<'s, D> {
    if streams.len() == 1 {
        if let Some(only) = streams.pop() {
            return only;
        }
    }
    scope.concatenate(streams)
}

/// One output of the graph: its checkpoint state's prefix, where it goes, and (for results,
/// not dead letters) the latency histograms it feeds.
struct Target<'a> {
    state: &'a str,
    output: &'a Prepared,
    timing: Option<Timing>,
}

/// Formats results as JSON and hands them to their sink, timing read → result on the way.
fn emit<'s, D: Emitted>(
    graph: &Graph<'s>,
    stream: Stream<'s, D>,
    target: Target<'_>,
    sinks: &Outputs,
    ctx: &RunContext,
    probe: &ProbeHandle<Millis>,
) -> LineSink {
    let Target { state, output, timing } = target;
    let failures = ctx.failures.clone();
    let latency_is_some = timing.is_some();
    let (stop, clock) = (ctx.stop.clone(), ctx.clock.clone());
    let (outputs, read_seconds) = (metrics::counter!(names::OUTPUTS), metrics::histogram!(names::LATENCY));
    let first = sinks.first.clone();
    let format = move |r: &D| {
        if timing.is_some() && first.load(Ordering::Relaxed) == 0 {
            let _ = first.compare_exchange(0, wall_nanos(), Ordering::Relaxed, Ordering::Relaxed);
        }
        match r.dead_reason() {
            Some(reason) => metrics::counter!(names::DEAD_LETTERS, "reason" => reason).increment(1),
            None => outputs.increment(1),
        }
        // Results forced out by a stop request waited for the stop, not for the engine: not timed.
        if let (Some(timing), false) = (&timing, stop.requested()) {
            let now = wall_nanos();
            let h = &mut *timing.0.borrow_mut();
            if r.ingest_ns() > 0 {
                let took = now.saturating_sub(r.ingest_ns());
                let _ = h.read.record((took / 1_000).max(1));
                read_seconds.record(took as f64 / 1e9);
            }
            if let Some(t) = r.event_time_ms() {
                if t.saturating_mul(1_000_000) <= now {
                    // Out-of-range values (old data replayed) are dropped by the histogram's bounds.
                    let _ = h.event.record(((now - t * 1_000_000) / 1_000).max(1));
                }
                // The result for time t needed every source past t - 1.
                if let Some(possible) = clock.passed(t.saturating_sub(1)) {
                    let _ = h.engine.record((now.saturating_sub(possible) / 1_000).max(1));
                }
            }
        }
        to_line(r, &failures)
    };
    // Results (not dead letters) go to the live view too, as the lines written.
    let live = latency_is_some && graph.taps().serving();
    match output {
        Prepared::Lines(open) => {
            let lines = stream.flat_map(move |r: D| format(&r));
            if live {
                graph.taps().decisions(lines.clone());
            }
            write_lines(graph, lines.probe_with(probe), open, &format!("{state}-lines"), ctx)
        }
        Prepared::Kafka(k) => {
            let (skip, skipped) = (sinks.skip.clone(), sinks.skipped.clone());
            let records = stream.flat_map(move |r: D| {
                let id = r.id();
                if id.as_ref().is_some_and(|id| skip.contains(id)) {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                format(&r).map(|payload| KafkaRecord {
                    key: r.key().map(str::to_owned),
                    payload,
                    headers: r.headers(),
                    id,
                })
            });
            if live {
                graph.taps().decisions(records.clone().map(|r: KafkaRecord| r.payload));
            }
            let (sink, durable) = produce(records, k, ctx);
            let durable = durable.probe_with(probe);
            // A checkpoint is whole only once everything before it is acknowledged by the broker.
            let mut state = graph.state(&format!("{state}-kafka"), 1);
            if state.saved() {
                durable.sink(Pipeline, "KafkaDurable", move |(input, frontier)| {
                    input.for_each(|_, _| {});
                    state.offer(frontier.frontier().first().copied(), |_| crate::checkpoint::encode(&()));
                });
            }
            sink
        }
    }
}

/// Commits the next offsets of every partition read, for the input's consumer group.
fn commit(input: &KafkaInput, positions: &[(String, i32, i64)]) -> Result<(), KafkaError> {
    if positions.is_empty() {
        return Ok(());
    }
    let k = &input.kafka;
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, next) in positions {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)).map_err(|e| k.error(e.to_string()))?;
    }
    let committer = Committer::start(k, &input.group)?;
    committer.commit(tpl);
    committer.finish(Duration::from_secs(30))?;
    tracing::info!(group = %input.group, ?positions, "committed offsets");
    Ok(())
}

fn to_line<T: Emitted>(record: &T, failures: &crate::signals::Failures) -> Option<String> {
    thread_local! {
        // The last line's length: sizing the buffer once saves the reallocations of growing it
        // (a tenth of a flight decision's cost).
        static LAST: std::cell::Cell<usize> = const { std::cell::Cell::new(256) };
    }
    let mut buf = String::with_capacity(LAST.get() + LAST.get() / 4);
    let formatted = record.write_json(&mut buf).map(|()| buf);
    match formatted {
        Ok(line) => {
            LAST.set(line.len());
            Some(line)
        }
        Err(e) => {
            failures.report(format!("cannot format a result as JSON (a bug): {e}"));
            None
        }
    }
}
