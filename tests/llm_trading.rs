//! The LLM stage end to end through the `inflight` binary, against a scripted OpenAI-compatible
//! server on 127.0.0.1: exactly one decision per case under every fault, bounded concurrency and
//! memory with a slow endpoint, call log and replay, streaming, the API key, bad settings.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

#[path = "support/cli.rs"]
mod cli;
#[path = "support/llm_server.rs"]
mod llm_server;

use llm_server::{LlmServer, Reply, Request, Script, answering, verdict_for};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_inflight");

/// A generated market file in a temp dir.
fn market(dir: &Path, events: &str, assets: &str, rate: &str) -> PathBuf {
    let path = dir.join("market.jsonl");
    let out = Command::new(BIN)
        .args(["gen", "market", "--events", events, "--assets", assets, "--rate", rate])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&path, out.stdout).unwrap();
    path
}

/// A config file with quick retries (the defaults wait up to seconds) that takes every verdict
/// (these tests follow the scripted verdicts through; the override guard has tests of its own).
fn quick_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("trading.toml");
    let text = format!(
        "emit = \"all\"\n[llm]\nretries = 2\nbackoff = \"5ms\"\nbackoff_max = \"20ms\"\noverride_margin = -1.0\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("run").arg("trading").args(args).env_remove("OPENAI_API_KEY").env_remove("OPENAI_BASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `run trading --input IN --config CFG -o OUT` plus `extra`.
fn run_to(input: &Path, config: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let io = ["--input", input.to_str().unwrap(), "--config", config.to_str().unwrap(), "-o", out.to_str().unwrap()];
    run(&[&io[..], extra].concat(), env)
}

#[track_caller]
fn ok(out: Output) -> Output {
    assert!(out.status.success(), "inflight failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Decisions by id, without the wall-clock field.
fn by_id(path: &Path) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for mut d in lines(path) {
        d.as_object_mut().unwrap().remove("decided_at");
        let id = d["id"].as_str().unwrap().to_owned();
        assert!(map.insert(id.clone(), d).is_none(), "decision {id} emitted twice");
    }
    map
}

/// The first user message of a request: the case's prompt, also in repair attempts.
fn case_prompt(req: &Request) -> String {
    req.body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The fault class of a case, from its prompt: what the server does to it.
fn class(prompt: &str) -> u64 {
    fnv(prompt) % 8
}

/// The first line of the prompt the trading pipeline sends for a decision (its default user
/// template): names the case on both sides.
fn case_of(d: &Value) -> String {
    format!("Asset {}, bar ending {}.", d["key"].as_str().unwrap(), d["event_time"].as_str().unwrap())
}

#[test]
fn every_case_yields_exactly_one_decision_under_every_fault() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "4000", "8", "40");
    // Whole classes fail for good: the breaker would (rightly) stop calling; not what this tests.
    let config = quick_config(dir.path(), "breaker_failures = 0\n");
    let rules_out = dir.path().join("rules.jsonl");
    ok(run_to(&input, &config, &rules_out, &[], &[]));
    let rules = by_id(&rules_out);
    assert!(rules.len() > 300, "enough cases: {}", rules.len());

    // Per case (by the hash of its prompt): 0 fine; 1 a 500 first; 2 a 429 first; 3 malformed JSON
    // always; 4 a reset first; 5 a wrong-schema reply, then a valid one on the repair; 6 503 always;
    // 7 slower than the timeout always.
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let tries = Arc::clone(&seen);
    let script: Script = Arc::new(move |req: &Request| {
        let prompt = case_prompt(req).lines().next().unwrap_or_default().to_owned();
        let n = {
            let mut t = tries.lock().unwrap();
            let n = t.entry(prompt.clone()).or_default();
            *n += 1;
            *n
        };
        let fine = Reply::Content { content: verdict_for(&prompt), delay: Duration::ZERO };
        match (class(&prompt), n) {
            (1, 1) => Reply::Status { code: 500, retry_after: None, delay: Duration::ZERO },
            (2, 1) => Reply::Status { code: 429, retry_after: Some(0), delay: Duration::ZERO },
            (3, _) => Reply::Raw { body: "{\"choices\": [oops".into(), delay: Duration::ZERO },
            (4, 1) => Reply::Reset { delay: Duration::ZERO },
            (5, 1) => Reply::Content {
                content: r#"{"action":"MAYBE","reason":"unsure","confidence":2}"#.into(),
                delay: Duration::ZERO,
            },
            (6, _) => Reply::Status { code: 503, retry_after: None, delay: Duration::ZERO },
            (7, _) => Reply::Content { content: verdict_for(&prompt), delay: Duration::from_millis(400) },
            _ => fine,
        }
    });
    let server = LlmServer::start(script);
    let out_path = dir.path().join("llm.jsonl");
    let base = server.base_url();
    let llm = ["--llm", "--llm-min-confidence", "1", "--llm-base-url", &base, "--llm-timeout", "150ms", "-w", "2"];
    let out = ok(run_to(&input, &config, &out_path, &llm, &[]));
    let got = by_id(&out_path);
    assert_eq!(got.keys().collect::<Vec<_>>(), rules.keys().collect::<Vec<_>>(), "one decision per case");
    let mut classes = [0u32; 8];
    for (id, rule) in &rules {
        let d = &got[id];
        let prompt = case_of(rule);
        let c = class(&prompt) as usize;
        classes[c] += 1;
        let expect_llm = !matches!(c, 3 | 6 | 7);
        if expect_llm {
            let verdict: Value = serde_json::from_str(&verdict_for(&prompt)).unwrap();
            assert_eq!(d["decided_by"], "llm", "{id} (class {c}): {d}");
            assert_eq!(d["reason"], verdict["reason"], "{id} (class {c}): {d} vs {verdict}");
            assert_eq!(d["action"], verdict["action"], "{id}");
            assert_eq!(d["confidence"], verdict["confidence"], "{id}");
            assert_eq!(d["reason"], verdict["reason"], "{id}");
        } else {
            assert_eq!(d["decided_by"], "fallback", "{id} (class {c}): {d}");
            assert_eq!(d["action"], rule["action"], "{id}: the fallback is the rules' action");
            let reason = d["reason"].as_str().unwrap();
            let why = match c {
                3 => "malformed reply",
                6 => "HTTP 503",
                _ => "timed out",
            };
            assert!(reason.contains(why) && reason.contains(rule["reason"].as_str().unwrap()), "{id}: {reason}");
        }
        assert_eq!(d["evidence"], rule["evidence"], "{id}: evidence kept");
    }
    assert!(classes.iter().all(|&n| n > 10), "every fault class was exercised: {classes:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // --llm-min-confidence 1: no case is kept as the rules made it, every one is for the model.
    let n = rules.len();
    let line = format!("llm cases {n}: 0 kept (the rules were confident enough), {n} for the model;");
    assert!(stderr.contains(&line), "summary has the LLM lines: {stderr}");
}

#[test]
fn log_then_replay_gives_identical_decisions_without_calls() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "3000", "5", "50");
    let config = quick_config(dir.path(), "");
    let server = LlmServer::start(answering(Duration::from_millis(2)));
    let log = dir.path().join("calls.jsonl");
    let (first, second) = (dir.path().join("first.jsonl"), dir.path().join("second.jsonl"));
    let (base, log_path) = (server.base_url(), log.to_str().unwrap());
    let live = ["--llm", "--llm-base-url", &base, "--llm-min-confidence", "1", "--llm-log", log_path];
    ok(run_to(&input, &config, &first, &live, &[]));
    let calls = server.requests();
    assert!(calls > 50, "the first run called: {calls}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count() as u64, calls, "one log line per call");
    let replay = ["--llm-replay", log_path, "--llm-min-confidence", "1"];
    let out = ok(run_to(&input, &config, &second, &replay, &[]));
    assert_eq!(server.requests(), calls, "the replay made no call");
    let (a, b) = (by_id(&first), by_id(&second));
    assert_eq!(a.len(), b.len());
    assert_eq!(a, b, "replayed decisions are identical");
    assert!(a.values().all(|d| d["decided_by"] == "llm"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("replayed"), "summary counts replays");
}

/// `inflight backtest --llm-replay`: the pipeline's LLM decisions come from the call log alone
/// (no request reaches the server), and the backtest is that of the logged run's decisions.
#[test]
fn a_backtest_with_llm_replay_makes_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "3000", "5", "50");
    let config = quick_config(dir.path(), "");
    let server = LlmServer::start(answering(Duration::from_millis(1)));
    let (log, first) = (dir.path().join("calls.jsonl"), dir.path().join("first.jsonl"));
    let base = server.base_url();
    let live = ["--llm", "--llm-base-url", &base, "--llm-min-confidence", "1", "--llm-log", log.to_str().unwrap()];
    ok(run_to(&input, &config, &first, &[&live[..], &["--emit", "all"]].concat(), &[]));
    let calls = server.requests();
    assert!(calls > 50, "the logged run called: {calls}");
    let orders = lines(&first).iter().filter(|d| d["action"] == "BUY" || d["action"] == "SELL").count();
    assert!(orders > 0, "the model's answers include trades");
    let (replayed, direct) = (dir.path().join("replayed.json"), dir.path().join("direct.json"));
    let backtest = |extra: &[&str], report: &Path| {
        let mut args = vec!["backtest", "--input", input.to_str().unwrap(), "--report", report.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(Command::new(BIN).args(&args).env_remove("OPENAI_API_KEY").env_remove("OPENAI_BASE_URL").output().unwrap())
    };
    let out = backtest(
        &[
            "--llm-replay",
            log.to_str().unwrap(),
            "--",
            "--config",
            config.to_str().unwrap(),
            "--llm-min-confidence",
            "1",
            "--emit",
            "all",
        ],
        &replayed,
    );
    assert_eq!(server.requests(), calls, "the backtest made no request");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("replayed") && stderr.contains("pipeline (LLM replayed)"), "{stderr}");
    backtest(&["--decisions", first.to_str().unwrap()], &direct);
    let read = |p: &Path| serde_json::from_str::<Value>(&std::fs::read_to_string(p).unwrap()).unwrap();
    let (a, b) = (read(&replayed), read(&direct));
    assert!(a["total"]["trades"].as_u64().unwrap() + a["total"]["unfilled"].as_u64().unwrap() == orders as u64);
    assert_eq!(a, b, "the replayed run's backtest is the logged run's");
}

