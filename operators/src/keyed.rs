//! Per-key state applied in event-time order. Order across times is what makes stateful logic
//! (indicators, "only when the action changes") deterministic whatever the interleaving of workers.
//!
//! Keying is in the types: per-key state works only on a [`KeyedStream`], which exists only where
//! the records are on the worker that owns their key — after [`KeyByExt::key_by`] (an exchange by
//! key) or out of an operator that keys its output (`bars`, `keyed_state`). A plain stream does
//! not offer `keyed_state` at all:
//!
//! ```compile_fail
//! use inflight_engine::{Key, State};
//! use inflight_operators::{Keyed, KeyedStateExt};
//! use timely::dataflow::operators::ToStream;
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Payment { card: Key, amount: f64 }
//! impl Keyed for Payment { fn key(&self) -> &Key { &self.card } }
//!
//! timely::example(|scope| {
//!     let payments = vec![Payment { card: "c1".into(), amount: 5.0 }].to_stream(scope);
//!     // Not keyed: at -w 2 each worker would keep its own total of a card. Does not compile.
//!     payments.keyed_state(State::transient(), |total: &mut f64, p: Payment, out: &mut Vec<f64>| {
//!         *total += p.amount;
//!         out.push(*total);
//!     });
//! });
//! ```
//!
//! Keyed by `key_by`, the same builds and runs:
//!
//! ```
//! use inflight_engine::{Key, State};
//! use inflight_operators::{KeyByExt, Keyed, KeyedStateExt};
//! use timely::dataflow::operators::{Inspect, ToStream};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Payment { card: Key, amount: f64 }
//! impl Keyed for Payment { fn key(&self) -> &Key { &self.card } }
//!
//! timely::example(|scope| {
//!     let payments = vec![
//!         Payment { card: "c1".into(), amount: 5.0 },
//!         Payment { card: "c1".into(), amount: 7.5 },
//!     ];
//!     payments
//!         .to_stream(scope)
//!         .key_by()
//!         .keyed_state(State::transient(), |total: &mut f64, p: Payment, out: &mut Vec<f64>| {
//!             *total += p.amount;
//!             out.push(*total);
//!         })
//!         .into_stream()
//!         .inspect(|total| assert!(*total == 5.0 || *total == 12.5));
//! });
//! ```
//!
//! Either the operator holds each input until the frontier has passed its time and then feeds it,
//! time by time, to the key's state ([`Order::Frontier`]), or the input is known to arrive in time
//! order per key already and is applied at once ([`Order::Arrival`]): every frontier wait costs a
//! round of progress messages between workers, which is most of the engine's latency. A
//! [`KeyedStream`] knows which it is. The state lives in a plain map of serde structs so it can be
//! saved: with checkpoints on, the map is the declared [`State`]'s part, and a restore keeps the
//! keys this worker owns (`key_hash % peers`, the routing of the exchange that keyed the stream).

use inflight_engine::checkpoint::encode;
use inflight_engine::{Key, Millis, State, Stream, key_hash};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;

/// A record that belongs to a key.
pub trait Keyed {
    /// The record's key.
    fn key(&self) -> &Key;

    /// The key's dense index on this worker, if the operator that keyed the record gave it one
    /// (`bars` does): keyed state then finds the key's state by index instead of hashing the key.
    fn slot(&self) -> Option<Slot> {
        None
    }
}

/// A key's dense index on the worker that owns it, given by one keying operator (its `origin`):
/// the same key always gets the same index from the same operator on the same worker, and two keys
/// never share one. Indexes are not saved: a restore hands them out anew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The operator that gave the index (its timely id).
    pub origin: u32,
    /// The index, from 0 up in the order keys were first seen.
    pub index: u32,
}

/// Hands out [`Slot`]s for one operator on one worker.
#[derive(Debug, Default)]
pub struct Slots {
    origin: u32,
    /// Keys of up to 24 bytes (nearly all), by their bytes as words: hashing and comparing three
    /// words is about a third of hashing a string and comparing it with `memcmp`.
    short: FxHashMap<Packed, u32>,
    long: FxHashMap<Key, u32>,
}

