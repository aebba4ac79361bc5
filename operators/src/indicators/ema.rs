//! Exponential moving average, seeded like TA-Lib with the simple average of the first n values.

use serde::{Deserialize, Serialize};

/// TA-Lib's EMA: no value for the first n-1 inputs, the SMA of the first n at the n-th, then
/// `prev + k * (x - prev)` with k = 2/(n+1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ema {
    period: usize,
    k: f64,
    seen: usize,
    sum: f64,
    value: Option<f64>,
}

impl Ema {
    /// An EMA over `period` values (at least 1).
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Ema { period, k: 2.0 / (period as f64 + 1.0), seen: 0, sum: 0.0, value: None }
    }

    /// An EMA that starts from `seed` as its current value (used by MACD's own seeding).
    pub(crate) fn seeded(period: usize, seed: f64) -> Self {
        Ema { value: Some(seed), seen: period.max(1), ..Ema::new(period) }
    }

    /// Feeds one value; returns the EMA once warmed up.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        match self.value {
            Some(prev) => {
                // Same operation order as TA-Lib, so results agree to the last bits.
                let next = ((x - prev) * self.k) + prev;
                self.value = Some(next);
            }
            None => {
                self.sum += x;
                self.seen += 1;
                if self.seen == self.period {
                    self.value = Some(self.sum / self.period as f64);
                }
            }
        }
        self.value
    }

    /// The current value, if warmed up.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::Ema;

    #[test]
    fn seeds_with_sma_then_smooths() {
        let mut e = Ema::new(3);
        assert_eq!(e.update(1.0), None);
        assert_eq!(e.update(2.0), None);
        assert_eq!(e.update(3.0), Some(2.0));
        // k = 0.5: 2 + 0.5 * (6 - 2) = 4
        assert_eq!(e.update(6.0), Some(4.0));
    }
}
