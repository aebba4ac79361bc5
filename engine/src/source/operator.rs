//! The source operator shared by every feed: it asks the feed for a batch, emits the batch's events
//! at the source's current time (never later than any of their event times), then moves its
//! capability to the feed's low watermark, and drops it when the feed is done.

use super::file::FileFeed;
use super::kafka::KafkaFeed;
use super::lines::Batch;
use super::stdin::StdinFeed;
use super::{OpenInput, SourceConfig, SourceStats};
use crate::dead_letter::DeadLetter;
use crate::event::{Event, Sourced};
use crate::runtime::RunContext;
use crate::time::Millis;
use crate::{Scope, Stream};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

/// How long an idle source waits before polling again.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(2);

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
    scope: Scope<'scope>,
    input: &OpenInput,
    config: &SourceConfig,
    ctx: &RunContext,
    outputs: &ProbeHandle<Millis>,
) -> SourceStreams<'scope, E> {
    let mut builder = OperatorBuilder::new("Source".to_owned(), scope);
    let address = builder.operator_info().address;
    let (events_out, events) = builder.new_output::<Vec<Sourced<E>>>();
    let (dead_out, dead) = builder.new_output::<Vec<DeadLetter>>();
    let (stats_out, stats) = builder.new_output::<Vec<SourceStats>>();
    let mut events_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(events_out);
    let mut dead_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(dead_out);
    let mut stats_out = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(stats_out);

    let (index, peers) = (scope.index(), scope.peers());
    let mut feed: Option<Box<dyn Feed<E>>> = match input {
        OpenInput::File { map: Some(map), name } => Some(Box::new(FileFeed::<E>::new(
            map.clone(),
            name.clone(),
            index,
            peers,
            config.chunk_size,
            config.lateness,
            config.batch_bytes,
        ))),
        OpenInput::Stdin if index == 0 => {
            let activator = scope.worker().sync_activator_for(address.to_vec());
            Some(Box::new(StdinFeed::<E>::start(activator, config.lateness)))
        }
        OpenInput::Kafka(k) => match KafkaFeed::<E>::new(k, index, peers, config, outputs.clone()) {
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
    let (outputs, max_lag) = (outputs.clone(), config.max_lag);

    let events_in = metrics::counter!(crate::metrics::names::EVENTS_IN);
    builder.build(move |caps| {
        let mut caps = Some(caps);
        let mut batch = Batch::new();
        let mut totals = SourceStats::default();
        move |_frontiers| {
            let Some(held) = caps.as_mut() else { return };
            let floor = *held[0].time();
            let polled = crate::time::wall_nanos();
            // Flow control: while the outputs lag more than `max_lag` behind, or a buffer downstream
            // is full, read nothing.
            let lagging = (max_lag > 0 && outputs.less_than(&floor.saturating_sub(max_lag))) || ctx.pressure.engaged();
            let state = if ctx.stop.requested() {
                FeedState::Done
            } else if lagging {
                FeedState::Idle
            } else {
                feed.as_mut().map_or(FeedState::Done, |f| f.fill(floor, &mut batch))
            };
            if !batch.events.is_empty() {
                events_out.activate().session(&held[0]).give_container(&mut batch.events);
            }
            if !batch.dead.is_empty() {
                dead_out.activate().session(&held[1]).give_container(&mut batch.dead);
            }
            ctx.progress.add(batch.stats.records());
            if batch.stats.events > 0 {
                events_in.increment(batch.stats.events);
            }
            totals.add(&batch.stats);
            batch.stats = SourceStats::default();
            if let Some(message) = feed.as_mut().and_then(|f| f.failure()) {
                ctx.failures.report(message);
            }
            match feed.as_ref().and_then(|f| f.low_watermark()) {
                Some(low) if state != FeedState::Done => {
                    if low > floor {
                        ctx.clock.advanced(index, low, polled);
                    }
                    for cap in held.iter_mut() {
                        let to = low.max(*cap.time());
                        cap.downgrade(&to);
                    }
                }
                _ => {
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
            match state {
                FeedState::More => activator.activate(),
                FeedState::Idle => activator.activate_after(IDLE_POLL),
                FeedState::Waiting | FeedState::Done => {}
            }
        }
    });

    SourceStreams { events, dead, stats }
}
