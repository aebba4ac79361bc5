//! Moving average convergence/divergence, with TA-Lib's particular seeding.

use super::ema::Ema;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One MACD output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MacdValue {
    /// Fast EMA minus slow EMA.
    pub value: f64,
    /// EMA of `value` over the signal period.
    pub signal: f64,
    /// `value - signal`.
    pub histogram: f64,
}

/// TA-Lib's MACD(fast, slow, signal): both EMAs start on the slow-th close, the slow one seeded
/// with the SMA of all slow closes and the fast one with the SMA of the last `fast` closes before
/// and including it; the signal EMA is seeded with the SMA of the first `signal` MACD values, and
/// the first output comes with it (on close slow + signal - 1, e.g. the 34th for 12/26/9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Macd {
    fast_period: usize,
    slow_period: usize,
    seen: usize,
    slow_sum: f64,
    /// The last `fast_period` closes, only until the EMAs are seeded.
    recent: VecDeque<f64>,
    emas: Option<(Ema, Ema)>,
    signal: Ema,
}

impl Macd {
    /// A MACD with the given periods (TA-Lib swaps fast and slow if given the wrong way round).
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        let (fast, slow) = if slow < fast { (slow, fast) } else { (fast, slow) };
        let (fast, slow) = (fast.max(1), slow.max(1));
        Macd {
            fast_period: fast,
            slow_period: slow,
            seen: 0,
            slow_sum: 0.0,
            recent: VecDeque::with_capacity(fast),
            emas: None,
            signal: Ema::new(signal),
        }
    }

    /// Feeds one close; returns MACD, signal and histogram once warmed up.
    pub fn update(&mut self, close: f64) -> Option<MacdValue> {
        let value = match &mut self.emas {
            Some((fast, slow)) => fast.update(close)? - slow.update(close)?,
            None => {
                self.seen += 1;
                self.slow_sum += close;
                if self.recent.len() == self.fast_period {
                    self.recent.pop_front();
                }
                self.recent.push_back(close);
                if self.seen < self.slow_period {
                    return None;
                }
                // Seeding happens once: summing the window in order reproduces TA-Lib's rounding.
                let fast_seed = self.recent.iter().sum::<f64>() / self.fast_period as f64;
                let slow_seed = self.slow_sum / self.slow_period as f64;
                self.emas = Some((Ema::seeded(self.fast_period, fast_seed), Ema::seeded(self.slow_period, slow_seed)));
                self.recent = VecDeque::new();
                fast_seed - slow_seed
            }
        };
        let signal = self.signal.update(value)?;
        Some(MacdValue { value, signal, histogram: value - signal })
    }
}

#[cfg(test)]
mod tests {
    use super::Macd;

    #[test]
    fn first_output_on_slow_plus_signal_minus_one() {
        let mut m = Macd::new(12, 26, 9);
        let first = (1..=100).map(|i| m.update(100.0 + f64::from(i).sin())).position(|v| v.is_some());
        assert_eq!(first, Some(33));
    }

    #[test]
    fn constant_prices_have_zero_macd() {
        let mut m = Macd::new(3, 5, 2);
        let last = (0..20).filter_map(|_| m.update(7.0)).last().unwrap();
        assert_eq!((last.value, last.signal, last.histogram), (0.0, 0.0, 0.0));
    }
}
