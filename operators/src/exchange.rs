//! Sending records to the worker that owns them, one message per input container and worker.
//!
//! timely's `Exchange` pact copies records into containers of its default size (8 KiB: 93 ticks
//! of trading) and sends each as it fills, so a source batch of 1,500 ticks became 16 messages,
//! each a fresh allocation, a channel push and a progress update, and the receiver ran its
//! operator on batches that small. At two workers that was a third of what the second worker
//! added. [`by_hash`] splits each container once, by the same `hash % peers` as `Exchange`, and
//! sends each worker's share whole.

use timely::communication::Push;
use timely::dataflow::channels::Message;
use timely::dataflow::channels::pact::DistributorPact;
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::progress::Stamp;

/// A pact that sends record `d` of a `Vec<D>` stream to worker `hash(d) % peers`, each input
/// container's records for one worker in one message.
pub fn by_hash<D, F>(hash: F) -> DistributorPact<impl FnOnce(usize) -> ByHash<D, F>>
where
    F: FnMut(&D) -> u64 + 'static,
{
    DistributorPact(move |peers| ByHash { hash, parts: (0..peers).map(|_| Vec::new()).collect() })
}

/// The distributor of [`by_hash`].
pub struct ByHash<D, F> {
    hash: F,
    /// One part per worker, empty between calls.
    parts: Vec<Vec<D>>,
}

impl<D, F: FnMut(&D) -> u64> Distributor<Vec<D>> for ByHash<D, F> {
    fn partition<T: Clone, P: Push<Message<T, Vec<D>>>>(
        &mut self,
        container: &mut Vec<D>,
        stamp: &Stamp<T>,
        pushers: &mut [P],
    ) {
        let peers = pushers.len().max(1);
        // Room for an even share and some more: keys are rarely spread exactly evenly, and a part
        // that grows doubles (copies) what it holds.
        let share = container.len() / peers + container.len() / (8 * peers) + 1;
        for part in &mut self.parts {
            part.reserve(share);
        }
        for datum in container.drain(..) {
            let worker = ((self.hash)(&datum) % peers as u64) as usize;
            self.parts[worker].push(datum);
        }
        for (part, pusher) in self.parts.iter_mut().zip(pushers) {
            if !part.is_empty() {
                Message::push_at(part, stamp.clone(), pusher);
                // A part handed back by the pusher is reused; it must start empty.
                part.clear();
            }
        }
    }

    /// Nothing to flush: `partition` sends all it is given.
    fn flush<T: Clone, P: Push<Message<T, Vec<D>>>>(&mut self, _: &Stamp<T>, _: &mut [P]) {}
}

#[cfg(test)]
mod tests {
    use super::by_hash;
    use std::sync::{Arc, Mutex};
    use timely::dataflow::operators::generic::Operator;
    use timely::dataflow::operators::{Inspect, ToStream};

    /// Every record reaches the worker `hash % peers` once, whatever the number of workers.
    #[test]
    fn each_record_reaches_its_worker_once() {
        for workers in [1, 2, 3] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sink = seen.clone();
            timely::execute(timely::Config::process(workers), move |worker| {
                let (index, sink) = (worker.index(), sink.clone());
                worker.dataflow::<u64, _, _>(|scope| {
                    // Each worker sends the same 1,000 records, in containers of several sizes.
                    let records: Vec<u64> = (0..1_000).collect();
                    records
                        .to_stream(scope)
                        .unary(by_hash(|r: &u64| r * 7), "Route", |_, _| {
                            move |input, output| {
                                input.for_each(|cap, data| output.session(&cap).give_container(data));
                            }
                        })
                        .inspect(move |r| sink.lock().unwrap().push((index, *r)));
                });
            })
            .unwrap();
            let mut seen = seen.lock().unwrap().clone();
            seen.sort_unstable();
            let mut expected: Vec<(usize, u64)> = (0..workers)
                .flat_map(|_| (0..1_000u64).map(move |r| (((r * 7) % workers as u64) as usize, r)))
                .collect();
            expected.sort_unstable();
            assert_eq!(seen, expected, "at {workers} workers");
        }
    }
}