/// A key of up to 24 bytes as words and its length (see [`Packed::of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed([u64; 3], u8);

impl std::hash::Hash for Packed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // One word, mixed (murmur3's finalizer) so every input bit reaches every output bit:
        // FxHash's multiply alone carries the differences of keys like `SYM00042` (the high bytes
        // of the word) only to the high bits, and the map's buckets collided.
        let [a, b, c] = self.0;
        let mut x = a ^ b.rotate_left(21) ^ c.rotate_left(42) ^ u64::from(self.1);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        state.write_u64(x ^ (x >> 33));
    }
}

impl Packed {
    /// The key's bytes in three words (reads that overlap where the key is not a multiple of
    /// eight bytes: together with the length they still name exactly one key); None if longer.
    #[inline]
    fn of(key: &str) -> Option<Packed> {
        let b = key.as_bytes();
        let word = |at: usize| b.get(at..).and_then(|r| r.first_chunk::<8>()).map_or(0, |w| u64::from_le_bytes(*w));
        let words = match b.len() {
            25.. => return None,
            16.. => [word(0), word(8), word(b.len() - 8)],
            8.. => [word(0), word(b.len() - 8), 0],
            len => {
                let mut w = 0u64;
                for (i, c) in b.iter().enumerate() {
                    w |= u64::from(*c) << (8 * i);
                }
                [w, len as u64, 0]
            }
        };
        Some(Packed(words, b.len() as u8))
    }
}

impl Slots {
    /// Slots of operator `origin` (its timely id).
    pub fn new(origin: u32) -> Self {
        Slots { origin, ..Slots::default() }
    }

    /// The slot of `key`, given now if the key is new.
    pub fn of(&mut self, key: &Key) -> Slot {
        // More than 4 billion keys on one worker would not fit in memory anyway.
        let next = u32::try_from(self.short.len() + self.long.len()).unwrap_or(u32::MAX);
        let index = match Packed::of(key) {
            Some(packed) => *self.short.entry(packed).or_insert(next),
            None => match self.long.get(key) {
                Some(i) => *i,
                None => *self.long.entry(key.clone()).or_insert(next),
            },
        };
        Slot { origin: self.origin, index }
    }
}

/// The per-key states of one keyed operator. Records that carry a [`Slot`] (all from one origin)
/// find their state by index, a vector lookup: hashing the key and comparing it in a hash map was
/// about 120 instructions per record, two stages of it about 8 % of a trading tick. Records
/// without one, or from a second origin, use a map by key (a second origin turns the index off
/// for good, so one key never has two states).
struct KeyStates<S> {
    /// The origin of the slots used; None until the first record, and for good after records of
    /// two origins (or with and without slots) were seen.
    origin: Option<u32>,
    mixed: bool,
    dense: Vec<Option<(Key, S)>>,
    by_key: FxHashMap<Key, S>,
}

impl<S: Default> KeyStates<S> {
    fn new(restored: Vec<(Key, S)>) -> Self {
        KeyStates { origin: None, mixed: false, dense: Vec::new(), by_key: restored.into_iter().collect() }
    }

    /// The state of `key` by its slot, made (default, or restored) if new; None when the record
    /// has no slot of this operator's origin: its state is in `by_key`.
    fn by_slot(&mut self, key: &Key, slot: Option<Slot>) -> Option<&mut S> {
        if let (Some(slot), false) = (slot, self.mixed) {
            if *self.origin.get_or_insert(slot.origin) == slot.origin {
                let i = slot.index as usize;
                if i >= self.dense.len() {
                    self.dense.resize_with(i + 1, || None);
                }
                let by_key = &mut self.by_key;
                let (_, state) =
                    self.dense[i].get_or_insert_with(|| (key.clone(), by_key.remove(key).unwrap_or_default()));
                return Some(state);
            }
        }
        if !self.mixed && self.origin.is_some() {
            // A record without a slot of this origin: every state goes to the map, for good.
            self.by_key.extend(self.dense.drain(..).flatten());
            self.mixed = true;
        }
        None
    }

