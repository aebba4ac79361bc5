//! Enrichment: joins of an event stream with reference data that changes while the pipeline runs.
//! Reference data is a differential-dataflow arrangement built from upserts and deletes
//! ([`upsert_table`]); an event looks up the values its key has *at the event's time*
//! ([`LookupExt::lookup`], a half-join): an update at time 100 is seen by events at 100 and later,
//! never by an event at 99, whatever order the workers happen to run in. Events wait until the
//! table's frontier has passed their time, so every update up to it is in.

use differential_dataflow::Hashable;
use differential_dataflow::operators::arrange::upsert::arrange_from_upsert;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::TraceReader;
use differential_dataflow::trace::cursor::{Cursor, cursor_list};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use inflight_engine::checkpoint::encode;
use inflight_engine::{Millis, State, Stream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::{Capability, Concatenate, ToStream};
use timely::progress::Antichain;

/// Data that can live in a table: ordered, cloneable and sendable between processes.
pub trait TableData: Ord + Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Ord + Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static> TableData for T {}

/// A key of a table (hashed to pick the worker that holds it, the same way in every process).
pub trait TableKey: TableData + std::hash::Hash {}
impl<T: TableData + std::hash::Hash> TableKey for T {}

/// Reference data: values by key, versioned in event time, partitioned over the workers by key.
pub type Table<'scope, K, V> = Arranged<'scope, TraceAgent<ValSpine<K, V, Millis, isize>>>;

/// Builds a table from upserts `(key, Some(value), time)` and deletes `(key, None, time)`; a key
/// holds at most one value at a time. Two changes of one key at the same millisecond have no
/// defined order: give them distinct times.
pub fn upsert_table<'scope, K: TableKey, V: TableData>(
    changes: Stream<'scope, (K, Option<V>, Millis)>,
    name: &str,
) -> Table<'scope, K, V> {
    arrange_from_upsert::<ValBuilder<K, V, Millis, isize>, ValSpine<K, V, Millis, isize>, K, V>(changes, name)
}

/// [`upsert_table`] whose rows survive a restore. `initial` holds the rows at start (time 0; each
/// worker inserts its share), `changes` the upserts and deletes that follow. With checkpoints every
/// row passes a [`change_log`] declared as `log`, and a restored run rebuilds the table from it
/// instead of `initial`.
pub fn saved_upsert_table<'scope, K: TableKey, V: TableData>(
    changes: Stream<'scope, (K, Option<V>, Millis)>,
    initial: &[(K, V)],
    log: State,
    name: &str,
) -> Table<'scope, K, V> {
    let scope = changes.scope();
    let start: Vec<(K, Option<V>, Millis)> = if log.restoring() {
        log.restore_by_worker()
    } else {
        let share = initial.iter().skip(scope.index()).step_by(scope.peers());
        share.map(|(k, v)| (k.clone(), Some(v.clone()), 0)).collect()
    };
    let all = scope.concatenate([start.to_stream(scope), changes]);
    upsert_table(change_log(all, log, |(key, _, time)| (key.clone(), *time)), name)
}

/// Passes `changes` through; with checkpoints they are the state `log`. `row_of` names a change's
/// row and its time: a part for checkpoint M keeps, per row, the changes of its latest time before
/// M and every change from M on — all that lookups at M or later can see — so a restored run that
/// feeds them back at their own times rebuilds the tables built from them (upsert arrangements
/// take each change's time from the record).
pub fn change_log<'scope, T, R>(
    changes: Stream<'scope, T>,
    mut log: State,
    row_of: fn(&T) -> (R, Millis),
) -> Stream<'scope, T>
where
    T: Clone + Serialize + 'static,
    R: Ord + 'static,
{
    if !log.saved() {
        return changes;
    }
    changes.unary_frontier(Pipeline, "ChangeLog", move |_, _| {
        let mut rows: BTreeMap<R, BTreeMap<Millis, Vec<T>>> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, data| {
                if let Some(t) = cap.least() {
                    log.applied(*t);
                }
                let mut session = output.session(&cap);
                for batch in data {
                    for change in batch.drain(..) {
                        let (row, time) = row_of(&change);
                        rows.entry(row).or_default().entry(time).or_default().push(change.clone());
                        session.give(change);
                    }
                }
            });
            log.offer(frontier.frontier().first().copied(), |m| {
                let mut flat: Vec<&T> = Vec::new();
                for history in rows.values_mut() {
                    if let Some(last_before) = history.range(..m).next_back().map(|(t, _)| *t) {
                        *history = history.split_off(&last_before);
                    }
                    flat.extend(history.values().flatten());
                }
                encode(&flat)
            });
        }
    })
}

