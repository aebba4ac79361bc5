//! The dataflow's side of the live view: streams exchanged to worker 0, which hands them to the
//! hub. Every worker of every process builds the same taps (timely needs the same graph
//! everywhere); only worker 0 of process 0, where the server runs, receives. Without `--serve`
//! nothing is built and a tap costs nothing.

use super::hub::Hub;
use crate::Stream;
use crate::source::SourceStats;
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;

/// The live view's taps of one worker's dataflow, handed to the code that builds it (see
/// [`crate::graph::Graph::taps`]). Without `--serve` it holds no hub and every tap is a no-op.
#[derive(Clone, Default)]
pub struct Taps {
    hub: Option<Arc<Hub>>,
}

impl Taps {
    /// Taps feeding `hub` (None: no live view).
    pub fn new(hub: Option<Arc<Hub>>) -> Self {
        Taps { hub }
    }

    /// Is a live view being built (so a pipeline should tap what it shows)?
    pub fn serving(&self) -> bool {
        self.hub.is_some()
    }

    /// Decisions (as their JSON lines) to the live view.
    pub fn decisions(&self, lines: Stream<'_, String>) {
        self.to_worker_zero(lines, "LiveDecisions", |hub, line| hub.publish(&line));
    }

    /// Dead-letter reasons to the live view's counters.
    pub fn dead_letters(&self, reasons: Stream<'_, String>) {
        self.to_worker_zero(reasons, "LiveDeadLetters", |hub, reason| hub.dead_letter(&reason));
    }

    /// Source counters to the live view.
    pub fn source_stats(&self, stats: Stream<'_, SourceStats>) {
        self.to_worker_zero(stats, "LiveSourceStats", |hub, s| hub.source(&s));
    }

    /// Bars (or any per-key series) to the live view's charts, made by `to_bar` only when a live
    /// view is being built.
    pub fn bars<'s, T: Clone + 'static>(&self, stream: &Stream<'s, T>, to_bar: impl Fn(&T) -> LiveBar + 'static) {
        if !self.serving() {
            return;
        }
        self.live_bars(stream.clone().map(move |t: T| to_bar(&t)));
    }

    /// Bars already made for the live view's charts (by a stage that builds them only while
    /// [`Taps::serving`]).
    pub fn live_bars(&self, bars: Stream<'_, LiveBar>) {
        self.to_worker_zero(bars, "LiveBars", |hub, b| hub.bar(&b.key, b.time, b.json));
    }

    /// Sends `stream` to worker 0 and gives each record to `deliver` there.
    fn to_worker_zero<'s, T, F>(&self, stream: Stream<'s, T>, name: &str, deliver: F)
    where
        T: timely::ExchangeData,
        F: Fn(&Hub, T) + 'static,
    {
        let Some(hub) = self.hub.clone() else { return };
        stream.sink(Exchange::new(|_: &T| 0), name, move |(input, _frontier)| {
            input.for_each(|_cap, data| {
                for item in data.drain(..) {
                    deliver(&hub, item);
                }
            });
        });
    }
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
