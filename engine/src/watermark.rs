//! Per-partition watermarks with bounded out-of-orderness: the watermark is the largest event time
//! seen minus the allowed lateness, and a record older than the watermark is late.

use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// The watermark of one partition of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    lateness: Millis,
    /// Largest event time seen, or the lower bound it starts from.
    max_seen: Millis,
}

impl Watermark {
    /// A watermark allowing `lateness` of disorder that starts below `first`, the first event time
    /// expected in the partition (0 if unknown).
    pub fn new(lateness: Millis, first: Millis) -> Self {
        Watermark { lateness, max_seen: first }
    }

    /// The current watermark: no on-time record of this partition can be older.
    pub fn current(&self) -> Millis {
        self.max_seen.saturating_sub(self.lateness)
    }

    /// Accounts for a record at `time`; returns false if the record is late (older than the
    /// watermark before it arrived), in which case the watermark does not move.
    pub fn observe(&mut self, time: Millis) -> bool {
        if time < self.current() {
            return false;
        }
        self.max_seen = self.max_seen.max(time);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Watermark;

    #[test]
    fn out_of_order_within_bound_is_on_time() {
        let mut w = Watermark::new(100, 0);
        assert!(w.observe(1_000));
        assert!(w.observe(950));
        assert!(w.observe(900));
        assert_eq!(w.current(), 900);
        assert!(!w.observe(899));
    }

    #[test]
    fn zero_lateness_accepts_equal_times() {
        let mut w = Watermark::new(0, 0);
        assert!(w.observe(10));
        assert!(w.observe(10));
        assert!(!w.observe(9));
    }

    #[test]
    fn starts_at_lower_bound() {
        let w = Watermark::new(50, 1_000);
        assert_eq!(w.current(), 950);
    }
}