    /// Starts loading the states of `slots` into the cache, all before any is used. A key's state
    /// is rarely still cached when its next record comes (a bar a second per key, with the input
    /// streaming through the cache in between), and applying records one by one waited for each
    /// state in turn: about a third of the keyed stage's time in trading.
    fn prefetch(&self, slots: impl Iterator<Item = Option<Slot>>) {
        if self.mixed {
            return;
        }
        for slot in slots.flatten() {
            if let Some(entry) = self.dense.get(slot.index as usize) {
                prefetch(entry);
            }
        }
    }

    /// Every key's state, as a checkpoint saves it (a sequence of pairs).
    fn pairs(&self) -> Vec<(&Key, &S)> {
        let dense = self.dense.iter().flatten().map(|(k, s)| (k, s));
        dense.chain(self.by_key.iter()).collect()
    }
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

/// A stream whose records are on the worker that owns their key (`key_hash(key) % peers`).
pub struct KeyedStream<'scope, D> {
    stream: Stream<'scope, D>,
    order: Order,
}

impl<'scope, D: Clone + 'static> Clone for KeyedStream<'scope, D> {
    fn clone(&self) -> Self {
        KeyedStream { stream: self.stream.clone(), order: self.order }
    }
}

impl<'scope, D: 'static> KeyedStream<'scope, D> {
    /// Wraps a stream known to be keyed: for operators that route by `key_hash` themselves.
    pub(crate) fn assume_keyed(stream: Stream<'scope, D>, order: Order) -> Self {
        KeyedStream { stream, order }
    }

    /// The records as a plain stream.
    pub fn stream(&self) -> &Stream<'scope, D> {
        &self.stream
    }

    /// The records as a plain stream (keying is forgotten).
    pub fn into_stream(self) -> Stream<'scope, D> {
        self.stream
    }

    /// How the records arrive per key.
    pub fn order(&self) -> Order {
        self.order
    }

    /// Maps each record to any number of records on the same worker, in order; the results must
    /// keep their input's key (they stay where that key is owned).
    pub fn flat_map_keyed<D2: 'static, I>(self, logic: impl FnMut(D) -> I + 'static) -> KeyedStream<'scope, D2>
    where
        I: IntoIterator<Item = D2>,
    {
        KeyedStream { stream: self.stream.flat_map(logic), order: self.order }
    }
}

/// Keys a stream.
///
/// ```
/// use inflight_engine::{Key, key_hash};
/// use inflight_operators::{KeyByExt, Keyed};
/// use timely::dataflow::operators::{Inspect, ToStream};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Payment { card: Key, amount: f64 }
/// impl Keyed for Payment { fn key(&self) -> &Key { &self.card } }
///
/// timely::execute(timely::Config::process(2), |worker| {
///     let (index, peers) = (worker.index() as u64, worker.peers() as u64);
///     worker.dataflow::<u64, _, _>(|scope| {
///         // Both workers read payments of both cards...
///         let read = ["c1", "c2", "c3"].map(|card| Payment { card: card.into(), amount: 1.0 });
///         read.to_stream(scope)
///             .key_by()
///             .into_stream()
///             // ...and after key_by each card's payments are on the one worker that owns it.
///             .inspect(move |p| assert_eq!(key_hash(&p.card) % peers, index));
///     });
/// })
/// .unwrap();
/// ```
pub trait KeyByExt<'scope, D> {
    /// Sends each record to the worker that owns its key; per key, records then come in time
    /// order only once the frontier has passed (so keyed operators wait for it).
    fn key_by(self) -> KeyedStream<'scope, D>;
}

impl<'scope, D: Keyed + timely::ExchangeData> KeyByExt<'scope, D> for Stream<'scope, D> {
    fn key_by(self) -> KeyedStream<'scope, D> {
        let by_key = Exchange::new(|d: &D| key_hash(d.key()));
        let stream = self.unary(by_key, "KeyBy", |_, _| {
            move |input, output| {
                input.for_each(|cap, data| output.session(&cap).give_container(data));
            }
        });
        KeyedStream { stream, order: Order::Frontier }
    }
}

