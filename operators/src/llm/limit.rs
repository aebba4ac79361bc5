//! How many requests the endpoint gets at once: an adaptive limit per process (AIMD, as Netflix's
//! concurrency-limits and TCP do it), so a slow server gets fewer requests, not more. A local CPU
//! server with two slots answers one short reply in about a second; sent 32 at once, the last
//! waits 16 s in the server's queue, times out and opens the breaker. Here the limit starts at 2,
//! grows by one per round of replies (1/limit per reply that came back in time while the limit was
//! in use) and shrinks by a quarter on a slow reply, a timeout, a 429 or a 5xx, once per round
//! (replies to requests sent before the last cut do not cut again). In time is within
//! `latency_target` or twice the fastest reply so far, whichever is longer: a CPU server that
//! takes 4 s for one reply alone is not overloaded at 5 s. A request
//! waiting for a permit waits in our process: its timeout has not started, and the wait is no
//! failure of the endpoint.
//!
//! Written here rather than taken from `tower-acc`: its AIMD grows by one per reply, and against
//! a queueing server that overshoots (a simulated two-slot server got 22 requests at once, the
//! last waiting 11 s), and its middleware wraps a Tower service, which our client is not. Latency
//! alone (Vegas, Gradient2) is no queue signal here: an LLM's latency varies with the reply's
//! length far more than with load.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limit a run starts from: the slots of a small local server.
pub const INITIAL: usize = 2;
/// What a cut leaves of the limit.
const BACKOFF: f64 = 0.75;

/// Adapts the number of requests in flight to what the endpoint answers.
#[derive(Debug)]
pub struct AdaptiveLimit {
    semaphore: Arc<Semaphore>,
    max: usize,
    latency_target: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: f64,
    /// Permits the semaphore was given in all (held and free).
    permits: usize,
    /// When the limit was last cut.
    cut: Option<Instant>,
    /// The fastest reply so far.
    fastest: Option<Duration>,
    /// Lowest and highest limit reached.
    low: usize,
    high: usize,
}

/// The right to send one request; give it back with [`AdaptiveLimit::done`].
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    issued: Instant,
}

impl AdaptiveLimit {
    /// A limit between 1 and `max` that shrinks when a reply takes longer than `latency_target`.
    pub fn new(max: usize, latency_target: Duration) -> Self {
        let max = max.max(1);
        let initial = INITIAL.min(max);
        AdaptiveLimit {
            semaphore: Arc::new(Semaphore::new(initial)),
            max,
            latency_target,
            state: Mutex::new(State {
                limit: initial as f64,
                permits: initial,
                cut: None,
                fastest: None,
                low: initial,
                high: initial,
            }),
        }
    }

    /// Waits for a free slot (None only if the semaphore were closed, which it never is).
    pub async fn acquire(&self) -> Option<Permit> {
        let permit = Arc::clone(&self.semaphore).acquire_owned().await.ok()?;
        Some(Permit { _permit: permit, issued: Instant::now() })
    }

    /// Reports how a request went (its latency; `overloaded` for a timeout, 429 or 5xx) and frees
    /// its slot.
    pub fn done(&self, permit: Permit, latency: Duration, overloaded: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        let in_flight = s.permits.saturating_sub(self.semaphore.available_permits());
        if !overloaded {
            s.fastest = Some(s.fastest.map_or(latency, |f| f.min(latency)));
        }
        let slow = latency > self.latency_target.max(s.fastest.unwrap_or_default().saturating_mul(2));
        if overloaded || slow {
            if s.cut.is_none_or(|cut| permit.issued >= cut) {
                s.limit = (s.limit * BACKOFF).max(1.0);
                s.cut = Some(Instant::now());
            }
        } else if in_flight * 2 >= s.permits {
            s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
        }
        let want = s.limit as usize;
        if want > s.permits {
            self.semaphore.add_permits(want - s.permits);
            s.permits = want;
        } else if want < s.permits {
            // Free permits go at once, held ones as they come back (this one among them).
            drop(permit);
            let gone = self.semaphore.forget_permits(s.permits - want);
            s.permits -= gone;
        }
        s.low = s.low.min(s.permits);
        s.high = s.high.max(s.permits);
    }

