//! Window indicators: TA-Lib's simple moving average (one running total to which each value is
//! added when it arrives and from which it is subtracted when it leaves, in TA-Lib's order, so the
//! sums agree to the last bit), Bollinger bands, Wilder's ATR and the slow stochastic. The
//! fixture test `tests/indicators_talib.rs` checks each against TA-Lib 0.8.1 (the `ta-lib` 0.8.2
//! wheel's) to 1e-9.

use serde::{Deserialize, Serialize};

/// The last `capacity` values taken, oldest first. Hand-written: a `VecDeque` kept at a fixed
/// length pays for a `push_back` and a `pop_front` (each with its own bounds and growth checks)
/// on every bar, about 30 instructions a bar per window; here the newest value overwrites the
/// oldest in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Ring<T> {
    values: Vec<T>,
    capacity: usize,
    /// Where the oldest value is once full (and the next one goes).
    head: usize,
}

impl<T: Copy> Ring<T> {
    fn new(capacity: usize) -> Ring<T> {
        let capacity = capacity.max(1);
        Ring { values: Vec::with_capacity(capacity), capacity, head: 0 }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn is_full(&self) -> bool {
        self.values.len() >= self.capacity
    }

    /// Takes `x` (pushing the oldest value out, once full).
    fn push(&mut self, x: T) {
        if !self.is_full() {
            self.values.push(x);
            return;
        }
        if let Some(slot) = self.values.get_mut(self.head) {
            *slot = x;
        }
        self.head += 1;
        if self.head >= self.values.len() {
            self.head = 0;
        }
    }

    /// The `i`-th oldest value (`i` below [`Ring::len`]).
    fn get(&self, i: usize) -> T {
        let at = self.head + i;
        let n = self.values.len();
        self.values[if at >= n { at - n } else { at }]
    }
}

/// TA-Lib's `TA_INT_SMA` as a stream: no value for the first n-1 inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sma {
    period: usize,
    /// The last `period` values (the total has the oldest of them taken out already, once full).
    window: Ring<f64>,
    total: f64,
}

impl Sma {
    /// An average over `period` values (at least 1).
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Sma { period, window: Ring::new(period), total: 0.0 }
    }

    /// Feeds one value; returns the average of the last `period` once there are that many.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        // TA-Lib's order: add the new value, take the mean, then subtract the oldest one of the
        // window (which leaves it on the next value).
        self.total += x;
        self.window.push(x);
        if !self.window.is_full() {
            return None;
        }
        let mean = self.total / self.period as f64;
        self.total -= self.window.get(0);
        Some(mean)
    }

    /// The last `period` values, oldest first (fewer while warming up).
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.window.len()).map(|i| self.window.get(i))
    }
}

/// Bollinger bands: `TA_BBANDS(close, n, k, k, SMA)`. The deviation is the window's population
/// standard deviation around the middle band, summed in two passes as current TA-Lib does (the
/// running sum of squares of older TA-Lib loses digits at large prices: 1.6e-8 at 42,000).
/// A close is taken in O(1) ([`Bollinger::push`]); the deviation's pass over the window is made
/// only when the bands are asked for ([`Bollinger::value`]): a pipeline asks for the bars it
/// explains, and taking every bar's bands cost about 90 instructions a tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bollinger {
    /// The middle band, and the closes it is over.
    sma: Sma,
    k: f64,
    middle: Option<f64>,
}

/// One value of the bands.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    /// Middle + k standard deviations.
    pub upper: f64,
    /// The simple moving average.
    pub middle: f64,
    /// Middle − k standard deviations.
    pub lower: f64,
}

impl Bollinger {
    /// Bands over `period` closes, `k` (population) standard deviations wide.
    pub fn new(period: usize, k: f64) -> Self {
        let period = period.max(1);
        Bollinger { sma: Sma::new(period), k, middle: None }
    }

    /// Takes one close.
    pub fn push(&mut self, x: f64) {
        // The middle band is the running SMA (TA-Lib's sums, to the bit), kept on every close.
        self.middle = self.sma.update(x);
    }

    /// The bands of the closes taken so far, once `period` closes are in.
    pub fn value(&self) -> Option<Bands> {
        let middle = self.middle?;
        let mut squares = 0.0;
        for c in self.sma.values() {
            let d = c - middle;
            squares += d * d;
        }
        let variance = squares / self.sma.period as f64;
        let deviation = if variance > 0.0 { variance.sqrt() } else { 0.0 };
        let width = deviation * self.k;
        Some(Bands { upper: middle + width, middle, lower: middle - width })
    }

    /// Takes one close and returns the bands ([`Bollinger::push`], then [`Bollinger::value`]).
    pub fn update(&mut self, x: f64) -> Option<Bands> {
        self.push(x);
        self.value()
    }
}

/// Wilder's average true range: `TA_ATR(high, low, close, n)`. The first bar has no previous
/// close and no true range; the n-th true range gives the first value, their simple average; each
/// later one `(prev × (n−1) + tr) / n`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Atr {
    period: usize,
    prev_close: Option<f64>,
    seed: Sma,
    value: Option<f64>,
}

impl Atr {
    /// An ATR over `period` bars (at least 1).
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Atr { period, prev_close: None, seed: Sma::new(period), value: None }
    }

    /// Feeds one bar; returns the ATR once warmed up.
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let prev = self.prev_close.replace(close)?;
        // TA_TRANGE: the greatest of the bar's range and its distances to the previous close.
        let mut range = high - low;
        range = range.max((prev - high).abs()).max((prev - low).abs());
        self.value = match self.value {
            None => self.seed.update(range),
            Some(atr) => Some((atr * (self.period - 1) as f64 + range) / self.period as f64),
        };
        self.value
    }
}

