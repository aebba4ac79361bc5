//! Technical indicators on bars, updated per bar (O(1), or O(n) over a short window for the
//! stochastic's range) and equal to TA-Lib's (`TA_EMA`, `TA_RSI`, `TA_MACD`, `TA_SMA`,
//! `TA_BBANDS`, `TA_ATR`, `TA_STOCH` with default compatibility and no unstable period), warm-up
//! included: no value before the bar on which TA-Lib emits its first.
//!
//! Why not the `ta` crate: `ta` 0.5 smooths RSI with k = 2/(n+1) instead of Wilder's 1/n and seeds
//! its EMA with the first value instead of the SMA of the first n, so neither its RSI nor its EMA
//! (nor its MACD, built on that EMA) match TA-Lib, which is what traders compare against. The
//! fixture test `tests/indicators_talib.rs` checks these against values computed by TA-Lib itself.

mod ema;
mod macd;
mod rsi;
mod window;

pub use ema::Ema;
pub use macd::{Macd, MacdValue};
pub use rsi::Rsi;
pub use window::{Atr, Bands, Bollinger, Sma, Stoch, Stochastic};

/// TA-Lib's `TA_IS_ZERO`: values this close to zero count as zero.
pub(crate) fn is_zero(v: f64) -> bool {
    -0.000_000_01 < v && v < 0.000_000_01
}