/// `[sizing]` with the LLM stage: the model's actions are sized (the position follows what leaves
/// the stage, in event-time order per asset), the same at -w 1 and -w 2.
#[test]
fn sized_llm_decisions_follow_the_models_actions_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "12000", "4", "100");
    let sizes = cli::Sizes { risk: 1.0, multiple: 2.0, lot: 0.001, cap: 0.05 };
    let sizing = format!(
        "[sizing]\nrisk_per_trade = {}\natr_multiple = {}\nlot = {}\nmax_position = {}\n",
        sizes.risk, sizes.multiple, sizes.lot, sizes.cap
    );
    let config = quick_config(dir.path(), &sizing);
    let server = LlmServer::start(answering(Duration::ZERO));
    let base = server.base_url();
    let run = |tag: &str, workers: &str| {
        let out = dir.path().join(format!("{tag}.jsonl"));
        let llm = ["--llm", "--llm-base-url", &base, "--llm-min-confidence", "1", "-w", workers];
        ok(run_to(&input, &config, &out, &llm, &[]));
        out
    };
    let one = run("w1", "1");
    let decisions = lines(&one);
    let seen = cli::check_sized(&decisions, sizes);
    for case in ["traded", "is at max_position", "there is no position to sell"] {
        assert!(seen.get(case).is_some_and(|n| *n > 0), "{case} never happened: {seen:?}");
    }
    // The model's trades are what is sized: BUYs where the rules said HOLD, among them.
    let model_buys = decisions
        .iter()
        .filter(|d| d["decided_by"] == "llm" && d["action"] == "BUY" && !d["reason"].as_str().unwrap().contains("MACD"))
        .count();
    assert!(model_buys > 0, "no sized BUY of the model's own");
    assert!(decisions.iter().all(|d| d["position_after"].is_number()), "every decision carries the position");
    assert_eq!(by_id(&one), by_id(&run("w2", "2")), "-w 1 and -w 2 size alike");
}