/// The slow stochastic: `TA_STOCH(high, low, close, k, ks, SMA, d, SMA)`. Fast %K is where the
/// close stands in the last `k` bars' range (0 when the range is empty), %K its `ks`-bar SMA, %D
/// the `d`-bar SMA of %K; both are given from the bar on which %D first exists, as TA-Lib does.
/// A bar is taken in O(1) ([`Stochastic::push`]: the last `k + ks + d − 2` bars are kept); %K and
/// %D are worked out from them when asked for ([`Stochastic::value`]), as a pipeline does for the
/// bars it explains: every bar's cost about 300 instructions a tick. Summed afresh rather than with
/// TA-Lib's running totals, they agree with TA-Lib to about 1e-13 rather than to the bit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stochastic {
    period: usize,
    k_smooth: usize,
    d_smooth: usize,
    /// (high, low, close) of the last `k + ks + d − 2` bars, oldest first: fewer while warming up.
    bars: Ring<(f64, f64, f64)>,
}

/// One value of the stochastic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stoch {
    /// Slow %K.
    pub k: f64,
    /// %D.
    pub d: f64,
}

impl Stochastic {
    /// A stochastic over `period` bars, %K smoothed over `k_smooth`, %D over `d_smooth`.
    pub fn new(period: usize, k_smooth: usize, d_smooth: usize) -> Self {
        let (period, k_smooth, d_smooth) = (period.max(1), k_smooth.max(1), d_smooth.max(1));
        let keep = period + k_smooth + d_smooth - 2;
        Stochastic { period, k_smooth, d_smooth, bars: Ring::new(keep) }
    }

    fn keep(&self) -> usize {
        self.period + self.k_smooth + self.d_smooth - 2
    }

    /// Takes one bar.
    pub fn push(&mut self, high: f64, low: f64, close: f64) {
        self.bars.push((high, low, close));
    }

    /// %K and %D of the bars taken so far, once warmed up.
    pub fn value(&self) -> Option<Stoch> {
        let keep = self.keep();
        if self.bars.len() < keep {
            return None;
        }
        // Fast %K of bar i (an index into `bars`): its close in the range of the `period` bars
        // ending at it.
        let fast = |i: usize| {
            let window = (i + 1 - self.period..=i).map(|j| self.bars.get(j));
            let (highest, lowest) =
                window.fold((f64::NEG_INFINITY, f64::INFINITY), |(h, l), b| (h.max(b.0), l.min(b.1)));
            // TA-Lib divides by the range over 100 (not × 100 after): the same bits as TA-Lib.
            let diff = (highest - lowest) / 100.0;
            if diff != 0.0 { (self.bars.get(i).2 - lowest) / diff } else { 0.0 }
        };
        // The fast %K of the last `ks + d − 1` bars, each once; slow %K j is the mean of the
        // `ks` of them ending at j, %D the mean of the last `d` slow %K.
        let fasts: Vec<f64> = (self.period - 1..keep).map(fast).collect();
        let slow = |j: usize| fasts[j + 1 - self.k_smooth..=j].iter().sum::<f64>() / self.k_smooth as f64;
        let last = fasts.len() - 1;
        let d = (last + 1 - self.d_smooth..=last).map(slow).sum::<f64>() / self.d_smooth as f64;
        Some(Stoch { k: slow(last), d })
    }

    /// Takes one bar and returns %K and %D ([`Stochastic::push`], then [`Stochastic::value`]).
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<Stoch> {
        self.push(high, low, close);
        self.value()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_ring_keeps_the_last_values_in_order_across_a_checkpoint() {
        let mut r = Ring::new(3);
        for x in 1..=2 {
            r.push(x);
        }
        // Read back while warming up: the capacity is the ring's own, not the Vec's.
        let mut r: Ring<i32> = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!((r.len(), r.is_full()), (2, false));
        for x in 3..=7 {
            r.push(x);
            let kept: Vec<i32> = (0..r.len()).map(|i| r.get(i)).collect();
            let from = (x - 2).max(1);
            assert_eq!(kept, (from..=x).collect::<Vec<_>>());
        }
    }

    #[test]
    fn sma_waits_for_its_period_then_slides() {
        let mut s = Sma::new(3);
        assert_eq!((s.update(1.0), s.update(2.0)), (None, None));
        assert_eq!(s.update(3.0), Some(2.0));
        assert_eq!(s.update(6.0), Some(11.0 / 3.0));
    }

    #[test]
    fn bands_of_a_flat_series_have_no_width() {
        let mut b = Bollinger::new(3, 2.0);
        b.update(5.0);
        b.update(5.0);
        assert_eq!(b.update(5.0), Some(Bands { upper: 5.0, middle: 5.0, lower: 5.0 }));
    }

    #[test]
    fn atr_starts_on_the_nth_true_range() {
        let mut a = Atr::new(2);
        assert_eq!(a.update(10.0, 8.0, 9.0), None); // no previous close
        assert_eq!(a.update(10.0, 9.0, 9.5), None); // tr 1
        assert_eq!(a.update(12.0, 9.0, 11.0), Some(2.0)); // tr 3: (1 + 3) / 2
        assert_eq!(a.update(11.0, 11.0, 11.0), Some(1.0)); // tr 0: (2 × 1 + 0) / 2
    }

    #[test]
    fn stochastic_of_an_empty_range_is_zero() {
        let mut s = Stochastic::new(2, 1, 1);
        assert_eq!(s.update(5.0, 5.0, 5.0), None);
        assert_eq!(s.update(5.0, 5.0, 5.0), Some(Stoch { k: 0.0, d: 0.0 }));
        assert_eq!(s.update(10.0, 5.0, 10.0), Some(Stoch { k: 100.0, d: 100.0 }));
    }
}
