//! The LLM operator inside a timely dataflow: the frontier after it does not pass a time whose
//! request is still in flight, sure decisions pass at once, and replies come out at their input's
//! time. Against the scripted test server on 127.0.0.1.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

#[path = "support/llm_server.rs"]
mod llm_server;

use inflight::engine::Millis;
use inflight::engine::runtime::Pressure;
use inflight::engine::time::wall_nanos;
use inflight::operators::{Action, DecidedBy, Decision, LlmConfig, LlmExt, LlmService};
use llm_server::{LlmServer, answering};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

fn case(key: &str, confidence: f64) -> Decision {
    Decision { key: key.into(), id: format!("test/{key}"), confidence, ..Decision::sample() }
}

/// The test dataflow's input.
type Cases = InputHandle<Millis, timely::container::CapacityContainerBuilder<Vec<Decision>>>;

/// What a test dataflow saw come out of `llm_decide`: (time, decision).
type Seen = Rc<RefCell<Vec<(Millis, Decision)>>>;

/// input → llm_decide → record → probe, on `worker`.
fn dataflow(worker: &mut timely::worker::Worker, service: &Arc<LlmService>) -> (Cases, ProbeHandle<Millis>, Seen) {
    let mut input = InputHandle::new();
    let probe = ProbeHandle::new();
    let seen: Seen = Rc::default();
    let sink = Rc::clone(&seen);
    worker.dataflow::<Millis, _, _>(|scope| {
        scope
            .input_from(&mut input)
            .container::<Vec<Decision>>()
            .llm_decide(service)
            .inspect_core(move |event| {
                if let Ok((stamp, data)) = event {
                    let t = *stamp.least().unwrap();
                    sink.borrow_mut().extend(data.iter().map(|d| (t, d.clone())));
                }
            })
            .probe_with(&probe);
    });
    (input, probe, seen)
}

/// Steps `worker` until the probe passes `time`.
fn settle(worker: &mut timely::worker::Worker, probe: &ProbeHandle<Millis>, time: Millis) {
    let start = Instant::now();
    while probe.less_than(&time) {
        assert!(start.elapsed() < Duration::from_secs(10), "the dataflow did not settle");
        worker.step_or_park(Some(Duration::from_millis(5)));
    }
}

fn started(config: LlmConfig) -> Arc<LlmService> {
    let actions = vec![Action::BUY, Action::SELL, Action::HOLD];
    LlmService::start(&LlmConfig { enabled: true, actions, ..config }, Pressure::default()).unwrap()
}

#[test]
fn frontier_waits_for_in_flight_requests_and_replies_come_out_at_their_time() {
    let server = LlmServer::start(answering(Duration::from_millis(400)));
    let service = started(LlmConfig { base_url: server.base_url(), ..LlmConfig::default() });
    timely::execute_directly(move |worker| {
        let (mut input, probe, seen) = dataflow(worker, &service);
        input.advance_to(1_000);
        input.send(case("UNSURE", 0.5));
        input.send(case("SURE", 0.9));
        input.advance_to(2_000);
        input.send(case("LATER", 0.95));
        input.advance_to(3_000);

        // While the call is out (the server takes 400 ms), the frontier stays at 1000.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(250) {
            worker.step();
            assert!(probe.less_equal(&1_000), "the frontier passed a time with a request in flight");
        }
        {
            let seen = seen.borrow();
            let keys: Vec<&str> = seen.iter().map(|(_, d)| d.key.as_str()).collect();
            assert!(keys.contains(&"SURE") && keys.contains(&"LATER"), "sure decisions pass at once: {keys:?}");
            assert!(!keys.contains(&"UNSURE"), "the LLM's answer is not there yet");
        }
        settle(worker, &probe, 3_000);
        let seen = seen.borrow();
        let (t, d) = seen.iter().find(|(_, d)| d.key.as_str() == "UNSURE").unwrap();
        assert_eq!(*t, 1_000, "emitted at its input's time");
        assert_eq!(d.decided_by, DecidedBy::Llm);
        assert_eq!(seen.len(), 3, "one decision per input");
        assert!(start.elapsed() >= Duration::from_millis(400), "and only once the reply was there");
    });
    assert_eq!(server.requests(), 1, "only the unsure decision was sent");
}

