//! A slower timeframe in the same keyed stage (`--window 1s --window 1m`): each asset's slow bars
//! are built from its fast bars as they arrive, in time order, on the worker that owns the asset,
//! so a fast decision sees the latest slow bar closed at or before its own end whatever the
//! parallelism. Both widths are aligned to the epoch and the slow one is a multiple of the fast
//! one, so every fast bar lies in one slow bar, and the slow bar's close is the close of its last
//! fast bar: the close a run at the slow width alone would see (for ticks in time for the fast
//! window).

use inflight_engine::Millis;
use inflight_operators::indicators::{Macd, MacdValue, Rsi};
use serde::{Deserialize, Serialize};

/// The latest closed slow bar of an asset, and its indicators on slow closes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowBar {
    /// The slow bar's end (exclusive), ms since the epoch.
    pub end: Millis,
    /// Its close.
    pub close: f64,
    /// RSI on slow closes, once it has a value.
    pub rsi: Option<f64>,
    /// MACD on slow closes, once it has a value.
    pub macd: Option<MacdValue>,
}

/// One asset's slow timeframe: the bar being built and the indicators of the closed ones.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SlowFrame {
    /// End of the slow bar being built, and its close so far.
    open: Option<(Millis, f64)>,
    rsi: Rsi,
    macd: Macd,
    /// The latest closed slow bar.
    last: Option<SlowBar>,
}

impl SlowFrame {
    pub(crate) fn new(rsi: Rsi, macd: Macd) -> Self {
        SlowFrame { open: None, rsi, macd, last: None }
    }

    /// Adds the fast bar `[start, end)` closing at `close` (bars of one asset come in time order);
    /// returns the latest slow bar closed at or before `end`.
    pub(crate) fn push(&mut self, start: Millis, end: Millis, close: f64, width: Millis) -> Option<SlowBar> {
        let slow_end = (start - start % width).saturating_add(width);
        if let Some((open_end, open_close)) = self.open.filter(|(e, _)| *e != slow_end) {
            // A fast bar of a later slow bar: the open one had all its fast bars.
            self.close(open_end, open_close);
        }
        self.open = Some((slow_end, close));
        if end >= slow_end {
            // The fast bar ends where its slow bar does: closed as of this fast bar's end.
            self.close(slow_end, close);
        }
        self.last
    }

    fn close(&mut self, end: Millis, close: f64) {
        let (rsi, macd) = (self.rsi.update(close), self.macd.update(close));
        self.last = Some(SlowBar { end, close, rsi, macd });
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> SlowFrame {
        SlowFrame::new(Rsi::new(2), Macd::new(2, 3, 2))
    }

    /// 1 s bars into 5 s bars: a slow bar closes with its last fast bar when that one ends at the
    /// slow end, or when a fast bar of a later slow bar comes (a gap).
    #[test]
    fn slow_bars_close_at_their_end_or_at_the_next_one() {
        let mut f = frame();
        let w = 5_000;
        assert_eq!(f.push(0, 1_000, 10.0, w), None);
        assert_eq!(f.push(3_000, 4_000, 11.0, w), None, "the first slow bar is still open");
        let first = f.push(4_000, 5_000, 12.0, w).unwrap();
        assert_eq!((first.end, first.close, first.rsi), (5_000, 12.0, None));
        // No fast bar in [9 s, 10 s): the second slow bar closes when the 12 s one comes.
        assert_eq!(f.push(6_000, 7_000, 13.0, w).unwrap().end, 5_000);
        let second = f.push(12_000, 13_000, 9.0, w).unwrap();
        assert_eq!((second.end, second.close), (10_000, 13.0));
        let third = f.push(14_000, 15_000, 14.0, w).unwrap();
        assert_eq!((third.end, third.close), (15_000, 14.0));
        // RSI(2) of the slow closes 12, 13, 14: two gains, 100.
        assert_eq!(third.rsi, Some(100.0));
    }

    /// The slow indicators are those of the slow closes alone, whatever the fast bars in between.
    #[test]
    fn slow_indicators_follow_the_slow_closes() {
        let closes = [10.0, 12.0, 11.0, 15.0, 14.0, 13.0, 16.0];
        let (mut rsi, mut f) = (Rsi::new(2), frame());
        let mut want = Vec::new();
        for (i, close) in closes.iter().enumerate() {
            let base = i as u64 * 60_000;
            // Three fast bars per slow bar, the last one's close being the slow close.
            f.push(base, base + 1_000, close - 1.0, 60_000);
            f.push(base + 20_000, base + 21_000, close + 1.0, 60_000);
            let got = f.push(base + 59_000, base + 60_000, *close, 60_000).unwrap();
            want.push(rsi.update(*close));
            assert_eq!((got.end, got.rsi), (base + 60_000, *want.last().unwrap()));
        }
        assert!(want.iter().flatten().count() >= 4);
    }
}
