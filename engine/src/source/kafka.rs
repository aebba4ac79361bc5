//! Reading a Kafka topic: the topic's partitions are spread over all workers of all processes
//! (`partition % peers == index`, assigned manually so the spread is deterministic), each worker
//! polls its consumers (one per partition it owns) without blocking and parses payloads in place.
//! Every partition has its own watermark; a partition silent for longer than the idle timeout
//! stops holding windows back. A bounded source reads up to the end offsets found at start and
//! then finishes like a file.

use super::lines::{Batch, accept};
use super::operator::{Feed, FeedState};
use super::{Restart, SourceConfig, SplitState};
use crate::dead_letter::{Position, SourceName};
use crate::event::Event;
use crate::kafka::Committer;
use crate::kafka::EndAwareConsumer;
use crate::kafka::{KafkaConfig, KafkaError};
use crate::time::{Millis, wall_nanos};
use crate::watermark::Watermark;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;

/// Where a Kafka source starts reading each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest retained record.
    Earliest,
    /// Only records produced after the start.
    Latest,
    /// The group's committed offset (earliest where none).
    Committed,
    /// The first record at or after this time (ms since the epoch).
    Timestamp(Millis),
}

/// A Kafka input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaInput {
    /// Connection.
    pub kafka: KafkaConfig,
    /// Topic to read.
    pub topic: String,
    /// Consumer group (for committed offsets).
    pub group: String,
    /// Start position.
    pub from: StartFrom,
    /// Stop at the end offsets found at start.
    pub bounded: bool,
    /// A partition with no record for this long no longer holds the watermark back.
    pub idle_timeout: Duration,
    /// Create the topic when it does not exist (otherwise that is an error: a typo'd topic would
    /// read nothing and succeed).
    pub create: bool,
}

struct Partition {
    id: i32,
    wm: Watermark,
    next: i64,
    /// Bounded runs: the high watermark found at start.
    end: Option<i64>,
    last_seen: Instant,
    /// (settle bucket, first offset in it), in offset order: what is read but not yet settled.
    unsettled: VecDeque<(Millis, i64)>,
    committed: i64,
    /// The log's first offset when assigned.
    low: i64,
    /// Until the first record arrives: where the fetch started (see [`KafkaFeed::check_start`]).
    fetching_from: Option<i64>,
    /// Bounded runs: the position at which the broker last said the partition has nothing more
    /// (librdkafka's partition EOF); equal to `next` while nothing was read since.
    eof_at: Option<i64>,
}

/// This worker's partitions of a topic.
pub(crate) struct KafkaFeed<E> {
    /// One consumer per owned partition (up to [`MAX_FETCHERS`]), polled in turn.
    consumers: Vec<EndAwareConsumer>,
    /// Which consumer to poll first next time (so none is starved).
    turn: usize,
    /// Commits in offset order on a thread of its own (a synchronous commit may wait long).
    committer: Option<Committer>,
    name: SourceName,
    parts: Vec<Partition>,
    /// Partition id → index into `parts`.
    slot: Vec<Option<usize>>,
    idle_timeout: Duration,
    max_batch: usize,
    errors: u64,
    topic: String,
    /// The outputs' probe: its frontier is how far outputs are acknowledged.
    outputs: ProbeHandle<Millis>,
    settle: Millis,
    last_commit: Instant,
    last_read: Instant,
    /// Bounded runs: when the unconfirmed partitions were last fetched afresh (see `fill`).
    last_refetch: Instant,
    bounded: bool,
    done: bool,
    _event: PhantomData<E>,
}

/// How long a bounded source that reached its end offsets waits for the broker to confirm the end
/// (a partition EOF) before it stops anyway, with a warning.
const BOUNDED_UNCONFIRMED: Duration = Duration::from_secs(30);

/// How long a bounded source past its end offsets waits without records or a confirmed end before
/// it fetches the unconfirmed partitions afresh from their next offset.
const BOUNDED_REFETCH: Duration = Duration::from_secs(3);

/// How often offsets of settled records are committed while a run goes on.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

