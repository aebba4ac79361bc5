//! An order-independent floating-point sum. A bar's volume adds ticks in arrival order, and arrival
//! order differs between one worker and many; a plain `+=` then differs in the last bits, and so
//! would the output. Summing exactly (Shewchuk's non-overlapping partials, the algorithm behind
//! Python's `math.fsum`) and rounding once at the end gives the same f64 for any order. Written here
//! because no maintained crate offers an incremental, serializable exact sum small enough to keep
//! per bar (most partial lists hold one to three numbers).

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// A running exact sum of f64 values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    /// Up to three partials inline: a bar is made per tick on sparse data, and a heap vector per
    /// bar was an allocation and a free per tick. Serialized as a sequence, like a `Vec`.
    partials: SmallVec<[f64; 3]>,
}

impl ExactSum {
    /// The sum of `x` alone (as `add` to an empty sum gives it, without the loop).
    pub fn of(x: f64) -> Self {
        ExactSum { partials: smallvec::smallvec![x] }
    }

    /// Adds `x` exactly.
    pub fn add(&mut self, mut x: f64) {
        let mut kept = 0;
        for i in 0..self.partials.len() {
            let mut y = self.partials[i];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    /// The exact sum rounded to the nearest f64 (ties to even), as `math.fsum` does.
    pub fn value(&self) -> f64 {
        let p = &self.partials;
        let Some(mut n) = p.len().checked_sub(1) else {
            return 0.0;
        };
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            n -= 1;
            let (x, y) = (hi, p[n]);
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use super::ExactSum;

    fn sum(values: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        values.iter().for_each(|v| s.add(*v));
        s.value()
    }

    #[test]
    fn a_sum_of_one_is_that_one_added() {
        for x in [0.0, -0.0, 2.19, -1e300, f64::NAN, f64::INFINITY, 5e-324] {
            let mut added = ExactSum::default();
            added.add(x);
            let mut of = ExactSum::of(x);
            assert_eq!(of.value().to_bits(), added.value().to_bits(), "{x}");
            // And they go on the same way.
            added.add(0.1);
            of.add(0.1);
            assert_eq!(of.value().to_bits(), added.value().to_bits(), "{x} + 0.1");
        }
    }

    #[test]
    fn same_result_in_any_order() {
        let v = [0.1, 0.2, 0.3, 1e16, 53.23, -1e16, 7.77, 0.01];
        let forward = sum(&v);
        let mut rev = v;
        rev.reverse();
        assert_eq!(forward, sum(&rev));
        // Naive summation depends on order for these very values.
        let naive = |xs: &[f64]| xs.iter().fold(0.0, |a, b| a + b);
        assert_ne!(naive(&v), naive(&rev));
    }

    #[test]
    fn exact_where_naive_is_not() {
        assert_eq!(sum(&[0.1; 10]), 1.0);
        assert_eq!(sum(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(sum(&[]), 0.0);
    }
}
