//! The LLM stage against a real model: llama.cpp's `llama-server` with SmolLM2-135M-Instruct on
//! 127.0.0.1 (see `support/llama.rs`; skipped when it is not installed, required in CI). For each
//! bundled pipeline's sample, plain and streamed: every case ends with exactly one decision, what
//! the model says is validated and guarded, the call log replays to the same decisions with the
//! server gone, and the API key appears nowhere. The model is tiny: these tests check the protocol
//! and our handling of its answers, not their wisdom.

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;
#[path = "support/llama.rs"]
mod llama;
#[path = "support/llm_server.rs"]
mod llm_server;

use cli::{BIN, decisions_by_id, json_lines};
use llama::{Llama, MODEL};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

/// Sent as `OPENAI_API_KEY`; must never be shown.
const SECRET: &str = "sk-inflight-real-model-test-5f1e0c";

/// The real server takes one of the two cores: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(pipeline: &str, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(["run", pipeline])
        .args(args)
        .env_remove("OPENAI_BASE_URL")
        .env("OPENAI_API_KEY", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "inflight run {pipeline} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The flags that point a run at `llama`, with room for a slow CPU server.
fn llm_flags(llama: &Llama, log: &Path, stream: bool) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--llm",
        "--llm-base-url",
        &llama.base_url(),
        "--llm-model",
        MODEL,
        "--llm-concurrency",
        "2",
        "--llm-timeout",
        "120s",
        "--llm-deadline",
        "600s",
        "--llm-log",
        log.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if stream {
        flags.push("--llm-stream".into());
    }
    flags
}

fn without_decided_at(d: &Value) -> Value {
    let mut d = d.clone();
    d.as_object_mut().unwrap().remove("decided_at");
    d
}