    /// The limit now, and the lowest and highest it reached.
    pub fn current(&self) -> (usize, usize, usize) {
        self.state.lock().map(|s| (s.permits, s.low, s.high)).unwrap_or((0, 0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A server with `slots` that takes `service` per request and queues the rest, as llama.cpp's
    /// does; returns the most requests inside the server at once and the slowest request.
    async fn drive(limit: Arc<AdaptiveLimit>, slots: usize, service: Duration, requests: usize) -> (usize, Duration) {
        let server = Arc::new(Semaphore::new(slots));
        let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..requests {
            let (limit, server, inside, most) = (limit.clone(), server.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let permit = limit.acquire().await.unwrap();
                let sent = Instant::now();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                {
                    let _slot = server.acquire().await.unwrap();
                    tokio::time::sleep(service).await;
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                let took = sent.elapsed();
                limit.done(permit, took, false);
                took
            }));
        }
        let mut slowest = Duration::ZERO;
        for t in tasks {
            slowest = slowest.max(t.await.unwrap());
        }
        (most.load(Ordering::SeqCst), slowest)
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_two_slot_server_gets_few_requests_and_none_waits_long() {
        let limit = Arc::new(AdaptiveLimit::new(32, Duration::from_secs(5)));
        let (most, slowest) = drive(Arc::clone(&limit), 2, Duration::from_secs(1), 200).await;
        let (_, low, high) = limit.current();
        eprintln!("two slots: at most {most} at the server, slowest {slowest:?}, limit {low}..{high}");
        // A fixed 32 would have put 32 requests in the server and made the last wait 16 s; the
        // latency target is 5 s, so the server's queue holds about 10 (5 s of two slots).
        assert!(most <= 12, "at most {most} requests at the server");
        assert!(slowest <= Duration::from_secs(7), "slowest request {slowest:?}");
        assert!(high > 4, "it probed well above the two slots: {high}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_slower_than_the_target_alone_still_gets_its_slots_filled() {
        // 7 s a reply, one at a time (over the 5 s target): two slots must still be kept busy.
        let limit = Arc::new(AdaptiveLimit::new(32, Duration::from_secs(5)));
        let (most, slowest) = drive(Arc::clone(&limit), 2, Duration::from_secs(7), 60).await;
        assert!(most >= 2, "both slots used: {most}");
        // Twice the fastest reply is 14 s: about two replies' worth queued, not 30 (fixed 32: 112 s).
        assert!(most <= 6, "and not much queued: {most}");
        assert!(slowest <= Duration::from_secs(22), "{slowest:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_server_with_room_gets_up_to_the_maximum() {
        let limit = Arc::new(AdaptiveLimit::new(32, Duration::from_secs(5)));
        let (most, slowest) = drive(Arc::clone(&limit), 1000, Duration::from_millis(200), 2000).await;
        assert_eq!(limit.current().2, 32, "grew to the maximum");
        assert!(most >= 30, "{most} at once");
        assert!(slowest <= Duration::from_millis(250), "{slowest:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn overload_signals_shrink_the_limit_once_per_round() {
        let limit = AdaptiveLimit::new(32, Duration::from_secs(5));
        // Rounds that fill the limit, answered fast: it grows by about one per round.
        for _ in 0..12 {
            let n = limit.current().0;
            let mut held = Vec::new();
            for _ in 0..n {
                held.push(limit.acquire().await.unwrap());
            }
            for p in held {
                limit.done(p, Duration::from_millis(100), false);
            }
        }
        let grown = limit.current().0;
        // One per reply would have reached the maximum (32) within three rounds.
        assert!((6..=14).contains(&grown), "under one per round from 2: {grown}");
        // A round of overloaded replies sent before the cut cuts once, not once per reply.
        let mut held = Vec::new();
        for _ in 0..grown {
            held.push(limit.acquire().await.unwrap());
        }
        tokio::time::advance(Duration::from_millis(10)).await;
        for p in held {
            limit.done(p, Duration::from_millis(100), true);
        }
        let after = limit.current().0;
        assert_eq!(after, (grown as f64 * BACKOFF) as usize, "cut by a quarter once: {grown} -> {after}");
        // A slow reply to a request sent after the cut cuts again.
        let p = limit.acquire().await.unwrap();
        limit.done(p, Duration::from_secs(6), false);
        assert!(limit.current().0 < after, "{after} -> {}", limit.current().0);
    }
}