#[test]
fn streamed_and_plain_replies_give_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "4000", "4", "50");
    let config = quick_config(dir.path(), "");
    let server = LlmServer::start(answering(Duration::ZERO));
    let base = server.base_url();
    let (plain, streamed) = (dir.path().join("plain.jsonl"), dir.path().join("streamed.jsonl"));
    let llm = ["--llm", "--llm-base-url", &base, "--llm-min-confidence", "1"];
    ok(run_to(&input, &config, &plain, &llm, &[]));
    ok(run_to(&input, &config, &streamed, &[&llm[..], &["--llm-stream"]].concat(), &[]));
    assert!(server.bodies().iter().any(|b| b["stream"] == true), "the second run streamed");
    let (p, s) = (by_id(&plain), by_id(&streamed));
    assert!(p.len() > 50);
    assert_eq!(p, s);
    assert!(p.values().all(|d| d["decided_by"] == "llm"));
}

#[test]
fn slow_endpoint_keeps_concurrency_and_memory_bounded_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // 200 assets, 10 ticks per asset and second, 134 s: about 20,000 bars past the warm-up.
    let input = market(dir.path(), "268000", "200", "2000");
    let config = quick_config(dir.path(), "");
    let server = LlmServer::start(answering(Duration::from_millis(50)));
    let out_path = dir.path().join("out.jsonl");
    let mut child = Command::new(BIN)
        .args(["run", "trading", "--input", input.to_str().unwrap(), "--config", config.to_str().unwrap()])
        .args(["-o", out_path.to_str().unwrap(), "--llm", "--llm-base-url", &server.base_url()])
        .args(["--llm-min-confidence", "1", "--llm-concurrency", "32"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let decisions = lines(&out_path);
    assert!(decisions.len() >= 19_000, "about 20,000 LLM-bound decisions: {}", decisions.len());
    assert!(decisions.iter().all(|d| d["decided_by"] == "llm"), "none fell back");
    assert_eq!(server.requests() as usize, decisions.len(), "one call per decision");
    assert!(server.max_in_flight() <= 32, "at most 32 in flight, saw {}", server.max_in_flight());
    assert!(server.max_in_flight() >= 16, "and the concurrency was used: {}", server.max_in_flight());
    // The input alone is ~45 MB mapped; decisions waiting are bounded by llm.max_buffered.
    assert!(peak_kb < 250_000, "peak RSS {peak_kb} kB");
}

#[test]
fn unreachable_endpoint_falls_back_fast_with_the_breaker_open() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "4000", "4", "50");
    let config = quick_config(dir.path(), "breaker_failures = 3\nbreaker_cooldown = \"1h\"\n");
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out_path = dir.path().join("out.jsonl");
    let base = format!("http://127.0.0.1:{port}/v1");
    let out =
        ok(run_to(&input, &config, &out_path, &["--llm", "--llm-base-url", &base, "--llm-min-confidence", "1"], &[]));
    let decisions = lines(&out_path);
    assert!(decisions.len() > 50);
    assert!(decisions.iter().all(|d| d["decided_by"] == "fallback"));
    let breaker = decisions.iter().filter(|d| d["reason"].as_str().unwrap().contains("circuit breaker open")).count();
    assert!(breaker > decisions.len() / 2, "most were refused by the open breaker: {breaker}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("breaker open (opened 1 times)"), "{stderr}");
}

