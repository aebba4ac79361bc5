//! Relative strength index with Wilder's smoothing, as TA-Lib computes it.

use super::is_zero;
use serde::{Deserialize, Serialize};

/// TA-Lib's RSI(n): the first value after n price changes, from the simple averages of their gains
/// and losses; afterwards `avg = (avg * (n-1) + change) / n` for gains and losses separately.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rsi {
    period: usize,
    prev: Option<f64>,
    changes: usize,
    gain: f64,
    loss: f64,
}

impl Rsi {
    /// An RSI over `period` changes (at least 1); TA-Lib's default is 14.
    pub fn new(period: usize) -> Self {
        Rsi { period: period.max(1), prev: None, changes: 0, gain: 0.0, loss: 0.0 }
    }

    /// Feeds one close; returns the RSI (0..=100) once `period` changes have been seen.
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let prev = self.prev.replace(close)?;
        let change = close - prev;
        let n = self.period as f64;
        if self.changes < self.period {
            self.add(change);
            self.changes += 1;
            if self.changes < self.period {
                return None;
            }
            self.loss /= n;
            self.gain /= n;
        } else {
            self.loss *= n - 1.0;
            self.gain *= n - 1.0;
            self.add(change);
            self.loss /= n;
            self.gain /= n;
        }
        let total = self.gain + self.loss;
        Some(if is_zero(total) { 0.0 } else { 100.0 * (self.gain / total) })
    }

    fn add(&mut self, change: f64) {
        if change < 0.0 {
            self.loss -= change;
        } else {
            self.gain += change;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rsi;

    #[test]
    fn warm_up_is_period_changes() {
        let mut r = Rsi::new(2);
        assert_eq!(r.update(10.0), None);
        assert_eq!(r.update(11.0), None);
        // gains 1 + 1 over 2 -> 1, losses 0 -> RSI 100
        assert_eq!(r.update(12.0), Some(100.0));
        // gain (1*1 + 0)/2 = 0.5, loss (0*1 + 2)/2 = 1 -> 100 * 0.5 / 1.5
        let v = r.update(10.0).unwrap();
        assert!((v - 100.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn flat_prices_give_zero_like_talib() {
        let mut r = Rsi::new(3);
        let out: Vec<_> = [5.0; 6].iter().filter_map(|c| r.update(*c)).collect();
        assert_eq!(out, vec![0.0, 0.0, 0.0]);
    }
}
