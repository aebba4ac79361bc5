//! The LLM operator's figures: decisions/s against the test server at 50 ms latency for
//! concurrency 1, 8, 32 and 128 (ideal: concurrency / latency), and the operator's own cost per
//! call, measured with replies from a call log (no network) under criterion.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

#[path = "../tests/support/llm_server.rs"]
mod llm_server;

use criterion::{Criterion, Throughput};
use inflight::engine::Millis;
use inflight::engine::runtime::Pressure;
use inflight::operators::{Action, Decision, LlmConfig, LlmExt, LlmService};
use llm_server::{LlmServer, answering};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

const LATENCY: Duration = Duration::from_millis(50);

/// `n` unsure decisions with distinct prompts, all at one time, through `llm_decide` on one worker.
fn run(service: &Arc<LlmService>, n: usize, salt: &str) -> Duration {
    let service = Arc::clone(service);
    let salt = salt.to_owned();
    timely::execute_directly(move |worker| {
        let mut input = InputHandle::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<Millis, _, _>(|scope| {
            scope.input_from(&mut input).container::<Vec<Decision>>().llm_decide(&service).probe_with(&probe);
        });
        let start = Instant::now();
        for i in 0..n {
            let key = format!("{salt}-{i}");
            input.send(Decision { id: key.clone(), key: key.as_str().into(), confidence: 0.1, ..Decision::sample() });
        }
        input.advance_to(1);
        while probe.less_than(&1) {
            worker.step_or_park(Some(Duration::from_millis(5)));
        }
        start.elapsed()
    })
}

fn service(config: LlmConfig) -> Arc<LlmService> {
    let actions = vec![Action::BUY, Action::SELL, Action::HOLD];
    LlmService::start(&LlmConfig { enabled: true, cache_size: 0, actions, ..config }, Pressure::default()).unwrap()
}

fn concurrency_sweep(server: &LlmServer) {
    println!("llm_decide against the test server at {} ms latency, one worker:", LATENCY.as_millis());
    for concurrency in [1usize, 8, 32, 128] {
        let config = LlmConfig { base_url: server.base_url(), concurrency, ..LlmConfig::default() };
        let s = service(config);
        let n = concurrency * 20;
        run(&s, concurrency, "warm-up");
        let took = run(&s, n, &format!("c{concurrency}"));
        let rate = n as f64 / took.as_secs_f64();
        let ideal = concurrency as f64 / LATENCY.as_secs_f64();
        println!(
            "  concurrency {concurrency:>3}: {n:>5} calls in {:>6.3} s = {rate:>7.1} decisions/s, ideal {ideal:>6.0}/s ({:.1}%)",
            took.as_secs_f64(),
            100.0 * rate / ideal
        );
    }
}

fn overhead(c: &mut Criterion, dir: &Path) {
    // Record a call log once, then replay it: the operator, the runtime hop and the log lookup,
    // without the network.
    const N: usize = 2_000;
    let log = dir.join("calls.jsonl");
    let server = LlmServer::start(answering(Duration::ZERO));
    let recorder = service(LlmConfig { base_url: server.base_url(), log: Some(log.clone()), ..LlmConfig::default() });
    run(&recorder, N, "replay");
    recorder.flush();
    let replayer = service(LlmConfig { replay: Some(log), ..LlmConfig::default() });
    let mut group = c.benchmark_group("llm_decide");
    group.sample_size(20).throughput(Throughput::Elements(N as u64));
    group.bench_function("replayed_call", |b| b.iter(|| run(&replayer, N, "replay")));
    group.finish();
}

fn main() {
    let server = LlmServer::start(answering(LATENCY));
    concurrency_sweep(&server);
    drop(server);
    let dir = tempfile::tempdir().unwrap();
    let mut c = Criterion::default().configure_from_args();
    overhead(&mut c, dir.path());
    c.final_summary();
}