const TIMEOUT: Duration = Duration::from_secs(10);

/// Most consumers per worker. librdkafka keeps one fetch in flight per broker connection, so a
/// worker with one consumer for several partitions waits a round trip per fetch for all of them;
/// a consumer per partition fetches them in parallel (tansu, 4 partitions, 2 workers: a backfill
/// went from ≈ 225 k to ≈ 370 k events/s).
const MAX_FETCHERS: usize = 8;

/// The first record after a start inside the log must not be past the start offset. tansu 0.6
/// answers a fetch that starts inside a record batch with the next batch, skipping the rest
/// of that one; then fetch again from further back (records before the start are skipped as
/// read) until the start is covered. Apache Kafka never needs this. Returns whether the
/// record may be used.
fn check_start(part: &mut Partition, consumer: &EndAwareConsumer, topic: &str, offset: i64) -> bool {
    let Some(from) = part.fetching_from else { return true };
    if offset <= part.next || from <= part.low {
        part.fetching_from = None;
        return true;
    }
    let back = (part.next - from).max(0) * 4 + 1_000;
    let again = part.next.saturating_sub(back).max(part.low);
    tracing::debug!(
        partition = part.id,
        start = part.next,
        got = offset,
        again,
        "the broker skipped records after the start offset; fetching from further back"
    );
    part.fetching_from = Some(again);
    if let Err(e) = consumer.seek(topic, part.id, Offset::Offset(again), Duration::from_secs(10)) {
        tracing::warn!(partition = part.id, error = %e, "seeking back failed");
        part.fetching_from = None;
        return true;
    }
    false
}

