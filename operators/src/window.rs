//! Event-time tumbling windows that turn ticks into OHLCV bars per key. Ticks are exchanged to the
//! worker that owns their key; a window [start, end) closes when the input frontier passes end-1,
//! and its bar is emitted at time end-1. Open and close are the earliest and latest ticks by
//! (event time, source position), so ties break the same way at any parallelism.

use crate::exact_sum::ExactSum;
use crate::keyed::{KeyedStream, Order, Slot, Slots};
use inflight_engine::checkpoint::encode;
use inflight_engine::{Key, Millis, Position, State, Stream, key_hash};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

/// What a bar keeps of its ticks' contexts, besides OHLCV. An `Option<T>` keeps the latest tick's
/// (the trading pipeline's market trend); a pipeline's own type can sum (use [`ExactSum`] so the
/// bar is the same whatever order its ticks arrive in, i.e. at any parallelism).
pub trait BarContext: Clone {
    /// Folds in `tick`, the context of a tick added to the bar; `latest`: that tick is the bar's
    /// latest so far (by event time, then source position).
    fn fold(&mut self, tick: Self, latest: bool);
}

impl<T: Clone> BarContext for Option<T> {
    fn fold(&mut self, tick: Self, latest: bool) {
        if latest {
            *self = tick;
        }
    }
}

impl BarContext for () {
    fn fold(&mut self, _: (), _: bool) {}
}

/// One price observation of a key, with `C` the context the pipeline carries into the bar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tick<C> {
    /// The key (asset).
    pub key: Key,
    /// Event time.
    pub time: Millis,
    /// Price.
    pub price: f64,
    /// Traded volume.
    pub volume: f64,
    /// Where it was read.
    pub pos: Position,
    /// Wall-clock nanoseconds when it was read.
    pub ingest_ns: u64,
    /// Pipeline context (e.g. the market trend), folded into the bar's.
    pub context: C,
}

/// An OHLCV bar of one key over one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bar<C> {
    /// The key.
    pub key: Key,
    /// Window start (inclusive), ms.
    pub start: Millis,
    /// Window end (exclusive), ms.
    pub end: Millis,
    /// First price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
    /// Sum of volumes, summed exactly so that arrival order does not matter.
    pub volume: ExactSum,
    /// Number of ticks.
    pub count: u64,
    /// (time, position) of the opening tick.
    pub first: (Millis, Position),
    /// (time, position) of the closing tick.
    pub last: (Millis, Position),
    /// Latest wall-clock read time of its ticks.
    pub ingest_ns: u64,
    /// Its ticks' contexts, folded ([`BarContext`]).
    pub context: C,
    /// The key's dense index on this worker (see [`Slot`]); None for a bar made elsewhere.
    #[serde(skip)]
    pub slot: Option<Slot>,
}

impl<C: BarContext> Bar<C> {
    fn new(tick: Tick<C>, start: Millis, end: Millis, slot: Slot) -> Self {
        let at = (tick.time, tick.pos);
        Bar {
            key: tick.key,
            start,
            end,
            open: tick.price,
            high: tick.price,
            low: tick.price,
            close: tick.price,
            volume: ExactSum::of(tick.volume),
            count: 1,
            first: at,
            last: at,
            ingest_ns: tick.ingest_ns,
            context: tick.context,
            slot: Some(slot),
        }
    }

    fn add(&mut self, tick: Tick<C>) {
        let at = (tick.time, tick.pos);
        self.high = self.high.max(tick.price);
        self.low = self.low.min(tick.price);
        self.volume.add(tick.volume);
        self.count += 1;
        self.ingest_ns = self.ingest_ns.max(tick.ingest_ns);
        if at < self.first {
            self.first = at;
            self.open = tick.price;
        }
        let latest = at > self.last;
        if latest {
            self.last = at;
            self.close = tick.price;
        }
        self.context.fold(tick.context, latest);
    }
}

impl<C> crate::Keyed for Bar<C> {
    fn key(&self) -> &Key {
        &self.key
    }

    fn slot(&self) -> Option<Slot> {
        self.slot
    }
}

/// The open bars of one window, in the order their keys first came, and where each key's bar is
/// by the key's slot index: the key is hashed once per tick (for its slot), and every later keyed
/// stage finds its state by the slot instead of hashing again. The bars live in the vector that
/// leaves when the window closes: kept in the map itself, each ~200-byte bar was copied out at
/// the close, 7 % of a two-worker trading run.
struct WindowBars<C> {
    at: FxHashMap<u32, u32>,
    bars: Vec<Bar<C>>,
}

impl<C: BarContext> WindowBars<C> {
    fn with_capacity(keys: usize) -> Self {
        WindowBars { at: FxHashMap::with_capacity_and_hasher(keys, Default::default()), bars: Vec::with_capacity(keys) }
    }

    /// Adds `tick` to its key's bar, opening the bar if it is the first.
    fn add(&mut self, tick: Tick<C>, slot: Slot, start: Millis, end: Millis) {
        match self.at.entry(slot.index) {
            Entry::Occupied(at) => self.bars[*at.get() as usize].add(tick),
            Entry::Vacant(at) => {
                at.insert(self.bars.len() as u32);
                self.bars.push(Bar::new(tick, start, end, slot));
            }
        }
    }

    /// Puts in a restored bar (one per key and window).
    fn insert(&mut self, slot: Slot, bar: Bar<C>) {
        self.at.insert(slot.index, self.bars.len() as u32);
        self.bars.push(bar);
    }
}

/// Emptied window maps kept for reuse (more windows than this are rarely open at once).
const MAX_SPARE: usize = 64;

/// The open bars of one window, under a capability for the window's last millisecond.
type OpenWindow<C> = (Capability<Millis>, WindowBars<C>);