/// Per-key state on a [`KeyedStream`].
pub trait KeyedStateExt<'scope, D> {
    /// Applies `logic(state_of_key, record, output)` to each record, in time order per key, with
    /// `state` (declared on the graph) saved in checkpoints. The output stays on the key's worker,
    /// in time order per key.
    fn keyed_state<S, D2, F>(self, state: State, logic: F) -> KeyedStream<'scope, D2>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        D2: 'static,
        F: FnMut(&mut S, D, &mut Vec<D2>) + 'static;

    /// [`KeyedStateExt::keyed_state`] that applies the records of one time in the order `first`
    /// gives (a stable sort; e.g. by source position), where arrival order is not determined:
    /// records of one key and time may come from several workers. A stream in
    /// [`Order::Arrival`] already comes in a determined order and is not sorted.
    fn keyed_state_ordered<S, D2, F>(
        self,
        state: State,
        first: fn(&D, &D) -> std::cmp::Ordering,
        logic: F,
    ) -> KeyedStream<'scope, D2>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        D2: 'static,
        F: FnMut(&mut S, D, &mut Vec<D2>) + 'static;
}

impl<'scope, D: Keyed + 'static> KeyedStateExt<'scope, D> for KeyedStream<'scope, D> {
    fn keyed_state<S, D2, F>(self, part: State, logic: F) -> KeyedStream<'scope, D2>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        D2: 'static,
        F: FnMut(&mut S, D, &mut Vec<D2>) + 'static,
    {
        keyed(self, part, None, logic)
    }

    fn keyed_state_ordered<S, D2, F>(
        self,
        part: State,
        first: fn(&D, &D) -> std::cmp::Ordering,
        logic: F,
    ) -> KeyedStream<'scope, D2>
    where
        S: Default + Serialize + DeserializeOwned + 'static,
        D2: 'static,
        F: FnMut(&mut S, D, &mut Vec<D2>) + 'static,
    {
        keyed(self, part, Some(first), logic)
    }
}

/// The keyed-state operator; `sort` orders the records of one time before they are applied.
fn keyed<'scope, D, S, D2, F>(
    input: KeyedStream<'scope, D>,
    mut part: State,
    sort: Option<fn(&D, &D) -> std::cmp::Ordering>,
    mut logic: F,
) -> KeyedStream<'scope, D2>
where
    D: Keyed + 'static,
    S: Default + Serialize + DeserializeOwned + 'static,
    D2: 'static,
    F: FnMut(&mut S, D, &mut Vec<D2>) + 'static,
{
    let order = input.order;
    let stream = input.stream.unary_frontier(Pipeline, "KeyedState", move |_cap, _info| {
        let mut pending: BTreeMap<Millis, (Capability<Millis>, Vec<D>)> = BTreeMap::new();
        let mut states = KeyStates::new(part.restore_by_key(|(key, _): &(Key, S)| key_hash(key)));
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
                    part.applied(time);
                    out.reserve(most);
                    // Plain loops: a flattened iterator moved every record once more.
                    for batch in data {
                        states.prefetch(batch.iter().map(Keyed::slot));
                        for record in batch.drain(..) {
                            apply(&mut states, &mut logic, record, &mut out);
                        }
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
                let (cap, mut records) = entry.remove();
                if let Some(first) = sort {
                    records.sort_by(first);
                }
                part.applied(*cap.time());
                out.reserve(most);
                states.prefetch(records.iter().map(Keyed::slot));
                for record in records {
                    apply(&mut states, &mut logic, record, &mut out);
                }
                if !out.is_empty() {
                    most = most.max(out.len());
                    output.session(&cap).give_container(&mut out);
                }
            }
            part.offer(frontier.frontier().first().copied(), |_| encode(&states.pairs()));
        }
    });
    // Either way each key's outputs leave in time order, on the key's worker.
    KeyedStream { stream, order: Order::Arrival }
}

