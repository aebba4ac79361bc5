//! inflight's RSI, MACD and EMA against values computed by TA-Lib itself
//! (`scripts/talib_fixture.py` wrote the fixture; see it for how to regenerate).

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use inflight::operators::indicators::{Ema, Macd, Rsi};
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/talib_series.json"))
        .expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn expected(values: &Value) -> Vec<Option<f64>> {
    values.as_array().expect("array").iter().map(Value::as_f64).collect()
}

fn closes(series: &Value) -> Vec<f64> {
    expected(&series["closes"]).into_iter().map(|c| c.expect("close")).collect()
}

/// Compares ours with TA-Lib's bar by bar: same warm-up (None exactly where TA-Lib has NaN), then
/// equal within the tolerance.
fn assert_matches(what: &str, ours: &[Option<f64>], talib: &[Option<f64>]) {
    assert_eq!(ours.len(), talib.len(), "{what}: length");
    let mut compared = 0;
    for (i, (o, t)) in ours.iter().zip(talib).enumerate() {
        match (o, t) {
            (None, None) => {}
            (Some(o), Some(t)) => {
                assert!((o - t).abs() <= TOLERANCE, "{what}[{i}]: ours {o} vs TA-Lib {t}");
                compared += 1;
            }
            _ => panic!("{what}[{i}]: ours {o:?} vs TA-Lib {t:?} (warm-up differs)"),
        }
    }
    assert!(compared > 10, "{what}: only {compared} values compared");
}

#[test]
fn rsi_matches_talib() {
    for series in fixture()["series"].as_array().expect("series") {
        let closes = closes(series);
        for (period, values) in series["rsi"].as_object().expect("rsi") {
            let mut rsi = Rsi::new(period.parse().expect("period"));
            let ours: Vec<_> = closes.iter().map(|c| rsi.update(*c)).collect();
            assert_matches(&format!("{} RSI({period})", series["name"]), &ours, &expected(values));
        }
    }
}

#[test]
fn ema_matches_talib() {
    for series in fixture()["series"].as_array().expect("series") {
        let closes = closes(series);
        for (period, values) in series["ema"].as_object().expect("ema") {
            let mut ema = Ema::new(period.parse().expect("period"));
            let ours: Vec<_> = closes.iter().map(|c| ema.update(*c)).collect();
            assert_matches(&format!("{} EMA({period})", series["name"]), &ours, &expected(values));
        }
    }
}

#[test]
fn macd_matches_talib() {
    for series in fixture()["series"].as_array().expect("series") {
        let closes = closes(series);
        for (params, values) in series["macd"].as_object().expect("macd") {
            let p: Vec<usize> = params.split(',').map(|x| x.parse().expect("period")).collect();
            let mut macd = Macd::new(p[0], p[1], p[2]);
            let ours: Vec<_> = closes.iter().map(|c| macd.update(*c)).collect();
            let name = format!("{} MACD({params})", series["name"]);
            for (field, pick) in [
                ("value", (|m: &inflight::operators::indicators::MacdValue| m.value) as fn(&_) -> f64),
                ("signal", |m| m.signal),
                ("histogram", |m| m.histogram),
            ] {
                let column: Vec<_> = ours.iter().map(|m| m.as_ref().map(pick)).collect();
                assert_matches(&format!("{name}.{field}"), &column, &expected(&values[field]));
            }
        }
    }
}

fn bars_fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/talib_bars.json"))
        .expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// (high, low, close) of a bar series of the fixture.
fn hlc(series: &Value) -> Vec<(f64, f64, f64)> {
    let col = |name: &str| -> Vec<f64> { expected(&series[name]).into_iter().map(|v| v.expect(name)).collect() };
    let (h, l, c) = (col("high"), col("low"), col("close"));
    (0..c.len()).map(|i| (h[i], l[i], c[i])).collect()
}

#[test]
fn sma_and_bollinger_bands_match_talib() {
    use inflight::operators::indicators::{Bollinger, Sma};
    for series in bars_fixture()["series"].as_array().expect("series") {
        let bars = hlc(series);
        for (period, values) in series["sma"].as_object().expect("sma") {
            let mut sma = Sma::new(period.parse().expect("period"));
            let ours: Vec<_> = bars.iter().map(|b| sma.update(b.2)).collect();
            assert_matches(&format!("{} SMA({period})", series["name"]), &ours, &expected(values));
        }
        let mut bands = Bollinger::new(20, 2.0);
        let ours: Vec<_> = bars.iter().map(|b| bands.update(b.2)).collect();
        for (field, pick) in [
            ("upper", (|b: &inflight::operators::indicators::Bands| b.upper) as fn(&_) -> f64),
            ("middle", |b| b.middle),
            ("lower", |b| b.lower),
        ] {
            let ours: Vec<_> = ours.iter().map(|b| b.as_ref().map(pick)).collect();
            let name = format!("{} BBANDS(20,2,2,SMA).{field}", series["name"]);
            assert_matches(&name, &ours, &expected(&series["bbands"][field]));
        }
    }
}

#[test]
fn atr_matches_talib() {
    use inflight::operators::indicators::Atr;
    for series in bars_fixture()["series"].as_array().expect("series") {
        let bars = hlc(series);
        for (period, values) in series["atr"].as_object().expect("atr") {
            let mut atr = Atr::new(period.parse().expect("period"));
            let ours: Vec<_> = bars.iter().map(|(h, l, c)| atr.update(*h, *l, *c)).collect();
            assert_matches(&format!("{} ATR({period})", series["name"]), &ours, &expected(values));
        }
    }
}

#[test]
fn stochastic_matches_talib() {
    use inflight::operators::indicators::Stochastic;
    for series in bars_fixture()["series"].as_array().expect("series") {
        let mut stoch = Stochastic::new(14, 3, 3);
        let ours: Vec<_> = hlc(series).iter().map(|(h, l, c)| stoch.update(*h, *l, *c)).collect();
        for (field, pick) in
            [("k", (|s: &inflight::operators::indicators::Stoch| s.k) as fn(&_) -> f64), ("d", |s| s.d)]
        {
            let ours: Vec<_> = ours.iter().map(|s| s.as_ref().map(pick)).collect();
            let name = format!("{} STOCH(14,3,SMA,3,SMA).{field}", series["name"]);
            assert_matches(&name, &ours, &expected(&series["stoch"][field]));
        }
    }
}