/// Windowing operators on tick streams.
///
/// ```
/// use inflight_engine::{Position, State};
/// use inflight_operators::{Tick, WindowExt};
/// use timely::dataflow::operators::{Inspect, ToStream};
///
/// timely::example(|scope| {
///     let tick = |time, price| Tick {
///         key: "BTC".into(), time, price, volume: 1.0,
///         pos: Position::default(), ingest_ns: 0, context: (),
///     };
///     vec![tick(100, 10.0), tick(900, 12.0), tick(400, 9.0), tick(1_200, 11.0)]
///         .to_stream(scope)
///         .bars(1_000, State::transient())
///         .into_stream()
///         .inspect(|bar| match bar.start {
///             // The first second's bar: open and close by event time, not by arrival.
///             0 => assert_eq!((bar.open, bar.high, bar.low, bar.close, bar.count), (10.0, 12.0, 9.0, 12.0, 3)),
///             1_000 => assert_eq!((bar.open, bar.close, bar.count), (11.0, 11.0, 1)),
///             other => panic!("no bar starts at {other}"),
///         });
/// });
/// ```
pub trait WindowExt<'scope, C> {
    /// Tumbling event-time windows of `width` ms (aligned to the epoch) into OHLCV bars per key,
    /// with the open windows kept in `state`. Each key's bars leave in time order on the worker
    /// that owns the key.
    fn bars(self, width: Millis, state: State) -> KeyedStream<'scope, Bar<C>>;
}

impl<'scope, C> WindowExt<'scope, C> for Stream<'scope, Tick<C>>
where
    C: BarContext + Send + Serialize + for<'de> Deserialize<'de> + 'static,
{
    fn bars(self, width: Millis, mut part: State) -> KeyedStream<'scope, Bar<C>> {
        let width = width.max(1);
        let by_key = crate::exchange::by_hash(|t: &Tick<C>| key_hash(&t.key));
        let bars = self.unary_frontier(by_key, "Bars", move |cap, info| {
            let mut slots = Slots::new(u32::try_from(info.global_id).unwrap_or(u32::MAX));
            // Restored open windows (of the keys this worker owns), each under a capability for its
            // last millisecond, as if their ticks had just arrived.
            let mut open: BTreeMap<Millis, OpenWindow<C>> = BTreeMap::new();
            for (end, mut bar) in part.restore_by_key(|(_, bar): &(Millis, Bar<C>)| key_hash(&bar.key)) {
                let (_, window) =
                    open.entry(end).or_insert_with(|| (cap.delayed(&(end - 1)), WindowBars::with_capacity(0)));
                let slot = slots.of(&bar.key);
                bar.slot = Some(slot);
                window.insert(slot, bar);
            }
            open.retain(|_, (_, window)| !window.bars.is_empty());
            // Bars in the last window closed: a new window's map starts that large instead of
            // rehashing its way up.
            let mut keys = 0;
            // The maps of closed windows, emptied, for the next windows: a fresh map per window
            // made the allocator hand out (and the kernel zero) new pages all run long, about a
            // third of the process's time at two workers.
            let mut spare: Vec<WindowBars<C>> = Vec::new();
            let mut batch_slots: Vec<Slot> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    if let Some(t) = cap.least() {
                        part.applied(*t);
                    }
                    for batch in data {
                        // The keys' slots first, in a loop of their own: a key's entry is rarely
                        // still cached when its next tick comes, and these lookups, independent
                        // of each other, wait for memory together instead of one by one.
                        batch_slots.clear();
                        batch_slots.extend(batch.iter().map(|t| slots.of(&t.key)));
                        // Ticks come in runs of one window (a source reads in time order): the
                        // window is looked up once per run, not once per tick.
                        let mut window: Option<(Millis, &mut WindowBars<C>)> = None;
                        for (tick, &slot) in batch.drain(..).zip(&batch_slots) {
                            let start = tick.time - tick.time % width;
                            let end = start.saturating_add(width);
                            let bars = match window {
                                Some((e, bars)) if e == end => bars,
                                _ => {
                                    let (_, bars) = open.entry(end).or_insert_with(|| {
                                        let mut map = spare.pop().unwrap_or_else(|| WindowBars::with_capacity(keys));
                                        // A spare's vector may have gone out with its bars, and the
                                        // one given back may be small. It is empty: a fresh one,
                                        // not `reserve`, as reallocating copies all its capacity
                                        // (5% of a two-worker run).
                                        let want = keys + keys / 4;
                                        if map.bars.capacity() < want {
                                            map.bars = Vec::with_capacity(want);
                                        }
                                        (cap.delayed(&(end - 1), 0), map)
                                    });
                                    bars
                                }
                            };
                            bars.add(tick, slot, start, end);
                            window = Some((end, bars));
                        }
                    }
                });
                while let Some(window) = open.first_entry() {
                    if frontier.less_equal(&(window.key() - 1)) {
                        break;
                    }
                    let (cap, mut bars) = window.remove();
                    keys = bars.bars.len();
                    // The window's bars in one container: given one by one they went out in
                    // timely's default containers of 8 KiB (37 bars), each a message to count.
                    output.session(&cap).give_container(&mut bars.bars);
                    bars.bars.clear();
                    bars.at.clear();
                    if spare.len() < MAX_SPARE {
                        spare.push(bars);
                    }
                }
                part.offer(frontier.frontier().first().copied(), |_| {
                    let bars: Vec<(Millis, &Bar<C>)> =
                        open.iter().flat_map(|(end, (_, w))| w.bars.iter().map(move |b| (*end, b))).collect();
                    encode(&bars)
                });
            }
        });
        KeyedStream::assume_keyed(bars, Order::Arrival)
    }
}
