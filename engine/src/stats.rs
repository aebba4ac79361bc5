//! Run totals: every worker's source counters gathered on worker 0 through the dataflow (so they are
//! right across processes), and end-to-end latency histograms per worker.

use crate::Stream;
use crate::source::SourceStats;
use std::cell::RefCell;
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// Sums the per-worker source counters on worker 0.
pub fn gather_stats(stats: Stream<'_, SourceStats>) -> Rc<RefCell<SourceStats>> {
    let totals = Rc::new(RefCell::new(SourceStats::default()));
    let sum = Rc::clone(&totals);
    stats.sink(Exchange::new(|_: &SourceStats| 0), "GatherStats", move |(input, _frontier)| {
        input.for_each(|_cap, data| {
            for s in data.iter() {
                sum.borrow_mut().add(s);
            }
        });
    });
    totals
}

/// A latency histogram in microseconds, 1 µs to 1 hour at 3 significant digits.
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}
