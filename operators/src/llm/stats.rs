//! Counters of the LLM stage, shared by every worker of a process, for the run summary.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the LLM stage did.
#[derive(Debug, Default)]
pub struct LlmStats {
    /// Decisions that reached the stage.
    pub cases: AtomicU64,
    /// Decisions kept as the rules made them, not sent: the rules were confident enough.
    pub confident: AtomicU64,
    /// HTTP attempts sent (first tries, retries and repairs).
    pub attempts: AtomicU64,
    /// Retries after a transient failure.
    pub retries: AtomicU64,
    /// Repair attempts after an invalid reply.
    pub repairs: AtomicU64,
    /// Decisions made by the LLM.
    pub decided: AtomicU64,
    /// Verdicts that would have changed the rules' action without enough confidence: the rules'
    /// decision stood.
    pub overruled: AtomicU64,
    /// Decisions that fell back to the rules.
    pub fallbacks: AtomicU64,
    /// Cases given the rules' decision without a call: the token budget was spent.
    pub budget: AtomicU64,
    /// Answered from the cache of earlier replies.
    pub cache_hits: AtomicU64,
    /// Joined an identical request already in flight.
    pub shared: AtomicU64,
    /// Answered from the replay log.
    pub replayed: AtomicU64,
    /// Times a case went on to the next endpoint after one failed.
    pub failovers: AtomicU64,
    /// Answered from the reply journal of a run this one restores (asked before the restore).
    pub resumed: AtomicU64,
    /// Requests in flight now.
    pub in_flight: AtomicU64,
    /// Most requests in flight at once.
    pub max_in_flight: AtomicU64,
    /// Times the breaker opened.
    pub breaker_opened: AtomicU64,
    /// Tokens of prompts, as reported.
    pub prompt_tokens: AtomicU64,
    /// Tokens of replies, as reported.
    pub completion_tokens: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    latency: Mutex<Option<Histogram<u64>>>,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl LlmStats {
    /// Counts a failed attempt by kind.
    pub fn failed(&self, kind: &'static str) {
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(kind).or_default() += 1;
        }
    }

    /// Failed attempts by kind.
    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Records the latency of a successful attempt.
    pub fn latency(&self, took: Duration) {
        if let Ok(mut h) = self.latency.lock() {
            if h.is_none() {
                *h = Histogram::new_with_bounds(1, 3_600_000_000, 3).ok();
            }
            if let Some(h) = h.as_mut() {
                let _ = h.record((took.as_micros() as u64).max(1));
            }
        }
    }

    /// One more request in flight.
    pub(crate) fn started(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
    }

    /// One request fewer in flight.
    pub(crate) fn ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Latency percentiles of successful attempts in ms: (p50, p99, max, count).
    pub fn latency_ms(&self) -> Option<(f64, f64, f64, u64)> {
        let h = self.latency.lock().ok()?;
        let h = h.as_ref()?;
        let ms = |v: u64| v as f64 / 1000.0;
        Some((ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)), ms(h.max()), h.len()))
    }

    /// Copies the counters into the metrics recorder (called before each scrape of `/metrics`).
    pub fn record_metrics(&self) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            ("cases", &self.cases),
            ("rules_confident", &self.confident),
            ("attempts", &self.attempts),
            ("retries", &self.retries),
            ("repairs", &self.repairs),
            ("decided", &self.decided),
            ("overruled", &self.overruled),
            ("fallbacks", &self.fallbacks),
            ("budget", &self.budget),
            ("cache_hits", &self.cache_hits),
            ("shared", &self.shared),
            ("replayed", &self.replayed),
            ("resumed", &self.resumed),
            ("failovers", &self.failovers),
            ("breaker_opened", &self.breaker_opened),
            ("prompt_tokens", &self.prompt_tokens),
            ("completion_tokens", &self.completion_tokens),
        ];
        for (what, counter) in counters {
            metrics::counter!(format!("inflight_llm_{what}_total")).absolute(get(counter));
        }
        metrics::gauge!("inflight_llm_in_flight").set(get(&self.in_flight) as f64);
        for (kind, n) in self.failures() {
            metrics::counter!("inflight_llm_failures_total", "kind" => kind).absolute(n);
        }
        if let Some((p50, p99, max, _)) = self.latency_ms() {
            for (quantile, ms) in [("0.5", p50), ("0.99", p99), ("1", max)] {
                metrics::gauge!("inflight_llm_latency_seconds", "quantile" => quantile).set(ms / 1000.0);
            }
        }
    }

    /// The counters as the live view's `/api/stats` shows them (no settings, so no secrets).
    pub fn live_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "cases": get(&self.cases),
            "calls": get(&self.attempts),
            "decided": get(&self.decided),
            "overruled": get(&self.overruled),
            "in_flight": get(&self.in_flight),
            "fallbacks": get(&self.fallbacks),
            "budget": get(&self.budget),
            "retries": get(&self.retries),
            "cache_hits": get(&self.cache_hits),
            "failures": self.failures(),
            "latency_ms": self.latency_ms().map(|(p50, p99, max, n)| serde_json::json!({
                "p50": p50, "p99": p99, "max": max, "count": n,
            })),
        })
    }

    /// The summary lines of a run.
    pub fn summary(&self, breaker: &str) -> Vec<String> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut lines = vec![
            format!(
                "llm cases {}: {} kept (the rules were confident enough), {} for the model; decided by llm {}, overruled {}, fallbacks {}, budget spent {}",
                get(&self.cases),
                get(&self.confident),
                get(&self.cases).saturating_sub(get(&self.confident)),
                get(&self.decided),
                get(&self.overruled),
                get(&self.fallbacks),
                get(&self.budget)
            ),
            format!(
                "llm attempts {} (retries {}, repairs {}, failovers {}), cache hits {}, shared {}, replayed {}, resumed {}, max in flight {}",
                get(&self.attempts),
                get(&self.retries),
                get(&self.repairs),
                get(&self.failovers),
                get(&self.cache_hits),
                get(&self.shared),
                get(&self.replayed),
                get(&self.resumed),
                get(&self.max_in_flight)
            ),
            format!(
                "llm tokens prompt {} completion {}, breaker {breaker} (opened {} times)",
                get(&self.prompt_tokens),
                get(&self.completion_tokens),
                get(&self.breaker_opened)
            ),
        ];
        let failures = self.failures();
        if !failures.is_empty() {
            let parts: Vec<String> = failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
            lines.push(format!("llm failures by kind: {}", parts.join(", ")));
        }
        if let Some((p50, p99, max, n)) = self.latency_ms() {
            lines.push(format!("llm latency p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms  ({n} replies)"));
        }
        lines
    }
}
