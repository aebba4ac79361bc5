//! Per-key state applied in event-time order. Order across times is what makes stateful logic
//! (indicators, "only when the action changes") deterministic whatever the interleaving of workers.
//! Either the operator holds each input until the frontier has passed its time and then feeds it,
//! time by time, to the key's state ([`Order::Frontier`]), or the input is known to arrive in time
//! order per key already and is applied at once ([`Order::Arrival`]): every frontier wait costs a
//! round of progress messages between workers, which is most of the engine's latency.
//! The state lives in a plain map of serde structs so it can be saved: with checkpoints on, the
//! map is a checkpoint part, and a restore keeps the keys this worker owns (`key_hash % peers`, the
//! routing of the exchange that partitioned the stream).

use inflight_engine::checkpoint::{decode, encode};
use inflight_engine::recovery::{Participant, participant};
use inflight_engine::{Key, Millis, Stream, key_hash};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

/// A record that belongs to a key.
pub trait Keyed {
    /// The record's key.
    fn key(&self) -> &Key;
}

/// How a keyed operator gets its input into time order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Any input: hold records until the frontier passes their time, then apply them time by time.
    #[default]
    Frontier,
    /// The input already arrives in time order per key on the worker that owns the key — the output
    /// of `bars`, or of a keyed operator fed by it — so records are applied as they arrive.
    Arrival,
}

/// Keyed state on a stream that is already partitioned by key (e.g. the output of `bars`).
pub trait KeyedStateExt<'scope, D> {
    /// Applies `logic(state_of_key, record, output)` to each record, in time order per key.
    fn keyed_state<S, D2, F>(self, name: &str, order: Order, logic: F) -> Stream<'scope, D2>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        D2: 'static,
        F: FnMut(&mut S, D, &mut Vec<D2>) + 'static;
}

impl<'scope, D: Keyed + 'static> KeyedStateExt<'scope, D> for Stream<'scope, D> {
    fn keyed_state<S, D2, F>(self, name: &str, order: Order, mut logic: F) -> Stream<'scope, D2>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        D2: 'static,
        F: FnMut(&mut S, D, &mut Vec<D2>) + 'static,
    {
        let mut part = participant(name);
        let (index, peers) = (self.scope().index(), self.scope().peers());
        self.unary_frontier(Pipeline, name, move |_cap, _info| {
            let mut pending: BTreeMap<Millis, (Capability<Millis>, Vec<D>)> = BTreeMap::new();
            let mut states: FxHashMap<Key, S> = restore(part.as_ref(), index, peers);
            let mut out = Vec::new();
            // The most records one give has sent: handing `out` to timely leaves it empty, and
            // growing it again record by record was part of the 8 % of a trading tick's
            // instructions that vector regrowth cost (with the source's batches).
            let mut most = 0;
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(time) = cap.least().copied() else {
                        return;
                    };
                    let Some(held) = cap.retain_least(output.output_index()) else {
                        return;
                    };
                    if order == Order::Arrival {
                        if let Some(p) = part.as_mut() {
                            p.applied(time);
                        }
                        out.reserve(most);
                        for record in data.flat_map(|batch| batch.drain(..)) {
                            apply(&mut states, &mut logic, record, &mut out);
                        }
                        if !out.is_empty() {
                            most = most.max(out.len());
                            output.session(&held).give_container(&mut out);
                        }
                        return;
                    }
                    let slot = &mut pending.entry(time).or_insert_with(|| (held, Vec::new())).1;
                    for batch in data {
                        slot.append(batch);
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, records) = entry.remove();
                    if let Some(p) = part.as_mut() {
                        p.applied(*cap.time());
                    }
                    out.reserve(most);
                    for record in records {
                        apply(&mut states, &mut logic, record, &mut out);
                    }
                    if !out.is_empty() {
                        most = most.max(out.len());
                        output.session(&cap).give_container(&mut out);
                    }
                }
                if let Some(p) = part.as_mut() {
                    p.offer(frontier.frontier().first().copied(), |_| encode(&states));
                }
            }
        })
    }
}

/// The states of the keys worker `index` of `peers` owns, from every part of a checkpoint.
pub(crate) fn restore<S: DeserializeOwned>(
    part: Option<&Participant>,
    index: usize,
    peers: usize,
) -> FxHashMap<Key, S> {
    let mut states = FxHashMap::default();
    for (_, bytes) in part.map_or(&[][..], Participant::restored) {
        match decode::<FxHashMap<Key, S>>(bytes) {
            Ok(saved) => states.extend(saved.into_iter().filter(|(k, _)| owns(k, index, peers))),
            // A part that passed its checksum but does not decode is another build's: the run fails.
            Err(e) => {
                part.iter().for_each(|p| p.report(format!("a checkpoint part cannot be read by this build: {e}")))
            }
        }
    }
    states
}

/// Whether worker `index` of `peers` owns `key` (timely's exchange sends hash % peers).
pub(crate) fn owns(key: &Key, index: usize, peers: usize) -> bool {
    (key_hash(key) % peers as u64) as usize == index
}

/// Feeds one record to its key's state.
fn apply<D: Keyed, S: Default, D2>(
    states: &mut FxHashMap<Key, S>,
    logic: &mut impl FnMut(&mut S, D, &mut Vec<D2>),
    record: D,
    out: &mut Vec<D2>,
) {
    let state = match states.get_mut(record.key()) {
        Some(s) => s,
        None => states.entry(record.key().clone()).or_default(),
    };
    logic(state, record, out);
}
