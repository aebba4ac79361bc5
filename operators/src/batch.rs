//! Maps that keep a stream's batches whole.

use inflight_engine::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

/// Record-by-record maps that hand each input batch on as one output batch.
///
/// Timely's `map` pushes its results one by one into 8 KiB containers (about 90 market ticks) and
/// sends each as it fills; every container then costs each later operator a round of bookkeeping.
/// A source's batches are larger, and this keeps them so.
///
/// ```
/// use inflight_operators::MapBatchesExt;
/// use timely::dataflow::operators::{Inspect, ToStream};
///
/// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// timely::example(move |scope| {
///     (1..=3u64).to_stream(scope).map_batches(|x| x * 10).inspect(move |x| sink.lock().unwrap().push(*x));
/// });
/// assert_eq!(*seen.lock().unwrap(), vec![10, 20, 30]);
/// ```
pub trait MapBatchesExt<'scope, D> {
    /// Applies `logic` to every record, in order.
    fn map_batches<D2: 'static>(self, logic: impl FnMut(D) -> D2 + 'static) -> Stream<'scope, D2>;
}

impl<'scope, D: 'static> MapBatchesExt<'scope, D> for Stream<'scope, D> {
    fn map_batches<D2: 'static>(self, mut logic: impl FnMut(D) -> D2 + 'static) -> Stream<'scope, D2> {
        self.unary(Pipeline, "MapBatches", |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let mut out: Vec<D2> = data.drain(..).map(&mut logic).collect();
                    output.session(&cap).give_container(&mut out);
                });
            }
        })
    }
}
