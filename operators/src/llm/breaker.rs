//! A circuit breaker: after N consecutive failed attempts the endpoint is left alone for a
//! cooldown (calls fall back at once instead of queueing behind timeouts), then one probe call
//! decides whether to close it again. Times are tokio's, so tests can pause the clock.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker, shared by all calls of a process.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures (0 = never) for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker { threshold, cooldown, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    /// May an attempt go out now? When the cooldown is over, exactly one probe is let through.
    pub fn allow(&self) -> bool {
        let Ok(mut state) = self.state.lock() else { return true };
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// An attempt got an answer from the endpoint.
    pub fn success(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = State::Closed { failures: 0 };
        }
    }

    /// An attempt failed in a way that says the endpoint is unwell. True if this opened the breaker.
    pub fn failure(&self) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        let open = State::Open { until: Instant::now() + self.cooldown };
        match *state {
            State::Closed { failures } if self.threshold > 0 && failures + 1 >= self.threshold => {
                *state = open;
                true
            }
            State::Closed { failures } => {
                *state = State::Closed { failures: failures + 1 };
                false
            }
            State::HalfOpen => {
                *state = open;
                true
            }
            State::Open { .. } => false,
        }
    }

    /// `closed`, `open` or `half_open`.
    pub fn state(&self) -> &'static str {
        match self.state.lock().map(|s| *s) {
            Ok(State::Open { .. }) => "open",
            Ok(State::HalfOpen) => "half_open",
            _ => "closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_failures_probes_once_after_cooldown_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_secs(10));
        assert!(!b.failure() && !b.failure());
        assert!(b.allow(), "two failures keep it closed");
        assert!(b.failure(), "the third opens it");
        assert!(!b.allow());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!b.allow(), "still cooling down");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.allow(), "one probe after the cooldown");
        assert!(!b.allow(), "only one");
        assert_eq!(b.state(), "half_open");
        b.success();
        assert!(b.allow() && b.allow());
        assert_eq!(b.state(), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again_and_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(5));
        b.failure();
        b.success();
        assert!(!b.failure(), "the count restarted after a success");
        assert!(b.failure());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.allow());
        assert!(b.failure(), "a failed probe reopens");
        assert!(!b.allow());
        assert_eq!(b.state(), "open");
    }

    #[test]
    fn threshold_zero_never_opens() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let b = Breaker::new(0, Duration::from_secs(5));
            for _ in 0..100 {
                assert!(!b.failure());
            }
            assert!(b.allow());
        });
    }
}
