//! `stream.llm_decide(&service)`: the confidence gate and the asynchronous LLM call.
//!
//! Decisions the rules are sure enough of pass at once. The others are rendered into a prompt and
//! queued; at most `concurrency` requests per worker are in flight on the service's tokio runtime.
//! The operator holds the input's capability for every queued or in-flight case, so the frontier
//! after it never passes a time whose decision is still out, and emits each result at that time
//! when it arrives (completion order), woken by a sync activator — a worker never blocks on the
//! network. When the queue is over `max_buffered`, the sources of the process pause.

use super::calls::{LlmService, Outcome};
use super::client::Message;
use super::prompt::LlmVerdict;
use super::stats::bump;
use crate::decision::{DecidedBy, Decision};
use inflight_engine::signals::Pressure;
use inflight_engine::time::{format_rfc3339, wall_millis, wall_nanos};
use inflight_engine::{Millis, Stream};
use lru::LruCache;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::{Operator, OperatorInfo};

/// The LLM stage on a stream of rule decisions.
///
/// Not run here: it needs an OpenAI-compatible server (llama.cpp's `llama-server`, vLLM, Ollama or
/// OpenAI itself) at `base_url`.
///
/// ```no_run
/// use inflight_engine::signals::Pressure;
/// use inflight_operators::{Action, Decision, LlmConfig, LlmExt, LlmService};
/// use timely::dataflow::operators::{Inspect, ToStream};
///
/// const ALLOW: Action = Action::new("ALLOW");
/// const BLOCK: Action = Action::new("BLOCK");
/// let config = LlmConfig {
///     enabled: true,
///     base_url: "http://127.0.0.1:8080/v1".into(),
///     actions: vec![ALLOW, BLOCK],
///     // Rule decisions below this confidence go to the model; the others pass as they are.
///     min_confidence: 0.7,
///     ..LlmConfig::default()
/// };
/// let service = LlmService::start(&config, Pressure::default()).unwrap();
/// timely::example(move |scope| {
///     let unsure = Decision::new("cards", "c1", 1_000, BLOCK, 0.5).reason("3 payments in a minute");
///     let sure = Decision::new("cards", "c2", 1_000, ALLOW, 0.95).reason("one payment");
///     vec![unsure, sure]
///         .to_stream(scope)
///         .llm_decide(&service)
///         // Exactly one decision per input: by the rules, by the model, or the rules' as a fallback.
///         .inspect(|d| println!("{} {} by {:?}", d.key, d.action, d.decided_by));
/// });
/// ```
pub trait LlmExt<'scope> {
    /// Sends decisions whose confidence is below `llm.min_confidence` to the LLM; every input
    /// yields exactly one decision (`rules`, `llm` or `fallback`).
    fn llm_decide(self, service: &Arc<LlmService>) -> Stream<'scope, Decision>;
}

/// A case waiting for a free request slot.
struct Queued {
    cap: Capability<Millis>,
    decision: Decision,
    key: u64,
    messages: Vec<Message>,
}

/// Releases the source pause if the operator goes away while engaged.
struct Engaged {
    pressure: Pressure,
    on: bool,
}

impl Engaged {
    fn set(&mut self, on: bool) {
        if on != self.on {
            if on {
                self.pressure.engage();
            } else {
                self.pressure.release();
            }
            self.on = on;
        }
    }
}

impl Drop for Engaged {
    fn drop(&mut self) {
        self.set(false);
    }
}