#[test]
fn identical_prompts_share_one_call_and_later_ones_come_from_the_cache() {
    let server = LlmServer::start(answering(Duration::from_millis(200)));
    let service = started(LlmConfig { base_url: server.base_url(), ..LlmConfig::default() });
    let stats = Arc::clone(&service.stats);
    let outputs = timely::execute_directly(move |worker| {
        let (mut input, probe, seen) = dataflow(worker, &service);
        // Five identical cases at once share one call; five more later hit the cache.
        for round in 0..2 {
            for _ in 0..5 {
                input.send(case("SAME", 0.5));
            }
            input.advance_to(round + 1);
            settle(worker, &probe, round + 1);
        }
        seen.take()
    });
    assert_eq!(outputs.len(), 10, "one decision per input");
    assert!(outputs.iter().all(|(_, d)| d.decided_by == DecidedBy::Llm));
    assert_eq!(server.requests(), 1, "one call for ten identical prompts");
    assert_eq!(stats.shared.load(Ordering::Relaxed), 4);
    assert_eq!(stats.cache_hits.load(Ordering::Relaxed), 5);
}

#[test]
fn a_case_past_its_deadline_falls_back_while_the_call_is_still_out() {
    let server = LlmServer::start(answering(Duration::from_secs(3)));
    let deadline = Duration::from_millis(300);
    let service = started(LlmConfig { base_url: server.base_url(), deadline, ..LlmConfig::default() });
    let start = Instant::now();
    let outputs = timely::execute_directly(move |worker| {
        let (mut input, probe, seen) = dataflow(worker, &service);
        input.send(case("STALE", 0.5));
        input.advance_to(1);
        settle(worker, &probe, 1);
        seen.take()
    });
    assert!(start.elapsed() < Duration::from_secs(2), "did not wait for the slow reply: {:?}", start.elapsed());
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].1.decided_by, DecidedBy::Fallback);
    assert!(outputs[0].1.reason.contains("deadline passed"), "{}", outputs[0].1.reason);
}

#[test]
fn requests_per_second_limits_the_pace_of_calls() {
    let server = LlmServer::start(answering(Duration::ZERO));
    let paced = |rps: Option<u32>| {
        let config = LlmConfig { base_url: server.base_url(), requests_per_second: rps, ..LlmConfig::default() };
        let service = started(config);
        let start = Instant::now();
        let outputs = timely::execute_directly(move |worker| {
            let (mut input, probe, seen) = dataflow(worker, &service);
            for i in 0..30 {
                input.send(case(&format!("K{i}"), 0.5));
            }
            input.advance_to(1);
            settle(worker, &probe, 1);
            seen.take()
        });
        assert_eq!(outputs.len(), 30);
        start.elapsed()
    };
    let free = paced(None);
    // 20/s with a burst of 20: the last 10 calls wait 50 ms each.
    let limited = paced(Some(20));
    assert!(limited >= Duration::from_millis(450), "30 calls at 20/s took {limited:?}");
    assert!(free < Duration::from_millis(400), "unlimited took {free:?}");
}

#[test]
fn cases_waiting_for_a_slot_fall_back_at_their_deadline_too() {
    let server = LlmServer::start(answering(Duration::from_secs(2)));
    let deadline = Duration::from_millis(300);
    let config = LlmConfig { base_url: server.base_url(), deadline, concurrency: 1, ..LlmConfig::default() };
    let service = started(config);
    let start = Instant::now();
    let outputs = timely::execute_directly(move |worker| {
        let (mut input, probe, seen) = dataflow(worker, &service);
        for key in ["A", "B", "C"] {
            input.send(Decision { ingest_ns: wall_nanos(), ..case(key, 0.5) });
        }
        input.advance_to(1);
        settle(worker, &probe, 1);
        seen.take()
    });
    assert!(start.elapsed() < Duration::from_millis(1500), "nobody waited for the slow reply: {:?}", start.elapsed());
    assert_eq!(outputs.len(), 3);
    for (_, d) in &outputs {
        assert_eq!(d.decided_by, DecidedBy::Fallback, "{}", d.key);
        assert!(d.reason.contains("deadline passed"), "{}", d.reason);
    }
    assert_eq!(server.requests(), 1, "the two waiting cases were never sent");
}