#[test]
fn the_gate_sends_only_unsure_decisions_and_the_key_is_sent_but_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "3000", "5", "50");
    let config = quick_config(dir.path(), "");
    let server = LlmServer::start(answering(Duration::ZERO));
    let (out_path, log) = (dir.path().join("out.jsonl"), dir.path().join("calls.jsonl"));
    let rules_out = dir.path().join("rules.jsonl");
    ok(run_to(&input, &config, &rules_out, &[], &[]));
    let secret = "sk-test-0123456789-secret";
    let env = [("OPENAI_API_KEY", secret), ("OPENAI_BASE_URL", &server.base_url()), ("RUST_LOG", "debug")];
    let out = ok(run_to(&input, &config, &out_path, &["--llm", "--llm-log", log.to_str().unwrap()], &env));
    let (rules, got) = (by_id(&rules_out), by_id(&out_path));
    assert_eq!(rules.len(), got.len());
    let mut called = 0;
    for (id, rule) in &rules {
        let unsure = rule["confidence"].as_f64().unwrap() < 0.7;
        let d = &got[id];
        if unsure {
            called += 1;
            assert_eq!(d["decided_by"], "llm", "{id}");
        } else {
            assert_eq!(d, rule, "{id}: a sure decision passes unchanged");
        }
    }
    assert!(called > 0 && called < rules.len(), "both kinds present: {called} of {}", rules.len());
    assert_eq!(server.requests() as usize, called);
    assert!(server.auth_headers().iter().all(|h| h.as_deref() == Some(&format!("Bearer {secret}")[..])));
    let shown = [String::from_utf8_lossy(&out.stderr).into_owned(), std::fs::read_to_string(&log).unwrap()];
    assert!(shown.iter().all(|s| !s.contains(secret)), "the key never appears in logs or the call log");
}

