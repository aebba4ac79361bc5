//! The flight and code-fix jobs, file → decisions, rules only: flight status events against 10,000
//! bookings, and generated ~30-line snippets with one injected syntax error each; and the code
//! fixer on one snippet, the largest cost per code event.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inflight::engine::job::JobConfig;
use inflight::engine::runtime::{Cluster, RunContext};
use inflight::engine::sink::Output;
use inflight::engine::source::{Input, SourceConfig};
use inflight::pipelines::code::synthetic::{CodeGenConfig, generate};
use inflight::pipelines::code::{Language, analyse};
use inflight::pipelines::flight::FlightConfig;
use inflight::pipelines::flight::synthetic::{self, FlightGenConfig};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn job(path: &Path, workers: usize) -> JobConfig {
    JobConfig {
        input: Input::File(path.to_owned()),
        side_inputs: Vec::new(),
        source: SourceConfig::default(),
        output: Output::Discard,
        dead_letter: Output::Discard,
        cluster: Cluster { workers, ..Cluster::default() },
        checkpoint: None,
    }
}

fn flight(c: &mut Criterion) {
    const EVENTS: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let config = FlightGenConfig { events: EVENTS, ..FlightGenConfig::sized_for(10_000) };
    let reference = Arc::new(synthetic::reference(&config));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    synthetic::events(&config, &reference, &mut out).unwrap();
    drop(out);
    let mut group = c.benchmark_group("flight_100k_events_10k_bookings");
    group.sample_size(10).measurement_time(Duration::from_secs(10)).throughput(Throughput::Elements(EVENTS));
    for workers in [1, 2] {
        let job = job(&path, workers);
        group.bench_function(format!("w{workers}"), |b| {
            b.iter(|| {
                let r = inflight::run_flight_with(
                    &job,
                    &FlightConfig::default(),
                    Arc::clone(&reference),
                    &RunContext::default(),
                    None,
                )
                .unwrap();
                assert_eq!(r.source.records(), EVENTS);
                r.outputs
            })
        });
    }
    group.finish();
}

fn code(c: &mut Criterion) {
    const EVENTS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("code.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    generate(&CodeGenConfig { events: EVENTS, ..CodeGenConfig::default() }, &mut out).unwrap();
    drop(out);
    let mut group = c.benchmark_group("code_2k_snippets");
    group.sample_size(10).measurement_time(Duration::from_secs(10)).throughput(Throughput::Elements(EVENTS));
    for workers in [1, 2] {
        let job = job(&path, workers);
        group.bench_function(format!("w{workers}"), |b| {
            b.iter(|| inflight::run_code_with(&job, &RunContext::default(), None).unwrap().outputs)
        });
    }
    group.finish();

    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
    let code = first["code"].as_str().unwrap().to_owned();
    let line = first["error_context"]["error_line"].as_u64().map(|l| l as usize);
    let language = Language::from_name(first["language"].as_str().unwrap_or("python")).unwrap();
    let mut group = c.benchmark_group("code_fixer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("analyse_one_snippet", |b| {
        b.iter(|| analyse(language, black_box(&code), line, None).1.is_some())
    });
    group.finish();
}

criterion_group!(benches, flight, code);
criterion_main!(benches);
