//! The source operator shared by every feed: it asks the feed for a batch, emits the batch's events
//! at the source's current time (never later than any of their event times), then moves its
//! capability to the feed's low watermark, and drops it when the feed is done.

use super::file::FileFeed;
use super::kafka::KafkaFeed;
use super::lines::Batch;
use super::stdin::StdinFeed;
use super::{OpenInput, Restart, SourceConfig, SourceStats, SplitState};
use crate::Stream;
use crate::dead_letter::DeadLetter;
use crate::event::{Event, Sourced};
use crate::runtime::RunContext;
use crate::time::Millis;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

/// How long an idle source waits before polling again.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// How often a source stopped at a checkpoint time looks whether the checkpoint is committed.
const BARRIER_POLL: std::time::Duration = std::time::Duration::from_micros(200);

/// How often a source sends its counters downstream while it reads.
const STATS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What a feed can say after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FeedState {
    /// More input is ready: schedule the source again.
    More,
    /// Nothing ready now; the feed wakes the source itself.
    Waiting,
    /// Nothing ready now; poll again shortly.
    Idle,
    /// The input is exhausted.
    Done,
}

/// A reader of one kind of input, driven by the source operator.
pub(crate) trait Feed<E> {
    /// Reads the next batch into `out`; records older than `floor` (the source's time) are late.
    fn fill(&mut self, floor: Millis, out: &mut Batch<E>) -> FeedState;
    /// The lowest event time an on-time record still to come can have (None once done).
    fn low_watermark(&self) -> Option<Millis>;
    /// A fatal input error, reported once.
    fn failure(&mut self) -> Option<String> {
        None
    }
    /// Called once when the source stops (end of input or a stop request).
    fn finish(&mut self) {}
    /// For partitioned sources: the next offset to read of each partition owned.
    fn positions(&self) -> Vec<(i32, i64)> {
        Vec::new()
    }
    /// Where each split owned continues (None: the feed cannot be replayed, e.g. stdin).
    fn splits(&self) -> Vec<SplitState> {
        Vec::new()
    }
    /// The event time this worker may run ahead of the others when no `max_lag` is set (see
    /// [`super::FileSkew`]); None: no bound.
    fn skew_bound(&self) -> Option<Millis> {
        None
    }
}

/// The split states saved by every worker of a source in the checkpoint restored from (each
/// worker claims its own by id).
fn restart(state: &crate::state::State) -> Option<Restart> {
    state.restoring().then(|| state.restore_all::<SplitState>().into_iter().map(|s| (s.id, s)).collect())
}

/// The streams a source produces.
pub struct SourceStreams<'scope, E> {
    /// On-time events, each at a time no later than its event time.
    pub events: Stream<'scope, Sourced<E>>,
    /// Malformed, invalid and late records.
    pub dead: Stream<'scope, DeadLetter>,
    /// One record of counters per worker, sent when that worker's part of the source is finished.
    pub stats: Stream<'scope, SourceStats>,
}

