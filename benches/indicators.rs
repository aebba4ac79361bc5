//! Per-bar cost of the incremental indicators (RSI, MACD, EMA) over a long close series.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inflight::operators::indicators::{Ema, Macd, Rsi};
use std::hint::black_box;

fn closes(n: usize) -> Vec<f64> {
    let mut price = 100.0f64;
    (0..n)
        .map(|i| {
            price *= 1.0 + ((i as f64 * 0.7).sin() * 0.01);
            price
        })
        .collect()
}

fn indicators(c: &mut Criterion) {
    let series = closes(10_000);
    let mut group = c.benchmark_group("indicators");
    group.throughput(Throughput::Elements(series.len() as u64));
    group.bench_function("rsi14_update", |b| {
        b.iter(|| {
            let mut rsi = Rsi::new(14);
            series.iter().map(|c| black_box(rsi.update(*c))).count()
        })
    });
    group.bench_function("macd_12_26_9_update", |b| {
        b.iter(|| {
            let mut macd = Macd::new(12, 26, 9);
            series.iter().map(|c| black_box(macd.update(*c))).count()
        })
    });
    group.bench_function("ema26_update", |b| {
        b.iter(|| {
            let mut ema = Ema::new(26);
            series.iter().map(|c| black_box(ema.update(*c))).count()
        })
    });
    group.finish();
}

criterion_group!(benches, indicators);
criterion_main!(benches);
