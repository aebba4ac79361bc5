//! Flow control: timely has no back-pressure, so sources stop reading while the outputs probe lags
//! more than `max_lag` (event time) behind them. A pipeline whose last operator holds the outputs
//! back must pause the source, and releasing it must let the whole input through.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use inflight::engine::job::{JobConfig, run};
use inflight::engine::runtime::{Cluster, RunContext};
use inflight::engine::sink::Output;
use inflight::engine::source::{Input, SourceConfig};
use inflight::engine::{Millis, Stream};
use inflight::operators::Decision;
use inflight::pipelines::trading::synthetic::{GenConfig, generate};
use inflight::pipelines::trading::{MarketTick, TradingConfig, trading};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

const EVENTS: u64 = 200_000;

/// Passes decisions on, but from the first decision on holds its output at that decision's time
/// until `released` (before it, the output follows the input, as a real pipeline's would).
fn hold<'s>(stream: Stream<'s, Decision>, released: Arc<AtomicBool>) -> Stream<'s, Decision> {
    let scope = stream.scope();
    stream.unary_frontier(Pipeline, "Hold", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut holding = false;
        move |(input, frontier), output| {
            input.for_each_stamp(|time, data| {
                holding = true;
                let mut session = output.session(&time);
                for batch in data {
                    session.give_container(batch);
                }
            });
            if released.load(Ordering::SeqCst) {
                cap = None;
            } else if let (false, Some(c), Some(t)) = (holding, cap.as_mut(), frontier.frontier().first()) {
                c.downgrade(t);
            }
            if cap.is_some() {
                activator.activate_after(Duration::from_millis(10));
            }
        }
    })
}

#[test]
fn source_pauses_while_outputs_lag_and_resumes_when_they_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("market.jsonl");
    // 200 s of event time on 10 assets.
    let market = GenConfig { events: EVENTS, assets: 10, rate: 1_000.0, ..GenConfig::default() };
    generate(&market, &mut std::io::BufWriter::new(std::fs::File::create(&path).unwrap())).unwrap();
    let max_lag: Millis = 10_000;
    let job = JobConfig {
        input: Input::File(path),
        side_inputs: Vec::new(),
        source: SourceConfig { max_lag, chunk_size: 256 << 10, batch_bytes: 16 << 10, ..SourceConfig::default() },
        output: Output::Discard,
        dead_letter: Output::Discard,
        cluster: Cluster::default(),
        checkpoint: None,
    };
    let ctx = RunContext::default();
    let released = Arc::new(AtomicBool::new(false));
    let running = {
        let (job, ctx, released) = (job.clone(), ctx.clone(), Arc::clone(&released));
        std::thread::spawn(move || {
            let config = TradingConfig::default();
            let source = job.input.name();
            run::<MarketTick, _, _>(&job, &ctx, move |graph, events| {
                hold(trading(graph, events, &config, source.clone(), None), Arc::clone(&released))
            })
        })
    };
    // Give the source ample time to read everything if nothing stopped it.
    std::thread::sleep(Duration::from_millis(1500));
    let read = ctx.progress.get();
    // Decisions start after ~35 s of warm-up; the source may run 10 s (10,000 events) past the
    // held decision, plus a batch.
    assert!(read > 35_000, "the source read past the warm-up: {read}");
    assert!(read < 60_000, "the source paused near max_lag: read {read} of {EVENTS}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ctx.progress.get(), read, "and stays paused");

    released.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let report = running.join().unwrap().unwrap();
    assert_eq!(report.source.events, EVENTS, "everything was read once the outputs caught up");
    assert!(report.outputs > 0);
    assert!(started.elapsed() < Duration::from_secs(30));
}
