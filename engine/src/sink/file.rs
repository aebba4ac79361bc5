//! The ordered line writer behind file and stdout outputs.

use super::OpenOutput;
use crate::Graph;
use crate::Stream;
use crate::runtime::RunContext;
use crate::time::Millis;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;

/// How many lines a sink has written (on worker 0 once the run is over; for a discarding sink,
/// each worker's own).
#[derive(Clone, Debug, Default)]
pub struct LineSink {
    pub(super) written: Rc<Cell<u64>>,
    /// Lines the output held before this run continued it (a restore).
    before: Rc<Cell<u64>>,
}

impl LineSink {
    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.get()
    }

    /// Lines the output already held when a restored run continued it.
    pub fn before(&self) -> u64 {
        self.before.get()
    }
}

/// Sends every line to worker 0, which writes the lines of each time once the frontier has passed
/// it, sorted, and flushes when its input ends. A write error is reported as a run failure and the
/// sink stops writing (it never panics a worker).
pub fn write_lines<'s>(
    graph: &Graph<'s>,
    lines: Stream<'s, String>,
    output: &OpenOutput,
    state: &str,
    ctx: &RunContext,
) -> LineSink {
    let sink = LineSink::default();
    let written = Rc::clone(&sink.written);
    if output.discard {
        // Counted where they are made (the run's report sums the workers).
        lines.sink(Pipeline, "DiscardLines", move |(input, _)| {
            input.for_each(|_, lines| written.set(written.get() + lines.len() as u64));
        });
        return sink;
    }
    let mut state = graph.state(state, 1);
    // After a restore: the length the output had at the checkpoint (written by worker 0).
    let mut bytes: u64 = state.restore_worker_zero().unwrap_or(0);
    let mut failed = false;
    let mut writer = if lines.scope().index() != 0 {
        None
    } else {
        match output.resume_at(bytes) {
            Ok((w, kept)) => {
                sink.before.set(kept);
                w
            }
            Err(e) => {
                ctx.failures.report(e);
                failed = true;
                None
            }
        }
    };
    let name = output.name.clone();
    let failures = ctx.failures.clone();
    let mut pending: BTreeMap<Millis, Vec<String>> = BTreeMap::new();
    lines.sink(Exchange::new(|_: &String| 0), "WriteLines", move |(input, frontier)| {
        input.for_each_stamp(|cap, data| {
            if let Some(time) = cap.least() {
                let slot = pending.entry(*time).or_default();
                for batch in data {
                    slot.append(batch);
                }
            }
        });
        let mut wrote = false;
        while let Some(entry) = pending.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let time = *entry.key();
            let mut lines = entry.remove();
            lines.sort_unstable();
            if let (Some(w), false) = (writer.as_mut(), failed) {
                for line in &lines {
                    if let Err(e) = w.write_all(line.as_bytes()).and_then(|()| w.write_all(b"\n")) {
                        failures.report(format!("writing {name} failed: {e}"));
                        failed = true;
                        break;
                    }
                    bytes += line.len() as u64 + 1;
                }
            }
            state.applied(time);
            written.set(written.get() + lines.len() as u64);
            wrote = true;
        }
        // Flush what a frontier step completed, so a long-running (Kafka) run's output is visible
        // as it goes; at the end of input, flush and close.
        let done = frontier.is_empty();
        if wrote || done {
            if let (Some(w), false) = (writer.as_mut(), failed) {
                if let Err(e) = w.flush() {
                    failures.report(format!("writing {name} failed: {e}"));
                    failed = true;
                }
            }
        }
        if done {
            writer = None;
        }
        // Everything before the frontier is written and flushed: the output's length is its state.
        if !failed {
            state.offer(frontier.frontier().first().copied(), |_| crate::checkpoint::encode(&bytes));
        }
    });
    sink
}