/// Builds a table in which a key may hold several values, from `((key, value), time, diff)`
/// updates (e.g. derived from another table with `as_collection`).
pub fn multi_table<'scope, K: TableKey, V: TableData>(
    updates: differential_dataflow::VecCollection<'scope, Millis, (K, V), isize>,
    name: &str,
) -> Table<'scope, K, V> {
    updates.arrange_by_key_named(name)
}

/// Records waiting for the table, by event time, each time with its capability.
type Waiting<K, D> = BTreeMap<Millis, (Capability<Millis>, Vec<(K, D)>)>;

/// Looks up every `(event time, key, record)` of `ready` (emptied) and runs `logic` on each, with
/// references into the table: a stage clones only the rows it keeps.
fn look_up<K: TableKey, V: TableData, D, D2>(
    trace: &mut TraceAgent<ValSpine<K, V, Millis, isize>>,
    ready: &mut Vec<(Millis, K, D)>,
    logic: &mut impl FnMut(D, &[&V], &mut Vec<D2>),
    scratch: &mut Vec<D2>,
    out: &mut Vec<(Millis, D2)>,
) {
    let batches = trace.batches_through(Antichain::new().borrow()).unwrap_or_default();
    let (mut cursor, storage) = cursor_list(batches);
    // In key order the cursor only moves forward.
    ready.sort_by(|a, b| a.1.cmp(&b.1));
    let mut at_key: Option<K> = None;
    let mut values: Vec<&V> = Vec::new();
    for (time, key, record) in ready.drain(..) {
        if at_key.as_ref() == Some(&key) {
            cursor.rewind_vals(&storage);
        } else {
            cursor.seek_key(&storage, &key);
            at_key = Some(key.clone());
        }
        values.clear();
        if cursor.get_key(&storage) == Some(&key) {
            while let Some(value) = cursor.get_val(&storage) {
                let mut count = 0isize;
                cursor.map_times(&storage, |t, diff| {
                    if *t <= time {
                        count += *diff;
                    }
                });
                if count > 0 {
                    values.push(value);
                }
                cursor.step_val(&storage);
            }
        }
        logic(record, &values, scratch);
        out.extend(scratch.drain(..).map(|result| (time, result)));
    }
}

/// Sends `out` (emptied), each result at its time or at `cap`'s, whichever is later.
fn give_at_times<D2: 'static>(
    output: &mut OutputBuilderSession<'_, Millis, CapacityContainerBuilder<Vec<D2>>>,
    cap: &Capability<Millis>,
    out: &mut Vec<(Millis, D2)>,
) {
    out.sort_by_key(|(time, _)| *time);
    let mut results = out.drain(..).peekable();
    while let Some((time, first)) = results.next() {
        let at = time.max(*cap.time());
        let held = cap.delayed(&at);
        let mut session = output.session(&held);
        session.give(first);
        while let Some((_, more)) = results.next_if(|(t, _)| (*t).max(*cap.time()) == at) {
            session.give(more);
        }
    }
}