#[test]
fn bad_llm_settings_exit_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--llm", "--llm-min-confidence", "1.5"], "llm.min_confidence must be in [0, 1]"),
        (&["--llm", "--llm-base-url", "ftp://x"], "must be http:// or https://"),
        (&["--llm-replay", "/nonexistent/calls.jsonl"], "cannot open the LLM replay log"),
        (&["--llm", "--llm-concurrency", "0"], "llm.concurrency must be at least 1"),
    ];
    for (args, message) in cases {
        let out = run(&[&["-o", dir.path().join("o.jsonl").to_str().unwrap()], args].concat(), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line: {stderr}");
    }
    for (budget, message) in [
        ("[llm.budget]\ntokens_per_hour = 0\n", "llm.budget token budgets must be above zero"),
        ("[llm.budget]\nper_key_tokens = 5\n", "unknown field `per_key_tokens`"),
    ] {
        let config = quick_config(dir.path(), budget);
        let out = run(&["--llm", "--config", config.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{budget}: {stderr}");
        assert!(stderr.contains(message), "{budget}: {stderr}");
    }
    let bad_template = quick_config(dir.path(), "user_prompt = \"{{ nope\"\n");
    let out = run(&["--llm", "--config", bad_template.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("llm.user_prompt"));
}

/// The first user message of a request body or call log line.
fn first_user(body: &Value) -> String {
    let messages = body["messages"].as_array().unwrap();
    messages.iter().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap().to_owned()
}

/// The user prompts of a call log's (or reply journal's) lines.
fn logged_prompts(path: &Path) -> Vec<String> {
    lines(path).iter().map(first_user).collect()
}

/// With `--checkpoint-dir`, the replies are kept with the checkpoints: killed with some cases after
/// its newest checkpoint answered and others still out, a run restores, answers the answered ones
/// from the reply journal without asking again, asks the rest, and ends with the uninterrupted
/// run's decisions.
#[test]
fn after_a_kill_9_a_restore_asks_no_answered_case_again() {
    let dir = tempfile::tempdir().unwrap();
    // 5 assets, 2 minutes of event time: a case per asset and second, all sent to the server.
    let input = market(dir.path(), "6000", "5", "50");
    let config = quick_config(dir.path(), "");
    let want_path = dir.path().join("want.jsonl");
    let plain = LlmServer::start(answering(Duration::ZERO));
    let base = plain.base_url();
    ok(run_to(&input, &config, &want_path, &["--llm", "--llm-base-url", &base, "--llm-min-confidence", "1"], &[]));
    let want = by_id(&want_path);
    assert!(want.len() > 300, "{} decisions", want.len());

    // The first 75 requests are answered at once; later ones hang until the process is killed
    // (past the first checkpoint of 10 s: about 50 cases).
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hanging = hang.clone();
    let script: Script = Arc::new(move |req: &Request| {
        let delay = if req.n >= 75 && hanging.load(std::sync::atomic::Ordering::SeqCst) {
            Duration::from_secs(3600)
        } else {
            Duration::ZERO
        };
        Reply::Content { content: verdict_for(&req.user), delay }
    });
    let server = LlmServer::start(script);
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out.jsonl"));
    let base = server.base_url();
    let flags = [
        "--llm",
        "--llm-base-url",
        &base,
        "--llm-min-confidence",
        "1",
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
        "--checkpoint-interval",
        "10s",
    ];
    let io = ["--input", input.to_str().unwrap(), "--config", config.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let mut child = Command::new(BIN)
        .args(["run", "trading"])
        .args(io)
        .args(flags)
        .env_remove("OPENAI_API_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = ckpt.join("llm-replies-0.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let committed =
        || std::fs::read_dir(&ckpt).is_ok_and(|d| d.flatten().any(|e| e.path().join("MANIFEST.json").is_file()));
    while !(committed() && journal.is_file() && lines(&journal).len() >= 75) {
        assert!(std::time::Instant::now() < deadline, "75 replies and a checkpoint within a minute");
        assert!(child.try_wait().unwrap().is_none(), "the run waits for the hanging replies");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let answered: std::collections::HashSet<String> = logged_prompts(&journal).into_iter().collect();
    assert_eq!(answered.len(), 75, "each answered case once in the journal");

    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = server.requests() as usize;
    let again = ok(run(&[&io[..], &flags[..]].concat(), &[]));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("restored from the checkpoint at"), "{stderr}");
    let asked_again: Vec<String> = server.bodies()[before..].iter().map(first_user).collect();
    assert!(!asked_again.is_empty(), "the cases still out were asked");
    for prompt in &asked_again {
        assert!(!answered.contains(prompt), "asked again after the restore: {prompt}");
    }
    // Some answered cases come after the checkpoint restored: they were answered from the journal.
    let resumed = stderr
        .split("resumed ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the summary counts resumed replies: {stderr}"));
    assert!(resumed > 0, "{stderr}");
    assert_eq!(by_id(&out), want, "the restored run ends with the uninterrupted run's decisions");
}

/// The most tokens the engine charges a request: its messages at 4 characters a token plus its
/// `max_tokens` (what the budget's documentation promises).
fn charge(body: &Value) -> u64 {
    let chars: usize = body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().len()).sum();
    (chars / 4) as u64 + body["max_tokens"].as_u64().unwrap()
}

/// Token budgets: a key's budget pays for its first cases and the rest take the rules' decision
/// marked `budget`, the same ones on every run; the pipeline's budget likewise; budget decisions
/// replay from the call log.
#[test]
fn spent_budgets_give_the_rules_decision_marked_budget() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "2000", "4", "50");
    let server = LlmServer::start(answering(Duration::ZERO));
    let base = server.base_url();
    let llm = ["--llm", "--llm-base-url", &base, "--llm-min-confidence", "1"];
    let (free, alone) = (dir.path().join("free.jsonl"), dir.path().join("rules.jsonl"));
    ok(run_to(&input, &quick_config(dir.path(), ""), &alone, &[], &[]));
    let rules = by_id(&alone);
    ok(run_to(&input, &quick_config(dir.path(), ""), &free, &llm, &[]));
    let all = by_id(&free);
    let charges: Vec<u64> = server.bodies().iter().map(charge).collect();
    let (least, most) = (*charges.iter().min().unwrap(), *charges.iter().max().unwrap());
    assert!(least * 3 > most * 5 / 2, "prompts of like size ({least}..{most} tokens)");
    let asked = |path: &Path| {
        let decisions = by_id(path);
        assert_eq!(decisions.len(), all.len(), "one decision per case");
        for (id, d) in &decisions {
            if d["decided_by"] == "budget" {
                let (rule, reason) = (&rules[id], d["reason"].as_str().unwrap());
                assert!(reason.starts_with("LLM budget spent (") && reason.contains("budget of"), "{reason}");
                assert!(reason.ends_with(&format!("; rules: {}", rule["reason"].as_str().unwrap())), "{reason}");
                assert_eq!((&d["action"], &d["confidence"]), (&rule["action"], &rule["confidence"]), "{id}");
            } else {
                assert_eq!(d, &all[id], "{id}: asked, answered as without a budget");
            }
        }
        decisions
    };

    // Per key: room for two cases, never three.
    let per_key = most * 5 / 2;
    let config = quick_config(dir.path(), &format!("[llm.budget]\nper_key_tokens_per_hour = {per_key}\n"));
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let log = dir.path().join("calls.jsonl");
    let before = server.requests();
    let out = ok(run_to(&input, &config, &a, &[&llm[..], &["--llm-log", log.to_str().unwrap()]].concat(), &[]));
    let first = asked(&a);
    let mut by_key: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for d in first.values() {
        let entry = by_key.entry(d["key"].as_str().unwrap().to_owned()).or_default();
        entry.push((d["event_time"].as_str().unwrap().to_owned(), d["decided_by"].as_str().unwrap().to_owned()));
    }
    assert_eq!(by_key.len(), 4);
    for (key, mut cases) in by_key {
        cases.sort();
        let kinds: Vec<&str> = cases.iter().map(|(_, by)| by.as_str()).collect();
        assert!(kinds.len() > 3, "{key}: {kinds:?}");
        assert!(
            kinds[..2].iter().all(|k| *k == "llm") && kinds[2..].iter().all(|k| *k == "budget"),
            "{key}: {kinds:?}"
        );
    }
    assert_eq!(server.requests() - before, 8, "two calls per key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("budget spent {}", all.len() - 8)), "{stderr}");
    ok(run_to(&input, &config, &b, &llm, &[]));
    assert_eq!(by_id(&b), first, "the same cases are paid for on every run");
    let replayed = dir.path().join("replayed.jsonl");
    let calls = server.requests();
    ok(run_to(&input, &config, &replayed, &["--llm-replay", log.to_str().unwrap(), "--llm-min-confidence", "1"], &[]));
    assert_eq!(server.requests(), calls, "the replay made no call");
    assert_eq!(by_id(&replayed), first, "budget decisions replay");

    // The pipeline's budget: room for at least five cases, at most what the cheapest allow.
    let total = most * 11 / 2;
    let config = quick_config(dir.path(), &format!("[llm.budget]\ntokens_per_hour = {total}\n"));
    let c = dir.path().join("c.jsonl");
    let before = server.requests();
    ok(run_to(&input, &config, &c, &llm, &[]));
    let paid = asked(&c).values().filter(|d| d["decided_by"] != "budget").count() as u64;
    assert!((5..=total / least).contains(&paid), "{paid} cases paid for");
    assert_eq!(server.requests() - before, paid, "one call per case paid for, none for the others");
}

/// An ordered list of endpoints: when the first fails (5xx after its retries, then its open
/// breaker) every case goes on to the next, each with its own key, and the decisions name the
/// model that decided; a 4xx is the request's fault and is not tried elsewhere.
#[test]
fn a_failing_endpoint_hands_cases_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), "6000", "3", "50");
    let down: Script = Arc::new(|_: &Request| Reply::Status { code: 503, retry_after: None, delay: Duration::ZERO });
    let (first, second) = (LlmServer::start(down), LlmServer::start(answering(Duration::ZERO)));
    let endpoints = |failures: u32| {
        format!(
            "breaker_failures = {failures}\n[[llm.endpoints]]\nbase_url = \"{}\"\nmodel = \"second-model\"\napi_key_env = \"INFLIGHT_TEST_SECOND_KEY\"\n",
            second.base_url()
        )
    };
    let config = quick_config(dir.path(), &endpoints(3));
    let out = dir.path().join("out.jsonl");
    let llm = ["--llm", "--llm-base-url", &first.base_url(), "--llm-model", "first-model", "--llm-min-confidence", "1"];
    let env = [("OPENAI_API_KEY", "sk-first-key"), ("INFLIGHT_TEST_SECOND_KEY", "sk-second-secret-2b7")];
    let run_out = ok(run_to(&input, &config, &out, &llm, &env));
    let decisions = by_id(&out);
    assert!(decisions.len() > 50);
    for d in decisions.values() {
        assert_eq!((&d["decided_by"], &d["model"]), (&Value::from("llm"), &Value::from("second-model")), "{d}");
    }
    assert_eq!(second.requests() as usize, decisions.len(), "every case answered by the second endpoint, once");
    // Retries until the breaker opened (3 failures), then the first is skipped while it is open.
    assert!(
        first.requests() >= 3 && first.requests() < decisions.len() as u64,
        "{} calls to the first",
        first.requests()
    );
    assert!(first.auth_headers().iter().all(|h| h.as_deref() == Some("Bearer sk-first-key")));
    assert!(second.auth_headers().iter().all(|h| h.as_deref() == Some("Bearer sk-second-secret-2b7")));
    let stderr = String::from_utf8_lossy(&run_out.stderr);
    assert!(stderr.contains("failovers "), "{stderr}");
    for text in
        [stderr.to_string(), String::from_utf8_lossy(&run_out.stdout).into(), std::fs::read_to_string(&out).unwrap()]
    {
        assert!(!text.contains("sk-second-secret-2b7") && !text.contains("sk-first-key"), "a key was shown");
    }

    // A 400 is final: the case falls back without asking the next endpoint.
    let refusing: Script = Arc::new(|_: &Request| Reply::Rejected { message: "bad request".into() });
    let refuser = LlmServer::start(refusing);
    let asked = second.requests();
    let llm = ["--llm", "--llm-base-url", &refuser.base_url(), "--llm-min-confidence", "1"];
    ok(run_to(&input, &config, &out, &llm, &env));
    assert!(by_id(&out).values().all(|d| d["decided_by"] == "fallback" && d.get("model").is_none()));
    assert_eq!(second.requests(), asked, "not tried after a 400");

    // Bad endpoint settings exit with one line.
    for (extra, env, message) in [
        ("[[llm.endpoints]]\nbase_url = \"ftp://x\"\nmodel = \"m\"\n", &env[..], "llm.endpoints[0].base_url"),
        (&endpoints(3)[..], &env[..1], "llm.endpoints[0].api_key_env: INFLIGHT_TEST_SECOND_KEY is not set"),
        ("[[llm.endpoints]]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \" \"\n", &env[..], "must name a model"),
    ] {
        let config = quick_config(dir.path(), extra);
        let out = run(&["--llm", "--config", config.to_str().unwrap()], env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {stderr}");
        assert!(stderr.contains(message) && stderr.trim().lines().count() == 1, "{extra}: {stderr}");
    }
}