/// Asks the CPU to load the cache lines of `value` (a hint: it neither blocks nor faults).
#[inline]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let at = std::ptr::from_ref(value).cast::<i8>();
        for offset in (0..std::mem::size_of::<T>()).step_by(64) {
            // SAFETY: a prefetch reads nothing the program sees and never faults, and the
            // address stays within `value`.
            #[allow(unsafe_code)]
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.add(offset));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Feeds one record to its key's state.
fn apply<D: Keyed, S: Default, D2>(
    states: &mut KeyStates<S>,
    logic: &mut impl FnMut(&mut S, D, &mut Vec<D2>),
    record: D,
    out: &mut Vec<D2>,
) {
    // (A method returning the map's state would not compile: the borrow checker rejects a
    // conditional get_mut then insert in a function that returns the reference.)
    let state = match states.by_slot(record.key(), record.slot()) {
        Some(s) => s,
        None => match states.by_key.get_mut(record.key()) {
            Some(s) => s,
            None => states.by_key.entry(record.key().clone()).or_default(),
        },
    };
    logic(state, record, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(origin: u32, index: u32) -> Option<Slot> {
        Some(Slot { origin, index })
    }

    /// Adds one to the key's state and returns the new value.
    fn bump(states: &mut KeyStates<u64>, key: &str, slot: Option<Slot>) -> u64 {
        let key = Key::from(key);
        let state = match states.by_slot(&key, slot) {
            Some(s) => s,
            None => states.by_key.entry(key).or_default(),
        };
        *state += 1;
        *state
    }

    fn sorted(states: &KeyStates<u64>) -> Vec<(String, u64)> {
        let mut pairs: Vec<(String, u64)> = states.pairs().into_iter().map(|(k, s)| (k.to_string(), *s)).collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn slots_are_dense_and_stable() {
        let mut slots = Slots::new(7);
        let [a, b] = [Key::from("a"), Key::from("b")];
        assert_eq!(slots.of(&a), Slot { origin: 7, index: 0 });
        assert_eq!(slots.of(&b), Slot { origin: 7, index: 1 });
        assert_eq!(slots.of(&a), Slot { origin: 7, index: 0 });
        // Keys of every length up to past the packed ones, and keys that differ only in their
        // length or in a byte the overlapping reads share: one slot each, the same every time.
        let mut keys: Vec<String> = Vec::new();
        for len in 0..40 {
            let base: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            keys.push(base.clone());
            keys.push(format!("{base}\0"));
            for at in 0..len {
                let mut other = base.clone().into_bytes();
                other[at] = b'#';
                keys.push(String::from_utf8(other).unwrap());
            }
        }
        keys.sort();
        keys.dedup();
        let mut slots = Slots::new(1);
        let first: Vec<u32> = keys.iter().map(|k| slots.of(&Key::from(k.as_str())).index).collect();
        let again: Vec<u32> = keys.iter().map(|k| slots.of(&Key::from(k.as_str())).index).collect();
        assert_eq!(first, (0..keys.len() as u32).collect::<Vec<_>>());
        assert_eq!(again, first);
    }

    #[test]
    fn restored_state_moves_to_its_slot() {
        let mut states = KeyStates::new(vec![(Key::from("a"), 10), (Key::from("b"), 20)]);
        assert_eq!(bump(&mut states, "b", slot(1, 5)), 21);
        assert_eq!(bump(&mut states, "b", slot(1, 5)), 22);
        assert_eq!(bump(&mut states, "c", slot(1, 0)), 1);
        // Every state is saved once, wherever it lives.
        assert_eq!(sorted(&states), [("a".into(), 10), ("b".into(), 22), ("c".into(), 1)]);
    }

    #[test]
    fn a_second_origin_or_no_slot_keeps_one_state_per_key() {
        for other in [slot(2, 0), None] {
            let mut states = KeyStates::new(Vec::new());
            assert_eq!(bump(&mut states, "a", slot(1, 0)), 1);
            assert_eq!(bump(&mut states, "b", slot(1, 1)), 1);
            // Index 0 of another origin (or no index) is not key "a"'s state...
            assert_eq!(bump(&mut states, "b", other), 2);
            // ...and from now on every record finds its key's one state by key.
            assert_eq!(bump(&mut states, "a", slot(1, 0)), 2);
            assert_eq!(bump(&mut states, "b", slot(1, 1)), 3);
            assert_eq!(sorted(&states), [("a".into(), 2), ("b".into(), 3)]);
        }
    }
}