/// The lookup operator.
///
/// ```
/// use inflight_engine::State;
/// use inflight_operators::{LookupExt, upsert_table};
/// use timely::dataflow::operators::{Inspect, ToStream};
///
/// timely::example(|scope| {
///     // Merchant M1 is "low" risk from time 0 and "high" from time 10.
///     let rows = vec![("M1".to_string(), Some("low".to_string()), 0), ("M1".to_string(), Some("high".to_string()), 10)];
///     let risk = upsert_table(rows.to_stream(scope), "Risk");
///     // Payments (merchant, (time, amount)) see the table as of their own time.
///     vec![("M1".to_string(), (5u64, 20.0)), ("M1".to_string(), (15, 30.0)), ("M2".to_string(), (15, 40.0))]
///         .to_stream(scope)
///         .lookup(&risk, State::transient(), |(time, _)| *time, |(time, amount), found: &[&String], out| {
///             out.push((time, amount, found.first().map(|r| r.to_string())))
///         })
///         .inspect(|(time, _, risk)| match time {
///             5 => assert_eq!(risk.as_deref(), Some("low")),
///             _ => assert!(risk.as_deref() == Some("high") || risk.is_none()),
///         });
/// });
/// ```
pub trait LookupExt<'scope, K: TableKey, D> {
    /// For each `(key, record)`, calls `logic(record, values, out)` with the values `key` has in
    /// `table` at the record's event time `time_of(record)` (sorted, possibly none), once the table
    /// is complete up to it. Results leave at the record's event time (or its timely time, if
    /// that is later), so they come out in the same order whatever the parallelism and timing; a
    /// record whose result would leave ahead of its timely time waits until both inputs have
    /// passed its event time. Waiting records are kept in `state`, so a checkpoint holds them.
    fn lookup<V, D2, F>(
        self,
        table: &Table<'scope, K, V>,
        state: State,
        time_of: fn(&D) -> Millis,
        logic: F,
    ) -> Stream<'scope, D2>
    where
        V: TableData,
        D2: 'static,
        F: FnMut(D, &[&V], &mut Vec<D2>) + 'static;
}

