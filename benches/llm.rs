//! The LLM operator's figures: decisions/s against the scripted test server at 50 ms latency for
//! concurrency 1, 8, 32 and 128 (ideal: concurrency / latency) and with the adaptive limit;
//! decisions/s and latency against a real llama.cpp `llama-server` with SmolLM2 (two slots, one
//! thread; when installed, see tests/support/llama.rs) at concurrency 1, 2 and 4 and adaptive;
//! and the operator's own cost per call, measured with replies from a call log (no network) under
//! criterion.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

#[path = "../tests/support/llama.rs"]
mod llama;
#[path = "../tests/support/llm_server.rs"]
mod llm_server;

use criterion::{Criterion, Throughput};
use inflight::engine::Millis;
use inflight::engine::runtime::Pressure;
use inflight::operators::llm::ConcurrencyLimit;
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
        let fixed = ConcurrencyLimit::Fixed;
        let config =
            LlmConfig { base_url: server.base_url(), concurrency, concurrency_limit: fixed, ..LlmConfig::default() };
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
    let s = service(LlmConfig { base_url: server.base_url(), ..LlmConfig::default() });
    let took = run(&s, 2_000, "adaptive");
    println!(
        "  adaptive (at most 32): 2000 calls in {:.3} s = {:.1} decisions/s; {}",
        took.as_secs_f64(),
        2_000.0 / took.as_secs_f64(),
        s.summary().last().map_or("", String::as_str)
    );
}

/// Against a real local model: what a CPU server with two slots gives at each concurrency.
fn real_server_sweep() {
    let Some(server) = llama::Llama::start() else { return };
    const N: usize = 24;
    println!("llm_decide against llama-server (SmolLM2-135M, 2 slots, 2 threads), {N} cases each, one worker:");
    let limits = [
        (1, ConcurrencyLimit::Fixed),
        (2, ConcurrencyLimit::Fixed),
        (4, ConcurrencyLimit::Fixed),
        (32, ConcurrencyLimit::Adaptive),
    ];
    for (concurrency, limit) in limits {
        let config = LlmConfig {
            base_url: server.base_url(),
            model: llama::MODEL.into(),
            concurrency,
            concurrency_limit: limit,
            timeout: Duration::from_secs(120),
            deadline: Duration::from_secs(600),
            ..LlmConfig::default()
        };
        let s = service(config);
        let took = run(&s, N, &format!("real-{concurrency}-{limit:?}"));
        let (p50, p99) = s.stats.latency_ms().map_or((0.0, 0.0), |(p50, p99, _, _)| (p50, p99));
        let label = match limit {
            ConcurrencyLimit::Fixed => format!("concurrency {concurrency}"),
            ConcurrencyLimit::Adaptive => format!("adaptive (at most {concurrency})"),
        };
        println!(
            "  {label:<22}: {:>5.2} decisions/s, reply latency p50 {p50:>6.0} ms p99 {p99:>6.0} ms; {}",
            N as f64 / took.as_secs_f64(),
            s.summary()[0]
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
    real_server_sweep();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Criterion::default().configure_from_args();
    overhead(&mut c, dir.path());
    c.final_summary();
}
