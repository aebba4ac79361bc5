//! Per-bar cost of the incremental indicators (RSI, MACD, EMA, Bollinger, ATR, stochastic) over a
//! long bar series.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inflight::operators::indicators::{Atr, Bollinger, Ema, Macd, Rsi, Stochastic};
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
    group.bench_function("bbands_20_2_update", |b| {
        b.iter(|| {
            let mut bands = Bollinger::new(20, 2.0);
            series.iter().map(|c| black_box(bands.update(*c))).count()
        })
    });
    // Bars around each close: high 0.5 % above, low 0.5 % below.
    let bars: Vec<(f64, f64, f64)> = series.iter().map(|c| (c * 1.005, c * 0.995, *c)).collect();
    group.bench_function("atr14_update", |b| {
        b.iter(|| {
            let mut atr = Atr::new(14);
            bars.iter().map(|(h, l, c)| black_box(atr.update(*h, *l, *c))).count()
        })
    });
    group.bench_function("stoch_14_3_3_update", |b| {
        b.iter(|| {
            let mut stoch = Stochastic::new(14, 3, 3);
            bars.iter().map(|(h, l, c)| black_box(stoch.update(*h, *l, *c))).count()
        })
    });
    group.finish();
}

criterion_group!(benches, indicators);
criterion_main!(benches);