impl<'scope, K: TableKey, D: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> LookupExt<'scope, K, D>
    for Stream<'scope, (K, D)>
{
    fn lookup<V, D2, F>(
        self,
        table: &Table<'scope, K, V>,
        state: State,
        time_of: fn(&D) -> Millis,
        mut logic: F,
    ) -> Stream<'scope, D2>
    where
        V: TableData,
        D2: 'static,
        F: FnMut(D, &[&V], &mut Vec<D2>) + 'static,
    {
        let mut trace = table.trace.clone();
        // Same hash and the same worker as the table's own exchange, so the key's values are here.
        let exchange = Exchange::new(|(key, _): &(K, D)| key.hashed());
        // With checkpoints, the records waiting for the table are this operator's state.
        let mut part = state;
        self.binary_frontier(table.stream.clone(), exchange, Pipeline, "Lookup", move |cap, _info| {
            // A late record (event time before its timely time) the table is already complete
            // for is looked up at once; any other waits until both inputs passed its event time,
            // held at that time, so the outputs' frontier never lags behind a wait (a source
            // pausing for lagging outputs would otherwise wait on the lookup, and the lookup on
            // the source). Either way results leave at their event time.
            let mut waiting: Waiting<K, D> = BTreeMap::new();
            for (at, (key, record)) in part.restore_by_key(|(_, (k, _)): &(Millis, (K, D))| k.hashed()) {
                waiting.entry(at).or_insert_with(|| (cap.delayed(&at), Vec::new())).1.push((key, record));
            }
            waiting.retain(|_, (_, records)| !records.is_empty());
            let mut ready: Vec<(Millis, K, D)> = Vec::new();
            let mut scratch: Vec<D2> = Vec::new();
            let mut out: Vec<(Millis, D2)> = Vec::new();
            let mut compaction = Antichain::from_elem(0);
            move |(events, event_frontier), (batches, table_frontier), output| {
                // The batches are in the trace already; their stream only tells how far it is.
                batches.for_each(|_cap, _data| {});
                events.for_each_stamp(|cap, data| {
                    if let Some(t) = cap.least() {
                        part.applied(*t);
                    }
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    for (key, record) in data.flat_map(|batch| batch.drain(..)) {
                        let time = time_of(&record);
                        let at = time.max(*cap.time());
                        // A record whose result would leave later than its timely time waits too
                        // (in the saved state) until both inputs pass: a source sends a batch at
                        // its floor, before a checkpoint time its records' event times may be
                        // past, and a result sent ahead would be in no checkpoint's state.
                        if at > *cap.time() || table_frontier.less_equal(&time) {
                            waiting.entry(at).or_insert_with(|| (cap.delayed(&at), Vec::new())).1.push((key, record));
                        } else {
                            ready.push((time, key, record));
                        }
                    }
                    if !ready.is_empty() {
                        look_up(&mut trace, &mut ready, &mut logic, &mut scratch, &mut out);
                        give_at_times(output, &cap, &mut out);
                    }
                });
                while let Some(entry) = waiting.first_entry() {
                    if table_frontier.less_equal(entry.key()) || event_frontier.less_equal(entry.key()) {
                        break;
                    }
                    let time = *entry.key();
                    let (cap, records) = entry.remove();
                    part.applied(time);
                    ready.extend(records.into_iter().map(|(key, record)| (time, key, record)));
                    look_up(&mut trace, &mut ready, &mut logic, &mut scratch, &mut out);
                    give_at_times(output, &cap, &mut out);
                }
                let lowest = waiting.first_key_value().map(|(t, _)| *t);
                // Times before every event still to come or waiting need no history: let the table
                // merge them.
                let mut lower = Antichain::new();
                for t in event_frontier.frontier().iter().chain(lowest.as_ref()) {
                    lower.insert(*t);
                }
                if lower != compaction && timely::PartialOrder::less_equal(&compaction, &lower) {
                    trace.set_logical_compaction(lower.borrow());
                    trace.set_physical_compaction(lower.borrow());
                    compaction = lower;
                }
                if part.saved() {
                    // Complete once both inputs passed: records waiting before then leave first.
                    let (e, t) =
                        (event_frontier.frontier().first().copied(), table_frontier.frontier().first().copied());
                    let frontier = match (e, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    part.offer(frontier, |_| {
                        let saved: Vec<(Millis, &(K, D))> =
                            waiting.iter().flat_map(|(t, (_, r))| r.iter().map(move |kd| (*t, kd))).collect();
                        encode(&saved)
                    });
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::generic::Operator;
    use timely::dataflow::operators::vec::Map;
    use timely::dataflow::operators::{Inspect, ToStream};

    /// Moves each record to the time `time_of` gives it.
    fn at_times<'s, D: Clone + 'static>(s: Stream<'s, D>, time_of: fn(&D) -> Millis) -> Stream<'s, D> {
        s.unary(Pipeline, "AtTimes", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    for record in data.flat_map(|b| b.drain(..)) {
                        output.session(&cap.delayed(&time_of(&record), 0)).give(record);
                    }
                });
            }
        })
    }

    /// Events at 5, 10, 15 look up key "a", which is set at 0, changed at 10 and deleted at 12.
    #[test]
    fn events_see_the_table_as_of_their_time_at_any_parallelism() {
        for workers in [1, 3] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&seen);
            timely::execute(timely::Config::process(workers), move |worker| {
                let sink = Arc::clone(&sink);
                worker.dataflow::<Millis, _, _>(|scope| {
                    let first =
                        worker_zero(scope.index(), vec![("a".to_string(), Some(1u32), 0), ("b".into(), Some(7), 0)]);
                    let changes = first
                        .into_iter()
                        .chain(worker_zero(scope.index(), vec![("a".to_string(), Some(2), 10), ("a".into(), None, 12)]))
                        .collect::<Vec<_>>()
                        .to_stream(scope);
                    // Updates enter at their own times.
                    let changes = at_times(changes, |(_, _, t)| *t);
                    let table = upsert_table(changes, "Table");
                    let events = worker_zero(
                        scope.index(),
                        vec![(5u64, "a".to_string()), (10, "a".into()), (15, "a".into()), (15, "b".into())],
                    )
                    .to_stream(scope);
                    // Left at time 0: the lookup must use the event time, not the record's.
                    let events = events.map(|(t, k): (u64, String)| (k.clone(), (t, k)));
                    events
                        .lookup(
                            &table,
                            State::transient(),
                            |(t, _)| *t,
                            |(t, k), values: &[&u32], out| out.push((t, k, values.iter().map(|v| **v).collect())),
                        )
                        .inspect(move |r| sink.lock().unwrap().push(r.clone()));
                });
            })
            .unwrap();
            let mut seen = seen.lock().unwrap().clone();
            seen.sort();
            assert_eq!(
                seen,
                vec![
                    (5, "a".to_string(), vec![1]),
                    (10, "a".into(), vec![2]),
                    (15, "a".into(), vec![]),
                    (15, "b".into(), vec![7]),
                ],
                "{workers} workers"
            );
        }
    }

    fn worker_zero<T>(index: usize, items: Vec<T>) -> Vec<T> {
        if index == 0 { items } else { Vec::new() }
    }
}