impl<'scope> LlmExt<'scope> for Stream<'scope, Decision> {
    fn llm_decide(self, service: &Arc<LlmService>) -> Stream<'scope, Decision> {
        let service = Arc::clone(service);
        let scope = self.scope();
        self.unary_frontier(Pipeline, "LlmDecide", move |_cap, info: OperatorInfo| {
            let activator = Arc::new(scope.worker().sync_activator_for(info.address.to_vec()));
            let waker = scope.activator_for(info.address.clone());
            let mut wake_at: Option<Instant> = None;
            let (tx, rx) = mpsc::channel::<(u64, Outcome)>();
            let config = service.config.clone();
            let stats = Arc::clone(&service.stats);
            let mut queue: VecDeque<Queued> = VecDeque::new();
            let mut waiting: FxHashMap<u64, Vec<(Capability<Millis>, Decision)>> = FxHashMap::default();
            let mut cache: Option<LruCache<u64, LlmVerdict>> = NonZeroUsize::new(config.cache_size).map(LruCache::new);
            let mut in_flight = 0usize;
            let mut engaged = Engaged { pressure: service.pressure.clone(), on: false };
            move |(input, _frontier), output| {
                let mut ready: Vec<(Capability<Millis>, Decision)> = Vec::new();
                input.for_each_stamp(|cap, data| {
                    let Some(held) = cap.retain_least(output.output_index()) else { return };
                    for decision in data.flat_map(|batch| batch.drain(..)) {
                        bump(&stats.cases);
                        if decision.confidence >= config.min_confidence {
                            bump(&stats.confident);
                            ready.push((held.clone(), decision));
                            continue;
                        }
                        match service.prompts.render(&decision) {
                            Ok(messages) => {
                                let key = service.key(&messages);
                                queue.push_back(Queued { cap: held.clone(), decision, key, messages });
                            }
                            Err(e) => {
                                // Checked at start, so only data can make it fail: fall back.
                                bump(&stats.fallbacks);
                                ready.push((held.clone(), fallback(decision, &e)));
                            }
                        }
                    }
                });
                // Replies that came back.
                while let Ok((key, outcome)) = rx.try_recv() {
                    in_flight -= 1;
                    if let (Outcome::Verdict(v), Some(cache)) = (&outcome, cache.as_mut()) {
                        cache.put(key, v.clone());
                    }
                    for (cap, decision) in waiting.remove(&key).unwrap_or_default() {
                        ready.push((cap, finish(decision, &outcome, &service)));
                    }
                }
                // Cases that waited for a slot past their deadline fall back now (a stale tick is
                // worth nothing); the queue is in arrival order, so the oldest are in front.
                while let Some(case) = queue.pop_front() {
                    if !remaining(config.deadline, case.decision.ingest_ns).is_zero() {
                        queue.push_front(case);
                        break;
                    }
                    let outcome = service.caller.expired(case.key, &case.messages, config.deadline);
                    ready.push((case.cap, finish(case.decision, &outcome, &service)));
                }
                // Send what fits; identical prompts share a call, known ones come from the cache.
                while in_flight < config.concurrency {
                    let Some(case) = queue.pop_front() else { break };
                    if let Some(v) = cache.as_mut().and_then(|c| c.get(&case.key)) {
                        bump(&stats.cache_hits);
                        let outcome = Outcome::Verdict(v.clone());
                        ready.push((case.cap, finish(case.decision, &outcome, &service)));
                        continue;
                    }
                    if let Some(waiters) = waiting.get_mut(&case.key) {
                        bump(&stats.shared);
                        waiters.push((case.cap, case.decision));
                        continue;
                    }
                    if let Some(outcome) = service.caller.admit(&case.decision.key, case.key, &case.messages) {
                        ready.push((case.cap, finish(case.decision, &outcome, &service)));
                        continue;
                    }
                    let left = remaining(config.deadline, case.decision.ingest_ns);
                    in_flight += 1;
                    let evidence = case.decision.evidence.as_str().to_owned();
                    waiting.insert(case.key, vec![(case.cap, case.decision)]);
                    let (caller, tx, activator) = (Arc::clone(&service.caller), tx.clone(), Arc::clone(&activator));
                    service.runtime.spawn(async move {
                        let outcome = caller.decide(case.key, case.messages, &evidence, left).await;
                        // The operator may be gone (run failed); nothing to tell then.
                        if tx.send((case.key, outcome)).is_ok() {
                            let _ = activator.activate();
                        }
                    });
                }
                for (cap, decision) in ready {
                    output.session(&cap).give(decision);
                }
                engaged.set(queue.len() >= config.max_buffered);
                // Wake up when the oldest waiting case's deadline passes, slots free or not (one
                // timer at a time: this runs on every reply).
                if let Some(front) = queue.front() {
                    let (now, left) = (Instant::now(), remaining(config.deadline, front.decision.ingest_ns));
                    if wake_at.is_none_or(|w| w <= now || now + left < w) {
                        waker.activate_after(left);
                        wake_at = Some(now + left);
                    }
                }
            }
        })
    }
}

/// What is left of a case's deadline, counted from when its input was read.
fn remaining(deadline: Duration, ingest_ns: u64) -> Duration {
    if ingest_ns == 0 {
        return deadline;
    }
    deadline.saturating_sub(Duration::from_nanos(wall_nanos().saturating_sub(ingest_ns)))
}

fn finish(mut decision: Decision, outcome: &Outcome, service: &LlmService) -> Decision {
    let stats = &service.stats;
    match outcome {
        Outcome::Verdict(v) if !convincing(&decision, v, service.config.override_margin) => {
            bump(&stats.overruled);
            decision.reason = format!(
                "rules stand: the model's {} at confidence {:.2} is not above the rules' {:.2} by more than {:.2} \
                 (it said: {}); rules: {}",
                v.action, v.confidence, decision.confidence, service.config.override_margin, v.reason, decision.reason
            );
            decision.decided_at = format_rfc3339(wall_millis());
            decision
        }
        Outcome::Verdict(v) => {
            bump(&stats.decided);
            if let Some(check) = &service.check {
                check.apply(&mut decision, v);
            }
            decision.action = v.action;
            decision.reason = v.reason.clone();
            decision.confidence = v.confidence;
            decision.decided_by = DecidedBy::Llm;
            decision.model = v.model.clone();
            decision.decided_at = format_rfc3339(wall_millis());
            decision
        }
        Outcome::Error(e) => {
            bump(&stats.fallbacks);
            fallback(decision, e)
        }
        Outcome::Budget(why) => {
            bump(&stats.budget);
            decision.reason = format!("LLM budget spent ({why}); rules: {}", decision.reason);
            decision.decided_by = DecidedBy::Budget;
            decision.decided_at = format_rfc3339(wall_millis());
            decision
        }
    }
}

/// A verdict may change the rules' action only when it is more confident than the rules by more
/// than `margin`: a small model's unsure guess must not override a rule (it keeps the rules'
/// action when it agrees, with its own reason and confidence).
fn convincing(rules: &Decision, verdict: &LlmVerdict, margin: f64) -> bool {
    verdict.action == rules.action || verdict.confidence > rules.confidence + margin
}

/// The rules' decision, marked as a fallback with what went wrong.
fn fallback(mut decision: Decision, error: &str) -> Decision {
    decision.reason = format!("LLM unavailable ({error}); rules: {}", decision.reason);
    decision.decided_by = DecidedBy::Fallback;
    decision.decided_at = format_rfc3339(wall_millis());
    decision
}