/// Runs `pipeline`'s sample with the rules alone, then with the real model, then replays the call
/// log with the server stopped; checks every decision of each.
fn against_the_real_model(pipeline: &str, actions: &[&str], stream: bool) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(llama) = Llama::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (rules_out, llm_out, replay_out, log) =
        (path("rules.jsonl"), path("llm.jsonl"), path("replay.jsonl"), path("calls.jsonl"));

    run(pipeline, &["-o", rules_out.to_str().unwrap()]);
    let rules = decisions_by_id(&rules_out);
    assert!(!rules.is_empty());

    let flags = llm_flags(&llama, &log, stream);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["-o", llm_out.to_str().unwrap()]);
    let out = run(pipeline, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let llm = decisions_by_id(&llm_out);
    let ids = |v: &[Value]| v.iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(&llm), ids(&rules), "exactly one decision per case");

    let (mut sent, mut answered) = (0, 0);
    for (rule, d) in rules.iter().zip(&llm) {
        let id = d["id"].as_str().unwrap();
        if rule["confidence"].as_f64().unwrap() >= 0.7 {
            assert_eq!(d, rule, "{id}: sure enough, not sent; unchanged");
            continue;
        }
        sent += 1;
        let reason = d["reason"].as_str().unwrap();
        // The code pipeline adds the model's fix (code, diff, validation) to what it decided.
        if pipeline != "code" || d["decided_by"] != "llm" {
            assert_eq!(d["evidence"], rule["evidence"], "{id}: the evidence is the rules'");
        }
        match d["decided_by"].as_str().unwrap() {
            "llm" => {
                answered += 1;
                assert!(actions.contains(&d["action"].as_str().unwrap()), "{id}: {d}");
                let c = d["confidence"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&c), "{id}: {d}");
                let rule_c = rule["confidence"].as_f64().unwrap();
                if d["action"] != rule["action"] {
                    assert!(c > rule_c, "{id}: an override is more confident than the rules: {d}");
                }
                if pipeline != "code" {
                    assert!(!reason.trim().is_empty() && reason.chars().count() <= 240, "{id}: {reason:?}");
                }
            }
            "rules" => {
                answered += 1;
                assert!(reason.starts_with("rules stand: the model's "), "{id}: {reason}");
                assert_eq!((&d["action"], &d["confidence"]), (&rule["action"], &rule["confidence"]), "{id}");
            }
            "fallback" => {
                assert!(reason.starts_with("LLM unavailable ("), "{id}: {reason}");
                assert!(reason.ends_with(rule["reason"].as_str().unwrap()), "{id}: {reason}");
                assert_eq!(d["action"], rule["action"], "{id}");
            }
            other => panic!("{id}: decided_by {other}"),
        }
    }
    assert!(sent > 0, "the sample sends cases to the model");
    assert!(answered > 0, "the model answered at least once ({sent} sent):\n{stderr}\n{}", llama.log_text());
    assert!(stderr.contains("llm cases"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let calls = json_lines(&log);
    // One line per prompt sent (identical prompts share a call).
    assert!(!calls.is_empty() && calls.len() <= sent, "{} call log lines for {sent} cases", calls.len());
    for (what, text) in [
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", stderr.clone()),
        ("decisions", std::fs::read_to_string(&llm_out).unwrap()),
        ("call log", std::fs::read_to_string(&log).unwrap()),
    ] {
        assert!(!text.contains(SECRET), "the API key appears in the {what}");
    }

    drop(llama);
    // The same request parameters (the model is part of each call's key), no server.
    run(pipeline, &["--llm-replay", log.to_str().unwrap(), "--llm-model", MODEL, "-o", replay_out.to_str().unwrap()]);
    let replayed = decisions_by_id(&replay_out);
    let strip = |v: &[Value]| v.iter().map(without_decided_at).collect::<Vec<_>>();
    assert_eq!(strip(&replayed), strip(&llm), "the replay with the server stopped gives the same decisions");
}

const TRADING: &[&str] = &["BUY", "SELL", "HOLD"];
const FLIGHT: &[&str] = &["REBOOK", "PROTECT", "ESCALATE", "NONE"];
const CODE: &[&str] = &["FIX", "SUGGEST"];

#[test]
fn trading_sample_against_a_real_model() {
    against_the_real_model("trading", TRADING, false);
}

#[test]
fn trading_sample_against_a_real_model_streamed() {
    against_the_real_model("trading", TRADING, true);
}

#[test]
fn flight_sample_against_a_real_model() {
    against_the_real_model("flight", FLIGHT, false);
}

#[test]
fn flight_sample_against_a_real_model_streamed() {
    against_the_real_model("flight", FLIGHT, true);
}

#[test]
fn code_sample_against_a_real_model() {
    against_the_real_model("code", CODE, false);
}

#[test]
fn code_sample_against_a_real_model_streamed() {
    against_the_real_model("code", CODE, true);
}

#[test]
fn replies_cut_off_by_the_token_limit_are_repaired_once_then_fall_back_saying_so() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(llama) = Llama::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trading.toml");
    // Too few tokens for any valid reply: every one is cut off.
    std::fs::write(&config, "[llm]\nmax_tokens = 8\noverride_margin = 0.2\n").unwrap();
    let (out_path, log) = (dir.path().join("out.jsonl"), dir.path().join("calls.jsonl"));
    let flags = llm_flags(&llama, &log, false);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--config", config.to_str().unwrap(), "-o", out_path.to_str().unwrap()]);
    run("trading", &args);
    let sent: Vec<Value> = json_lines(&out_path).into_iter().filter(|d| d["decided_by"] != "rules").collect();
    assert!(!sent.is_empty());
    for d in &sent {
        assert_eq!(d["decided_by"], "fallback", "{d}");
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.contains("cut off at the token limit (finish_reason: length, max_tokens 8)"), "{reason}");
        assert!(reason.contains("after one repair attempt"), "{reason}");
    }
    let calls = json_lines(&log);
    assert!(calls.iter().all(|c| c["attempts"] == 2), "the first reply and one repair each: {calls:?}");
    // The server saw the bound: its reply really ended at the limit.
    assert!(calls.iter().all(|c| c["reply"].as_str().is_some_and(|r| !r.is_empty())), "{calls:?}");
}

