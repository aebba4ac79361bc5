//! The whole trading job, file → decisions, over 1,000,000 synthetic events on 1,000 assets, on one
//! and two workers; and the JSON parse of one market event, the largest cost per event (in full, and
//! as the pipeline reads it).

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inflight::engine::Event;
use inflight::engine::job::JobConfig;
use inflight::engine::runtime::{Cluster, RunContext};
use inflight::engine::sink::Output;
use inflight::engine::source::{Input, SourceConfig};
use inflight::engine::{Position, SourceName};
use inflight::operators::exact_sum::ExactSum;
use inflight::operators::indicators::{Bands, MacdValue, Stoch};
use inflight::operators::{Bar, Rules};
use inflight::pipelines::trading::synthetic::{GenConfig, generate};
use inflight::pipelines::trading::{Context, MarketEvent, MarketTick, Scored, TradingConfig, TradingRules, Trend};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const EVENTS: u64 = 1_000_000;

fn trading(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("market.jsonl");
    let file = std::fs::File::create(&path).expect("create input");
    let config = GenConfig { events: EVENTS, assets: 1_000, ..GenConfig::default() };
    generate(&config, &mut std::io::BufWriter::new(file)).expect("write input");

    let mut group = c.benchmark_group("trading_1m_events_1k_assets");
    group.sample_size(10).measurement_time(Duration::from_secs(8)).throughput(Throughput::Elements(EVENTS));
    for workers in [1, 2] {
        let job = JobConfig {
            input: Input::File(path.clone()),
            side_inputs: Vec::new(),
            source: SourceConfig::default(),
            output: Output::Discard,
            dead_letter: Output::Discard,
            cluster: Cluster { workers, ..Cluster::default() },
            checkpoint: None,
        };
        group.bench_function(format!("w{workers}"), |b| {
            b.iter(|| {
                let report = inflight::run_trading(&job, &TradingConfig::default(), &RunContext::default())
                    .expect("run succeeds");
                assert_eq!(report.source.events, EVENTS);
                report.outputs
            })
        });
    }
    group.finish();

    let line = std::fs::read_to_string(&path).expect("read input");
    let line = line.lines().next().expect("one line").as_bytes().to_vec();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("market_event", |b| b.iter(|| MarketEvent::parse(black_box(&line)).is_ok()));
    // What the pipeline parses: the fields it uses, on the one-pass fast path.
    group.bench_function("market_tick", |b| b.iter(|| MarketTick::parse(black_box(&line)).is_ok()));
    group.finish();

    // Per decision: the rules' explanation (reason, evidence) and its JSON line.
    let rules = TradingRules::default().with_source(SourceName::File(Arc::from("market.jsonl")));
    let scored = sample_scored();
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));
    group.bench_function("explain_and_format", |b| {
        b.iter(|| {
            let s = black_box(scored.clone());
            let verdict = rules.verdict(&s).unwrap();
            serde_json::to_string(&rules.explain(s, verdict)).unwrap()
        })
    });
    group.finish();
}

/// A bar an hour into a run, with indicator values in their usual ranges.
fn sample_scored() -> Scored {
    let mut volume = ExactSum::default();
    volume.add(14.42);
    let at = (1_704_621_600_000, Position { partition: 0, offset: 123_456, line: 789 });
    Scored {
        bar: Bar {
            key: "SYM00042".into(),
            start: 1_704_621_599_000,
            end: 1_704_621_600_000,
            open: 101.25,
            high: 102.5,
            low: 100.75,
            close: 101.875,
            volume,
            count: 7,
            first: at,
            last: at,
            ingest_ns: 0,
            context: Context::new(Some(Trend::Bullish), None, None, None),
            slot: None,
        },
        rsi: 55.123_456,
        macd: MacdValue { value: 1.234_5, signal: 0.987_6, histogram: 0.246_9 },
        bollinger: Some(Bands { upper: 103.1, middle: 101.2, lower: 99.3 }),
        atr: Some(1.25),
        stoch: Some(Stoch { k: 61.5, d: 58.25 }),
        slow: None,
    }
}

criterion_group!(benches, trading);
criterion_main!(benches);