/// A partition's low and high offsets. A partition whose leader is moving or briefly down answers
/// with an error for a moment: ask again until [`TIMEOUT`] rather than failing the start.
fn watermarks(consumer: &EndAwareConsumer, topic: &str, partition: i32) -> rdkafka::error::KafkaResult<(i64, i64)> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match consumer.fetch_watermarks(topic, partition, TIMEOUT) {
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(topic, partition, error = %e, "reading offsets failed, asking again");
                std::thread::sleep(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

impl<E: Event> KafkaFeed<E> {
    /// Connects and assigns the partitions of worker `index` of `peers`.
    pub fn new(
        input: &KafkaInput,
        index: usize,
        peers: usize,
        config: &SourceConfig,
        outputs: ProbeHandle<Millis>,
        restart: Option<&Restart>,
    ) -> Result<Self, KafkaError> {
        let lateness = config.lateness;
        let k = &input.kafka;
        let new_consumer = || -> Result<EndAwareConsumer, KafkaError> {
            k.client_config(&[
                ("group.id", input.group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                // A bounded read ends when the broker says each partition has nothing more.
                ("enable.partition.eof", if input.bounded { "true" } else { "false" }),
                ("fetch.wait.max.ms", "10"),
            ])
            .create_with_context(crate::kafka::EndAware)
            .map_err(|e| k.error(format!("cannot create a consumer: {e}")))
        };
        let consumer = new_consumer()?;
        let count = k.partitions(&consumer, &input.topic, TIMEOUT)?;
        let owned: Vec<i32> = (0..count).filter(|p| *p as usize % peers == index).collect();
        let mut parts = Vec::new();
        let mut tpl = TopicPartitionList::new();
        let committed = if input.from == StartFrom::Committed && !owned.is_empty() {
            let mut q = TopicPartitionList::new();
            owned.iter().for_each(|p| {
                q.add_partition(&input.topic, *p);
            });
            Some(
                consumer
                    .committed_offsets(q, TIMEOUT)
                    .map_err(|e| k.error(format!("reading committed offsets: {e}")))?,
            )
        } else {
            None
        };
        let by_time = match input.from {
            StartFrom::Timestamp(ms) if !owned.is_empty() => {
                let mut q = TopicPartitionList::new();
                for p in &owned {
                    q.add_partition_offset(&input.topic, *p, Offset::Offset(ms as i64))
                        .map_err(|e| k.error(e.to_string()))?;
                }
                Some(consumer.offsets_for_times(q, TIMEOUT).map_err(|e| {
                    k.error(format!("looking up offsets by timestamp failed (the broker may not support it): {e}"))
                })?)
            }
            _ => None,
        };
        for p in owned {
            let (low, high) = watermarks(&consumer, &input.topic, p)
                .map_err(|e| k.error(format!("reading offsets of {}/{p}: {e}", input.topic)))?;
            let found = |list: &Option<TopicPartitionList>| {
                list.as_ref().and_then(|l| l.find_partition(&input.topic, p)).and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    Offset::End => Some(high),
                    _ => None,
                })
            };
            let saved = restart.and_then(|r| r.get(&(p as u64)));
            let start = match input.from {
                StartFrom::Earliest => low,
                StartFrom::Latest => high,
                StartFrom::Committed => found(&committed).unwrap_or(low),
                StartFrom::Timestamp(_) => found(&by_time).unwrap_or(high),
            }
            // Not clamped to `high`: tansu 0.6 under-reports it (see `fill`), and a committed
            // offset past it is real. Offsets below the log start are gone; start at the start.
            .max(low);
            // A checkpoint's replay point wins over `--from`.
            let start = saved.map_or(start, |s| s.offset as i64);
            if saved.is_some_and(|s| (s.offset as i64) < low) {
                return Err(k.error(format!(
                    "the checkpoint continues {}/{p} at offset {start}, but the log now starts at {low} (records were deleted)",
                    input.topic
                )));
            }
            tpl.add_partition_offset(&input.topic, p, Offset::Offset(start)).map_err(|e| k.error(e.to_string()))?;
            parts.push(Partition {
                id: p,
                wm: saved.map_or(Watermark::new(lateness, 0), |s| s.wm),
                next: start,
                end: input.bounded.then_some(high),
                last_seen: Instant::now(),
                unsettled: VecDeque::new(),
                committed: start,
                low,
                fetching_from: (start > low).then_some(start),
                eof_at: None,
            });
        }
        // Partition i goes to consumer i % fetchers; the first consumer is the one made above.
        let fetchers = parts.len().clamp(1, MAX_FETCHERS);
        let mut lists = vec![TopicPartitionList::new(); fetchers];
        for (i, e) in tpl.elements().iter().enumerate() {
            lists[i % fetchers]
                .add_partition_offset(&input.topic, e.partition(), e.offset())
                .map_err(|e| k.error(e.to_string()))?;
        }
        let mut consumers = vec![consumer];
        while consumers.len() < fetchers {
            consumers.push(new_consumer()?);
        }
        for (c, list) in consumers.iter().zip(&lists) {
            c.assign(list).map_err(|e| k.error(format!("assigning partitions: {e}")))?;
        }
        let mut slot = vec![None; count as usize];
        for (i, p) in parts.iter().enumerate() {
            slot[p.id as usize] = Some(i);
        }
        tracing::info!(topic = %input.topic, partitions = ?parts.iter().map(|p| (p.id, p.next)).collect::<Vec<_>>(), "kafka source assigned");
        Ok(KafkaFeed {
            consumers,
            turn: 0,
            name: SourceName::Topic(Arc::from(input.topic.as_str())),
            parts,
            slot,
            idle_timeout: input.idle_timeout,
            max_batch: 256,
            errors: 0,
            topic: input.topic.clone(),
            committer: Some(Committer::start(k, &input.group)?),
            outputs,
            settle: config.settle.max(1),
            last_commit: Instant::now(),
            last_read: Instant::now(),
            last_refetch: Instant::now(),
            bounded: input.bounded,
            done: false,
            _event: PhantomData,
        })
    }

    /// Fetches every partition that is not confirmed read to its end afresh from its next offset.
    /// A fetch that went astray (once, on a loaded CI machine, a partition's tail did not come
    /// for 30 s) then starts over; with the start check, records skipped by tansu are fetched
    /// again from further back.
    fn refetch_unconfirmed(&mut self) {
        if self.last_refetch.elapsed() < BOUNDED_REFETCH {
            return;
        }
        self.last_refetch = Instant::now();
        let fetchers = self.consumers.len();
        for (i, part) in self.parts.iter_mut().enumerate() {
            if part.eof_at == Some(part.next) {
                continue;
            }
            tracing::debug!(partition = part.id, next = part.next, end = ?part.end, "no end report yet: fetching afresh");
            match self.consumers[i % fetchers].seek(&self.topic, part.id, Offset::Offset(part.next), TIMEOUT) {
                Ok(()) => part.fetching_from = Some(part.next),
                Err(e) => tracing::debug!(partition = part.id, error = %e, "fetching afresh failed"),
            }
        }
    }

    fn finished(p: &Partition) -> bool {
        p.end.is_some_and(|end| p.next >= end)
    }

    /// Waits for this source's commits to be answered, so the run's final commit lands last.
    fn settle_commits(&mut self) {
        if let Some(c) = self.committer.take() {
            if let Err(e) = c.finish(Duration::from_secs(30)) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Commits, per partition, the first offset whose outputs are not all acknowledged yet: a
    /// record is settled once the acknowledged frontier has passed its settle bucket's end.
    fn commit_settled(&mut self) {
        self.last_commit = Instant::now();
        let durable = self.outputs.with_frontier(|f| f.first().copied()).unwrap_or(Millis::MAX);
        let mut tpl = TopicPartitionList::new();
        for p in &mut self.parts {
            while p.unsettled.front().is_some_and(|(bucket, _)| bucket.saturating_add(self.settle) <= durable) {
                p.unsettled.pop_front();
            }
            let upto = p.unsettled.front().map_or(p.next, |(_, first)| *first);
            if upto > p.committed && tpl.add_partition_offset(&self.topic, p.id, Offset::Offset(upto)).is_ok() {
                p.committed = upto;
            }
        }
        tracing::debug!(durable, commits = ?tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>(), "committing settled offsets");
        if let (true, Some(c)) = (tpl.count() > 0, &self.committer) {
            c.commit(tpl);
        }
    }
}

impl<E: Event> Feed<E> for KafkaFeed<E> {
    fn fill(&mut self, floor: Millis, out: &mut Batch<E>) -> FeedState {
        let ingest = wall_nanos();
        let now = Instant::now();
        // After a time when every partition was idle, give all of them a fresh idle timeout: the
        // consumer fetches partitions one after another, and the first one to deliver must not
        // make the others' (older) records late just because they come a moment later.
        let all_idle = self.parts.iter().all(|p| p.last_seen.elapsed() >= self.idle_timeout);
        let mut read = 0;
        let mut empty = 0;
        let n = self.consumers.len();
        // Poll the consumers in turn until the batch is full or each has nothing ready.
        while read < self.max_batch && empty < n {
            let consumer = &self.consumers[self.turn];
            self.turn = (self.turn + 1) % n;
            match consumer.poll(Duration::ZERO) {
                None => empty += 1,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    if let Some(part) = self.slot.get(p as usize).copied().flatten().map(|i| &mut self.parts[i]) {
                        tracing::debug!(partition = p, next = part.next, end = ?part.end, "partition end reported");
                        part.eof_at = Some(part.next);
                    }
                    empty += 1;
                }
                Some(Err(e)) => {
                    // librdkafka reconnects by itself; say so once in a while, never give up.
                    self.errors += 1;
                    if self.errors.is_power_of_two() {
                        tracing::warn!(error = %e, count = self.errors, "kafka consumer error (retrying)");
                    }
                    empty += 1;
                }
                Some(Ok(m)) => {
                    empty = 0;
                    read += 1;
                    let Some(i) = self.slot.get(m.partition() as usize).copied().flatten() else {
                        continue;
                    };
                    let part = &mut self.parts[i];
                    let fetchers = self.consumers.len();
                    let seek_with = &self.consumers[i % fetchers];
                    if part.fetching_from.is_some() && !check_start(part, seek_with, &self.topic, m.offset()) {
                        continue;
                    }
                    if m.offset() < part.next {
                        // Offsets only grow within a partition: this one was read already (tansu
                        // 0.6 sends a partition's last batch again when a fetch starts inside it).
                        tracing::debug!(
                            partition = m.partition(),
                            offset = m.offset(),
                            next = part.next,
                            "skipping a record read before"
                        );
                        continue;
                    }
                    part.next = m.offset() + 1;
                    part.last_seen = now;
                    let pos = Position { partition: m.partition() as u32, offset: m.offset() as u64, line: 0 };
                    let payload = m.payload().unwrap_or_default();
                    out.stats.bytes += payload.len() as u64;
                    let record_time = m.timestamp().to_millis().and_then(|t| u64::try_from(t).ok());
                    let time = accept(
                        E::parse_with_time(payload, record_time),
                        payload,
                        pos,
                        &mut part.wm,
                        floor,
                        &self.name,
                        ingest,
                        out,
                    );
                    let at = time.unwrap_or(floor).max(floor);
                    let bucket = at - at % self.settle;
                    if part.unsettled.back().is_none_or(|(b, _)| bucket > *b) {
                        part.unsettled.push_back((bucket, m.offset()));
                    }
                }
            }
        }
        let drained = empty >= n;
        if read > 0 {
            self.last_read = now;
            if all_idle {
                self.parts.iter_mut().for_each(|p| p.last_seen = now);
            }
        }
        // Bounded: done once every partition reached its end offset and the broker said there is
        // nothing after what was read (partition EOF). Records past the end offset are kept:
        // tansu 0.6 reports the end as the last batch's base offset + 1, so reaching it does not
        // mean everything is read. A pause without records is no proof (it once lost the tail of
        // a partition when a loaded machine delayed a fetch by a second).
        let finished = self.parts.iter().all(Self::finished);
        let confirmed = self.parts.iter().all(|p| p.eof_at == Some(p.next));
        let unconfirmed = drained && self.last_read.elapsed() >= BOUNDED_UNCONFIRMED;
        if finished && !confirmed && unconfirmed {
            tracing::warn!(
                topic = %self.topic,
                partitions = ?self.parts.iter().map(|p| (p.id, p.next, p.end, p.eof_at)).collect::<Vec<_>>(),
                "the broker did not confirm the end of the partitions {} s after the last record: stopping \
                 (partition, next offset, end offset at the start, position of the last end report)",
                BOUNDED_UNCONFIRMED.as_secs()
            );
        } else if finished && !confirmed && drained && self.last_read.elapsed() >= BOUNDED_REFETCH {
            self.refetch_unconfirmed();
        }
        if finished && (confirmed || unconfirmed) {
            tracing::info!(topic = %self.topic, read_to = ?self.parts.iter().map(|p| (p.id, p.next)).collect::<Vec<_>>(), "bounded kafka source done");
            self.done = true;
            self.settle_commits();
            return FeedState::Done;
        }
        if self.last_commit.elapsed() >= COMMIT_EVERY {
            self.commit_settled();
        }
        if read > 0 { FeedState::More } else { FeedState::Idle }
    }

    fn low_watermark(&self) -> Option<Millis> {
        if self.done {
            return None;
        }
        let lowest = self.parts.iter().map(|p| p.wm.current()).min();
        if self.bounded {
            // A bounded read knows data is there up to the end: no partition is ever idle.
            return Some(lowest.unwrap_or(0));
        }
        let active =
            self.parts.iter().filter(|p| p.last_seen.elapsed() < self.idle_timeout).map(|p| p.wm.current()).min();
        // All partitions idle: let windows close up to the newest watermark seen.
        Some(active.unwrap_or_else(|| self.parts.iter().map(|p| p.wm.current()).max().unwrap_or(0)))
    }

    fn finish(&mut self) {
        self.settle_commits();
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        self.parts.iter().map(|p| (p.id, p.next)).collect()
    }

    fn splits(&self) -> Vec<SplitState> {
        self.parts.iter().map(|p| SplitState { id: p.id as u64, offset: p.next as u64, line: 0, wm: p.wm }).collect()
    }
}