/// The first user message of a request body or call log line: the case's prompt.
fn first_user(body: &Value) -> String {
    let messages = body["messages"].as_array().unwrap();
    messages.iter().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap().to_owned()
}

/// Killed (SIGKILL) mid-run against the real model with checkpoints on, a run restores and pays
/// for no call it had an answer to: a recording proxy in front of llama-server counts the
/// requests, and none asks a case the stopped run's reply journal holds. The restored output is
/// the uninterrupted run's (the proxy sends one request at a time, so the model's answers repeat).
#[test]
fn after_a_kill_9_a_restore_pays_for_no_answered_call_again() {
    use llm_server::{LlmServer, Reply, Request, Script};
    use std::sync::Arc;
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(llama) = Llama::start() else { return };
    let llama = Arc::new(llama);
    let forward = llama.clone();
    // The model answers a question asked again with the same answer: llama-server at temperature 0
    // does not promise that (its prompt cache changes the numbers, and a re-asked case once got
    // another action), and neither does OpenAI. What is tested is the restore, so the proxy keeps
    // each answer by request body; the requests it sees are still all counted and checked.
    let answers = Mutex::new(std::collections::HashMap::<String, (String, String)>::new());
    let script: Script = Arc::new(move |req: &Request| {
        let mut answers = answers.lock().unwrap_or_else(|e| e.into_inner());
        let (content, finish) =
            answers.entry(req.body.to_string()).or_insert_with(|| forward.complete(&req.body)).clone();
        match finish.as_str() {
            "length" => Reply::Cut { content },
            _ => Reply::Content { content, delay: std::time::Duration::ZERO },
        }
    });
    let proxy = LlmServer::start(script);
    let dir = tempfile::tempdir().unwrap();
    let (want, out, ckpt) = (dir.path().join("want.jsonl"), dir.path().join("out.jsonl"), dir.path().join("ckpt"));
    let base = proxy.base_url();
    let llm =
        ["--llm", "--llm-base-url", &base, "--llm-model", MODEL, "--llm-timeout", "120s", "--llm-deadline", "600s"];
    run("trading", &[&llm[..], &["-o", want.to_str().unwrap()]].concat());
    let uninterrupted = decisions_by_id(&want);
    let sent = proxy.requests();
    assert!(sent > 0, "the sample sends cases to the model");

    let ckpt_flags = ["--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-interval", "30s"];
    let args: Vec<&str> = [&["run", "trading"][..], &llm[..], &ckpt_flags[..], &["-o", out.to_str().unwrap()]].concat();
    let mut child = Command::new(BIN)
        .args(&args)
        .env_remove("OPENAI_BASE_URL")
        .env("OPENAI_API_KEY", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = ckpt.join("llm-replies-0.jsonl");
    let answered = || std::fs::read_to_string(&journal).map(|t| t.lines().count()).unwrap_or(0);
    let committed =
        || std::fs::read_dir(&ckpt).is_ok_and(|d| d.flatten().any(|e| e.path().join("MANIFEST.json").is_file()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !(committed() && answered() >= 5) && child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "a checkpoint and 5 replies within 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    assert!(killed, "the run was killed before it ended");
    let journaled: std::collections::HashSet<String> = json_lines(&journal).iter().map(first_user).collect();
    assert!(!journaled.is_empty());

    let before = proxy.requests() as usize;
    let again = run("trading", &[&llm[..], &ckpt_flags[..], &["-o", out.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("restored from the checkpoint at"), "{stderr}");
    for body in &proxy.bodies()[before..] {
        let prompt = first_user(body);
        assert!(!journaled.contains(&prompt), "asked again after the restore: {prompt}");
    }
    let strip = |v: &[Value]| v.iter().map(without_decided_at).collect::<Vec<_>>();
    assert_eq!(strip(&decisions_by_id(&out)), strip(&uninterrupted), "the restored run ends as the uninterrupted one");
    assert!(!stderr.contains(SECRET));
}
