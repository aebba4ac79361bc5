//! The dataflow's side of the live view: streams exchanged to worker 0, which hands them to the
//! hub. Every worker of every process builds the same taps (timely needs the same graph
//! everywhere); only worker 0 of process 0, where the server runs, receives. Without `--serve`
//! nothing is built and a tap costs nothing.

use super::hub::Hub;
use crate::Stream;
use crate::source::SourceStats;
use std::cell::RefCell;
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;

thread_local! {
    /// The hub of the dataflow this worker is building (None: no live view).
    static BUILDING: RefCell<Option<Arc<Hub>>> = const { RefCell::new(None) };
}

/// Builds a dataflow with `hub` available to the taps in it.
pub fn building<R>(hub: Option<&Arc<Hub>>, build: impl FnOnce() -> R) -> R {
    BUILDING.with(|b| *b.borrow_mut() = hub.cloned());
    let result = build();
    BUILDING.with(|b| *b.borrow_mut() = None);
    result
}

fn current() -> Option<Arc<Hub>> {
    BUILDING.with(|b| b.borrow().clone())
}

/// Is a live view being built (so a pipeline should tap what it shows)?
pub fn serving() -> bool {
    BUILDING.with(|b| b.borrow().is_some())
}

/// Sends `stream` to worker 0 and gives each record to `deliver` there.
fn to_worker_zero<'s, T, F>(stream: Stream<'s, T>, name: &str, deliver: F)
where
    T: timely::ExchangeData,
    F: Fn(&Hub, T) + 'static,
{
    let Some(hub) = current() else { return };
    stream.sink(Exchange::new(|_: &T| 0), name, move |(input, _frontier)| {
        input.for_each(|_cap, data| {
            for item in data.drain(..) {
                deliver(&hub, item);
            }
        });
    });
}

/// Decisions (as their JSON lines) to the live view.
pub fn decisions(lines: Stream<'_, String>) {
    to_worker_zero(lines, "LiveDecisions", |hub, line| hub.publish(&line));
}

/// Dead-letter reasons to the live view's counters.
pub fn dead_letters(reasons: Stream<'_, String>) {
    to_worker_zero(reasons, "LiveDeadLetters", |hub, reason| hub.dead_letter(&reason));
}

/// Source counters to the live view.
pub fn source_stats(stats: Stream<'_, SourceStats>) {
    to_worker_zero(stats, "LiveSourceStats", |hub, s| hub.source(&s));
}

/// One bar (or any point of a per-key series) for the live view's charts.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LiveBar {
    /// Its key.
    pub key: String,
    /// Its time (the bar's end), ms.
    pub time: u64,
    /// The JSON object `/api/keys/{key}/bars` returns for it.
    pub json: String,
}

/// Bars to the live view, made by `to_bar` only when a live view is being built.
pub fn bars<'s, T: Clone + 'static>(stream: &Stream<'s, T>, to_bar: impl Fn(&T) -> LiveBar + 'static) {
    if !serving() {
        return;
    }
    let bars = stream.clone().map(move |t: T| to_bar(&t));
    to_worker_zero(bars, "LiveBars", |hub, b| hub.bar(&b.key, b.time, b.json));
}
