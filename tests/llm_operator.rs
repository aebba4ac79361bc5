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

/// Runs `cases` through `llm_decide` against `server` and returns the decisions, by key.
fn decide_all(config: LlmConfig, cases: Vec<Decision>) -> Vec<Decision> {
    let service = started(config);
    let mut outputs = timely::execute_directly(move |worker| {
        let (mut input, probe, seen) = dataflow(worker, &service);
        for c in cases {
            input.send(c);
        }
        input.advance_to(1);
        settle(worker, &probe, 1);
        seen.take()
    });
    outputs.sort_by(|a, b| a.1.key.cmp(&b.1.key));
    outputs.into_iter().map(|(_, d)| d).collect()
}

/// A script answering each case with the verdict its key names: `<ACTION>_<confidence %>`.
fn verdict_by_key() -> llm_server::Script {
    Arc::new(|req: &llm_server::Request| {
        let key = req.user.split_whitespace().nth(3).unwrap_or_default().trim_end_matches(',').to_owned();
        let (action, pct) = key.split_once('_').unwrap_or(("HOLD", "50"));
        let confidence = pct.parse::<f64>().unwrap_or(50.0) / 100.0;
        let content =
            format!(r#"{{"action":"{action}","reason":"the model says {action}","confidence":{confidence}}}"#);
        llm_server::Reply::Content { content, delay: Duration::ZERO }
    })
}

#[test]
fn a_verdict_that_changes_the_action_must_beat_the_rules_confidence_by_the_margin() {
    let server = LlmServer::start(verdict_by_key());
    let config = LlmConfig { base_url: server.base_url(), override_margin: 0.2, ..LlmConfig::default() };
    // The rules said HOLD at 0.6 for every case; the key is the model's answer.
    let keys = ["SELL_65", "SELL_80", "SELL_81", "HOLD_30", "BUY_95"];
    let cases = keys.iter().map(|k| Decision { action: Action::HOLD, ..case(k, 0.6) }).collect();
    let out = decide_all(config, cases);
    let got: Vec<(&str, Action, DecidedBy)> = out.iter().map(|d| (d.key.as_str(), d.action, d.decided_by)).collect();
    assert_eq!(
        got,
        [
            ("BUY_95", Action::BUY, DecidedBy::Llm),
            ("HOLD_30", Action::HOLD, DecidedBy::Llm), // agrees: taken with its own confidence
            ("SELL_65", Action::HOLD, DecidedBy::Rules),
            ("SELL_80", Action::HOLD, DecidedBy::Rules), // 0.8 is not more than 0.6 + 0.2
            ("SELL_81", Action::SELL, DecidedBy::Llm),
        ]
    );
    assert_eq!(out[1].confidence, 0.3);
    let stood = &out[2];
    assert_eq!(stood.confidence, 0.6, "the rules' confidence stands too");
    assert!(
        stood.reason.starts_with(
            "rules stand: the model's SELL at confidence 0.65 is not above the rules' 0.60 by more than 0.20"
        ) && stood.reason.contains("(it said: the model says SELL)")
            && stood.reason.ends_with("; rules: no rule fired"),
        "{}",
        stood.reason
    );
    assert_eq!(server.requests(), 5);
}

#[test]
fn a_reply_cut_off_at_the_token_limit_is_reported_as_such_after_one_repair() {
    for stream in [false, true] {
        let server = LlmServer::start(Arc::new(|_: &llm_server::Request| llm_server::Reply::Cut {
            content: r#"{"action":"SELL","reason":"no rule fired: no rule fired: no rule"#.into(),
        }));
        let config = LlmConfig { base_url: server.base_url(), stream, ..LlmConfig::default() };
        let out = decide_all(config, vec![case("CUT", 0.5)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].decided_by, DecidedBy::Fallback);
        let reason = &out[0].reason;
        assert!(reason.contains("cut off at the token limit (finish_reason: length"), "stream {stream}: {reason}");
        assert!(!reason.contains("not a JSON object"), "{reason}");
        assert_eq!(server.requests(), 2, "the first reply and one repair");
        let repair = &server.bodies()[1];
        let last = repair["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
        assert!(last.contains("cut off at the token limit"), "the model is told why: {last}");
    }
}

#[test]
fn replies_are_bounded_by_the_schema_and_max_tokens_is_derived_from_it() {
    let server = LlmServer::start(answering(Duration::ZERO));
    let out = decide_all(LlmConfig { base_url: server.base_url(), ..LlmConfig::default() }, vec![case("A", 0.5)]);
    assert_eq!(out.len(), 1);
    let body = &server.bodies()[0];
    let reason = &body["response_format"]["json_schema"]["schema"]["properties"]["reason"];
    let max_reason = reason["maxLength"].as_u64().expect("reason has maxLength") as usize;
    // Room for the longest reply the schema allows, and not much more.
    let longest = format!(r#"{{"action":"HOLD","reason":"{}","confidence":0.123456789}}"#, "x".repeat(max_reason));
    let max_tokens = body["max_tokens"].as_u64().unwrap() as usize;
    assert!(max_tokens >= longest.len() && max_tokens < 2 * longest.len(), "max_tokens {max_tokens}");
    // Set in the config, it is sent as given.
    let server = LlmServer::start(answering(Duration::ZERO));
    let config = LlmConfig { base_url: server.base_url(), max_tokens: Some(77), ..LlmConfig::default() };
    decide_all(config, vec![case("B", 0.5)]);
    assert_eq!(server.bodies()[0]["max_tokens"], 77);
}

#[test]
fn an_endpoint_that_refuses_max_length_gets_the_schema_without_it() {
    // As OpenAI's strict mode answers a schema keyword it does not support.
    let server = LlmServer::start(Arc::new(|req: &llm_server::Request| {
        if req.body["response_format"].to_string().contains("maxLength") {
            return llm_server::Reply::Rejected {
                message: "Invalid schema for response_format 'decision': In context=('properties', 'reason'), \
                          'maxLength' is not permitted."
                    .into(),
            };
        }
        llm_server::Reply::Content { content: llm_server::verdict_for(&req.user), delay: Duration::ZERO }
    }));
    let config =
        LlmConfig { base_url: server.base_url(), override_margin: 0.0, concurrency: 1, ..LlmConfig::default() };
    let out = decide_all(config, vec![case("A", 0.4), case("B", 0.4), case("C", 0.4)]);
    assert!(out.iter().all(|d| d.decided_by == DecidedBy::Llm), "{out:?}");
    let bounded: Vec<bool> =
        server.bodies().iter().map(|b| b["response_format"].to_string().contains("maxLength")).collect();
    assert_eq!(bounded, [true, false, false, false], "refused once, then never sent again");
}