/// Builds the source for `input` in `scope`: every worker reads its share (file chunks, or stdin
/// on worker 0) and parses it into `E`.
pub fn source<'scope, E: Event>(
    graph: &crate::Graph<'scope>,
    input: &OpenInput,
    config: &SourceConfig,
    ctx: &RunContext,
    outputs: &ProbeHandle<Millis>,
) -> SourceStreams<'scope, E> {
    let scope = graph.scope();
    let mut builder = OperatorBuilder::new("Source".to_owned(), scope);
    let address = builder.operator_info().address;
    let (events_out, events) = builder.new_output::<Vec<Sourced<E>>>();
    let (dead_out, dead) = builder.new_output::<Vec<DeadLetter>>();
    let (stats_out, stats) = builder.new_output::<Vec<SourceStats>>();
    let mut events_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(events_out);
    let mut dead_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(dead_out);
    let mut stats_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(stats_out);

    let (index, peers) = (scope.index(), scope.peers());
    // Each source of the graph is its own state: the first "source", then "source-1", ...
    let sources = graph.states().declared().iter().filter(|d| d.name.starts_with("source")).count();
    let name = if sources == 0 { "source".to_owned() } else { format!("source-{sources}") };
    let mut part = graph.state(&name, 1);
    let restart = restart(&part);
    let mut feed: Option<Box<dyn Feed<E>>> = match input {
        OpenInput::File { map: Some(map), name, lines } => Some(Box::new(FileFeed::<E>::new(
            map.clone(),
            lines.clone(),
            name.clone(),
            index,
            peers,
            config.chunk_size,
            config.lateness,
            config.batch_bytes,
            restart.as_ref(),
        ))),
        OpenInput::Stdin if index == 0 => {
            let activator = scope.worker().sync_activator_for(address.to_vec());
            Some(Box::new(StdinFeed::<E>::start(activator, config.lateness)))
        }
        OpenInput::Kafka(k) => match KafkaFeed::<E>::new(k, index, peers, config, outputs.clone(), restart.as_ref()) {
            Ok(feed) => Some(Box::new(feed)),
            Err(e) => {
                ctx.failures.report(e.to_string());
                None
            }
        },
        _ => None,
    };
    let topic = match input {
        OpenInput::Kafka(k) => Some(k.topic.clone()),
        _ => None,
    };
    let activator = scope.activator_for(address);
    let ctx = ctx.clone();
    let max_lag = match (config.max_lag, config.file_skew) {
        (0, super::FileSkew::Bounded) => feed.as_ref().and_then(|f| f.skew_bound()).unwrap_or(0),
        (lag, _) => lag,
    };
    let (outputs, replay) = (outputs.clone(), config.replay_speed);

    let events_in = metrics::counter!(crate::metrics::names::EVENTS_IN);
    let ckpt = part.checkpoints().cloned();
    let restored_at = ckpt.as_ref().map(|c| c.restored_time()).filter(|t| *t > 0);
    builder.build(move |mut caps| {
        // A restored source continues at the checkpoint's time: nothing before it is sent again.
        if let Some(t) = restored_at {
            caps.iter_mut().for_each(|c| c.downgrade(&t));
        }
        let mut caps = Some(caps);
        let mut batch = Batch::new();
        // Counters since they were last sent.
        let mut totals = SourceStats::default();
        let mut reported = std::time::Instant::now();
        // The checkpoint time this source stopped at, until that checkpoint is committed.
        let mut holding: Option<Millis> = None;
        // A run that failed cannot complete a checkpoint: its sources end instead of waiting.
        let mut failed = false;
        // A batch read while waiting for a checkpoint, with what the feed said after it.
        let mut preread: Option<FeedState> = None;
        let splits = |feed: &Option<Box<dyn Feed<E>>>| {
            let splits = feed.as_ref().map(|f| f.splits()).unwrap_or_default();
            crate::checkpoint::encode(&splits)
        };
        move |_frontiers| {
            let Some(held) = caps.as_mut() else { return };
            if let (Some(m), Some(c)) = (holding, &ckpt) {
                holding = None;
                if c.is_committed(m) {
                    if c.ending_at() == Some(m) {
                        // The run ends at this checkpoint (a stop request): read nothing more.
                        return;
                    }
                } else if ctx.failures.peek().is_empty() {
                    holding = Some(m);
                    // Parse the next batch while the checkpoint completes (it is sent once the
                    // checkpoint is committed, read at the same time as it would be after).
                    if preread.is_none() && !ctx.stop.requested() {
                        preread = Some(feed.as_mut().map_or(FeedState::Done, |f| f.fill(m, &mut batch)));
                    }
                    activator.activate_after(BARRIER_POLL);
                    return;
                } else {
                    failed = true;
                }
            }
            let floor = *held[0].time();
            // A stop request with checkpoints ends the run at the next checkpoint time instead of
            // draining: reading goes on until every source reaches it (records before it must
            // all be read), windows still open there are not forced out, a restart continues them.
            let ending = match (ctx.stop.requested(), failed, &ckpt) {
                (true, false, Some(c)) => Some(c.end_at(c.next_after(floor))),
                _ => None,
            };
            let polled = crate::time::wall_nanos();
            // Flow control: while the outputs lag more than `max_lag` behind, or a buffer downstream
            // is full, read nothing.
            let lagging = (max_lag > 0 && outputs.less_than(&floor.saturating_sub(max_lag))) || ctx.pressure.engaged();
            // A replay reads nothing past the event time due now (a watermark of 0: nothing read yet).
            let paced = replay.is_some_and(|speed| {
                let wm = feed.as_ref().and_then(|f| f.low_watermark()).unwrap_or(0);
                wm > 0 && ctx.pace.wait(wm, speed).is_some()
            });
            let state = if (ctx.stop.requested() && ending.is_none()) || failed {
                FeedState::Done
            } else if let Some(state) = preread.take() {
                state
            } else if lagging || paced {
                FeedState::Idle
            } else {
                batch.reserve();
                feed.as_mut().map_or(FeedState::Done, |f| f.fill(floor, &mut batch))
            };
            if !batch.events.is_empty() || !batch.dead.is_empty() {
                part.applied(floor);
            }
            if !batch.events.is_empty() {
                batch.sending();
                events_out.activate().session(&held[0]).give_container(&mut batch.events);
            }
            if !batch.dead.is_empty() {
                // Before the next checkpoint time: the checkpoint's split offsets count these
                // lines as read, so their dead letters must be in the outputs it covers.
                let before = ckpt.as_ref().map_or(Millis::MAX, |c| c.next_after(floor) - 1);
                let mut out = dead_out.activate();
                for (dead, at) in batch.dead.drain(..).zip(batch.dead_at.drain(..)) {
                    out.session(&held[1].delayed(&at.min(before).max(floor))).give(dead);
                }
            }
            ctx.progress.add(batch.stats.records());
            if batch.stats.events > 0 {
                events_in.increment(batch.stats.events);
            }
            totals.add(&batch.stats);
            batch.stats = SourceStats::default();
            // Counters go out as the source reads (the live view shows them), not only at the end.
            if totals != SourceStats::default() && reported.elapsed() >= STATS_EVERY {
                stats_out.activate().session(&held[2]).give(std::mem::take(&mut totals));
                reported = std::time::Instant::now();
            }
            if let Some(message) = feed.as_mut().and_then(|f| f.failure()) {
                ctx.failures.report(message);
            }
            match feed.as_ref().and_then(|f| f.low_watermark()) {
                Some(low) if state != FeedState::Done => {
                    let mut to = low.max(floor);
                    // Never past a checkpoint time in one step: stop there until it is committed.
                    let mut barrier = ckpt.as_ref().and_then(|c| c.multiple_in(floor, to));
                    if let Some(end) = ending.filter(|end| *end > floor && *end <= to) {
                        barrier = Some(end);
                    }
                    if let (Some(m), true) = (barrier, part.saved()) {
                        to = m;
                        part.offer(Some(m), |_| splits(&feed));
                        holding = Some(m);
                    }
                    if to > floor {
                        ctx.clock.advanced(index, to, polled);
                    }
                    for cap in held.iter_mut() {
                        cap.downgrade(&to);
                    }
                }
                _ => {
                    part.offer(None, |_| splits(&feed));
                    if let Some(f) = feed.as_mut() {
                        f.finish();
                        if let Some(topic) = &topic {
                            ctx.positions.record(topic, &f.positions());
                        }
                    }
                    stats_out.activate().session(&held[2]).give(totals);
                    caps = None;
                    return;
                }
            }
            match (holding, state) {
                (Some(_), _) => activator.activate_after(BARRIER_POLL),
                (None, FeedState::More) => activator.activate(),
                (None, FeedState::Idle) => activator.activate_after(IDLE_POLL),
                (None, FeedState::Waiting | FeedState::Done) => {}
            }
        }
    });

    SourceStreams { events, dead, stats }
}
