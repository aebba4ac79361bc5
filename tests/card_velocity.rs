//! The `card_velocity` example end to end from its own command line: every decision against a
//! reference computed here from the inputs (windows, merchant risk as of each payment's time, the
//! rules), the same at -w 1, -w 4 and two processes, restored after a kill -9, through Kafka on
//! tansu, bad input dead-lettered and bad reference data refused.

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/broker.rs"]
mod broker;
#[path = "support/cli.rs"]
mod cli;
#[path = "support/llm_server.rs"]
mod llm_server;

use broker::{Broker, unique};
use cli::{BIN, assert_same, decisions_by_id, example, json_lines, kill_9_after_first_checkpoint, run_example};
use llm_server::{LlmServer, Reply, Request};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const START_MS: i64 = 1_704_621_600_000; // 2024-01-07T10:00:00Z
const WINDOW_MS: i64 = 600_000;

/// A small deterministic generator (xorshift64*), so the inputs need no crate and no Python.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

const RISKS: [&str; 3] = ["low", "medium", "high"];

struct Inputs {
    payments: PathBuf,
    merchants: PathBuf,
    updates: PathBuf,
}

/// `payments` payments on 150 cards over `payments / 2` seconds, in bursts (so counts reach 3 and
/// 5), some cards paying twice in one millisecond, a few abroad; 30 merchants at start and upserts
/// of them (and of new ones) while it runs; a fraction `bad` of the payment lines malformed.
fn inputs(dir: &Path, payments: usize, bad: u64) -> Inputs {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let merchant = |i: u64| format!("M{i:03}");
    let mut merchants = String::new();
    for i in 0..30 {
        let risk = RISKS[(i % 3) as usize];
        merchants += &format!("{}\n", json!({"merchant_id": merchant(i), "category": "shop", "risk": risk}));
    }
    let span = payments as i64 * 500;
    let mut updates = String::new();
    let mut t = START_MS;
    while t < START_MS + span {
        // Distinct milliseconds: two upserts of one merchant at one time have no defined order.
        t += 20_000 + rng.below(40_000) as i64;
        let (m, risk) = (merchant(rng.below(36)), RISKS[rng.below(3) as usize]);
        let row = json!({"op": "upsert", "timestamp": time_text(t), "merchant": {"merchant_id": m, "category": "shop", "risk": risk}});
        updates += &format!("{row}\n");
    }
    let mut lines = String::new();
    let mut t = START_MS;
    let mut last: Option<Value> = None;
    for n in 0..payments {
        let card = format!("C{:03}", rng.below(150));
        let same_ms = rng.below(40) == 0 && last.is_some();
        if !same_ms {
            t += rng.below(1_000) as i64;
        }
        let mut p = json!({
            "card_id": card,
            "merchant_id": merchant(rng.below(40)), // 36..39 never in the table: low risk
            "amount": (rng.below(150_000) as f64) / 100.0,
            "currency": "EUR",
            "timestamp": time_text(t),
            "country": if rng.below(12) == 0 { "FR" } else { "DE" },
        });
        if same_ms {
            p["card_id"] = last.as_ref().unwrap()["card_id"].clone();
        }
        let line = match (bad > 0 && n as u64 % bad == 7, n % 3) {
            (true, 0) => "{\"card_id\": \"C001\", \"amount\": ".to_owned(),
            (true, 1) => json!({"card_id": "C001", "merchant_id": "M001", "amount": -5.0, "currency": "EUR",
                "timestamp": time_text(t), "country": "DE"})
            .to_string(),
            (true, _) => {
                json!({"op": "delete", "timestamp": time_text(t), "merchant": {"merchant_id": "M001"}}).to_string()
            }
            (false, _) => p.to_string(),
        };
        lines += &format!("{line}\n");
        last = Some(p);
    }
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Inputs {
        payments: write("payments.jsonl", &lines),
        merchants: write("merchants.jsonl", &merchants),
        updates: write("updates.jsonl", &updates),
    }
}

/// What the reference expects of the decision about the payment at byte `offset`.
#[derive(Debug)]
struct Expected {
    /// (card, time ms, amount in cents) of the payment.
    payment: (String, i64, i64),
    action: &'static str,
    confidence: f64,
    count: u64,
    total: f64,
    risk: String,
    other_country: bool,
}

fn millis(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis()
}

/// The decisions computed the plain way, by the payment's byte offset: risk = the latest row of the
/// merchant with time ≤ t (start rows at time 0, then updates), the window = the card's payments
/// with time in (t − 10 min, t] before it in (time, line) order, then the rules.
fn reference(i: &Inputs) -> BTreeMap<u64, Expected> {
    let mut history: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for line in std::fs::read_to_string(&i.merchants).unwrap().lines() {
        let m: Value = serde_json::from_str(line).unwrap();
        history
            .entry(m["merchant_id"].as_str().unwrap().into())
            .or_default()
            .push((0, m["risk"].as_str().unwrap().into()));
    }
    for line in std::fs::read_to_string(&i.updates).unwrap().lines() {
        let u: Value = serde_json::from_str(line).unwrap();
        let m = &u["merchant"];
        let row = (millis(&u["timestamp"]), m["risk"].as_str().unwrap().to_owned());
        history.entry(m["merchant_id"].as_str().unwrap().into()).or_default().push(row);
    }
    let risk_at = |merchant: &str, t: i64| -> String {
        let rows = history.get(merchant).map(Vec::as_slice).unwrap_or_default();
        rows.iter().filter(|(at, _)| *at <= t).max_by_key(|(at, _)| *at).map_or("low".into(), |(_, r)| r.clone())
    };
    // card -> (time, offset, amount, country)
    let mut cards: HashMap<String, Vec<(i64, u64, f64, String)>> = HashMap::new();
    let mut payments = Vec::new();
    let mut offset = 0u64;
    for line in std::fs::read_to_string(&i.payments).unwrap().split_inclusive('\n') {
        let at = offset;
        offset += line.len() as u64;
        let Ok(p) = serde_json::from_str::<Value>(line) else { continue };
        if p.get("op").is_some() || p["amount"].as_f64().is_none_or(|a| a < 0.0) {
            continue;
        }
        let (card, t) = (p["card_id"].as_str().unwrap().to_owned(), millis(&p["timestamp"]));
        let country = p["country"].as_str().unwrap().to_owned();
        cards.entry(card.clone()).or_default().push((t, at, p["amount"].as_f64().unwrap(), country.clone()));
        let amount = p["amount"].as_f64().unwrap();
        payments.push((at, card, t, amount, p["merchant_id"].as_str().unwrap().to_owned(), country));
    }
    let mut out = BTreeMap::new();
    for (at, card, t, amount, merchant, country) in payments {
        let window: Vec<_> = cards[&card].iter().filter(|w| w.0 > t - WINDOW_MS && (w.0, w.1) <= (t, at)).collect();
        let count = window.len() as u64;
        let total: f64 = window.iter().map(|w| w.2).sum();
        let other_country = window.iter().any(|w| w.3 != country);
        let risk = risk_at(&merchant, t);
        let high = risk == "high";
        let (action, confidence) = if count >= 5 || (high && total >= 1000.0) {
            ("BLOCK", 0.9)
        } else if count >= 3 || high || other_country {
            ("REVIEW", 0.6)
        } else {
            ("ALLOW", 0.95)
        };
        let payment = (card, t, (amount * 100.0).round() as i64);
        out.insert(at, Expected { payment, action, confidence, count, total, risk, other_country });
    }
    out
}

/// The payment a decision is about: (card, time ms, amount in cents).
fn payment_of(d: &Value) -> (String, i64, i64) {
    let cents = (d["evidence"]["amount"].as_f64().unwrap() * 100.0).round() as i64;
    (d["key"].as_str().unwrap().to_owned(), millis(&d["event_time"]), cents)
}

#[track_caller]
fn assert_decision(d: &Value, w: &Expected) {
    let e = &d["evidence"];
    assert_eq!(payment_of(d), w.payment, "{d}");
    assert_eq!(d["action"], w.action, "{d}: want {w:?}");
    assert_eq!(d["confidence"].as_f64(), Some(w.confidence), "{d}");
    let got = (e["count"].as_u64(), e["risk"].as_str(), e["other_country"].as_bool());
    assert_eq!(got, (Some(w.count), Some(&*w.risk), Some(w.other_country)), "{d}");
    let total = e["total"].as_f64().unwrap();
    assert!((total - w.total).abs() <= 1e-6 * w.total.max(1.0), "{d}: total want {}", w.total);
    assert_eq!(d["pipeline"], "card_velocity");
}

/// Decisions read from a file: each names its payment's byte offset.
#[track_caller]
fn assert_matches_reference(got: &[Value], want: &BTreeMap<u64, Expected>) {
    assert_eq!(got.len(), want.len(), "one decision per valid payment");
    for d in got {
        assert_decision(d, &want[&d["source"]["offset"].as_u64().unwrap()]);
    }
}

fn run_args(i: &Inputs, out: &Path, dead: &str) -> Vec<String> {
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let mut a: Vec<String> =
        vec!["run".into(), "--input".into(), p(&i.payments), "--merchants".into(), p(&i.merchants)];
    a.extend(["--updates".into(), p(&i.updates), "--output".into(), p(out), "--dead-letter".into(), dead.into()]);
    a.extend(["--chunk-size", "65536"].map(String::from));
    a
}

#[test]
fn card_velocity_matches_the_reference_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let i = inputs(d, 6_000, 50);
    let want = reference(&i);
    let actions: std::collections::BTreeSet<_> = want.values().map(|w| w.action).collect();
    assert_eq!(actions.len(), 3, "the input exercises every action");
    assert!(want.values().filter(|w| w.count >= 5).count() > 10, "bursts reach the BLOCK count");
    let mut runs = Vec::new();
    for workers in ["1", "4"] {
        let (out, dead) = (d.join(format!("w{workers}.jsonl")), d.join(format!("w{workers}.dead")));
        let mut args = run_args(&i, &out, dead.to_str().unwrap());
        args.extend(["-w".into(), workers.into()]);
        let r = Command::new(example("card_velocity")).args(&args).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_matches_reference(&json_lines(&out), &want);
        let dead = json_lines(&dead);
        assert_eq!(dead.len(), 120, "every bad line is dead-lettered");
        assert!(dead.iter().all(|l| l["reason"] == "malformed" || l["reason"] == "invalid"));
        assert!(dead.iter().all(|l| l["source"]["line"].as_u64().is_some()), "dead letters name their line");
        assert!(dead.iter().any(|l| {
            l["error"].as_str().is_some_and(|e| e.contains("only \\\"upsert\\\"") || e.contains("only \"upsert\""))
        }));
        runs.push(decisions_by_id(&out));
    }
    assert_same("-w 1 vs -w 4", &runs[0], &runs[1]);
    let out = d.join("n2.jsonl");
    let exe = example("card_velocity");
    for o in cli::cluster(d, |cmd| {
        *cmd = Command::new(&exe);
        cmd.args(run_args(&i, &out, "/dev/null"));
    }) {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_same("-w 1 vs -n 2", &runs[0], &decisions_by_id(&out));
}

#[test]
fn card_velocity_after_a_kill_9_restarts_to_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let i = inputs(d, 100_000, 500);
    let args = |out: &Path, ckpt: Option<&Path>| {
        let mut a = run_args(&i, out, "/dev/null");
        a.extend(["-w", "2"].map(String::from));
        if let Some(c) = ckpt {
            a.extend(["--checkpoint-dir", c.to_str().unwrap(), "--checkpoint-interval", "5m"].map(String::from));
        }
        a
    };
    let want_path = d.join("want.jsonl");
    let r = Command::new(example("card_velocity")).args(args(&want_path, None)).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let want = decisions_by_id(&want_path);
    assert_matches_reference(&json_lines(&want_path), &reference(&i));

    let (ckpt, out) = (d.join("ckpt"), d.join("out.jsonl"));
    let mut run = Command::new(example("card_velocity"));
    run.args(args(&out, Some(&ckpt)));
    kill_9_after_first_checkpoint(run, &ckpt);
    let again = Command::new(example("card_velocity")).args(args(&out, Some(&ckpt))).output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert_same("after kill -9", &want, &decisions_by_id(&out));
}

#[test]
fn card_velocity_reads_and_writes_kafka() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let i = inputs(d, 3_000, 0);
    let with_broker = |program: &Path, args: &[&str]| {
        let out = Command::new(program).args(args).env("KAFKA_BROKERS", &broker.addr).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let (payments, updates, decisions) = (unique("cv-payments"), unique("cv-updates"), unique("cv-decisions"));
    let bin = Path::new(BIN);
    with_broker(
        bin,
        &["produce", "--topic", &payments, "--input", i.payments.to_str().unwrap(), "--key-field", "card_id"],
    );
    with_broker(bin, &["produce", "--topic", &updates, "--input", i.updates.to_str().unwrap()]);
    let run = with_broker(
        &example("card_velocity"),
        &[
            "run",
            "--input-topic",
            &payments,
            "--updates-topic",
            &updates,
            "--merchants",
            i.merchants.to_str().unwrap(),
            "--from",
            "earliest",
            "--bounded",
            "--output-topic",
            &decisions,
            "-w",
            "2",
        ],
    );
    let summary = String::from_utf8_lossy(&run.stderr);
    assert_eq!(cli::summary_value(&summary, "decisions out") as usize, 3_000, "{summary}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let got = loop {
        let out = with_broker(bin, &["consume", "--topic", &decisions]);
        let got: Vec<Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if got.len() >= 3_000 || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // Offsets in a topic are record numbers, not bytes: match decisions by their payment (one
    // card never pays the same amount twice in a millisecond in these inputs).
    let want: HashMap<(String, i64, i64), Expected> =
        reference(&i).into_values().map(|w| (w.payment.clone(), w)).collect();
    assert_eq!(want.len(), 3_000, "payments are told apart by (card, time, amount)");
    assert_eq!(got.len(), want.len(), "one decision per payment");
    for d in &got {
        assert_decision(d, &want[&payment_of(d)]);
    }
    assert!(got.iter().all(|d| d["source"]["topic"] == payments.as_str()), "decisions name the topic they came from");
}

#[test]
fn card_velocity_refuses_bad_reference_data_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("merchants.jsonl");
    std::fs::write(
        &bad,
        "{\"merchant_id\":\"M1\",\"category\":\"x\",\"risk\":\"low\"}\n{\"merchant_id\":\"M2\",\"risk\":\"extreme\"}\n",
    )
    .unwrap();
    let sample = "data/payments-sample.jsonl";
    for (args, want) in [
        (
            vec!["run", "--input", sample, "--merchants", "/no/such/merchants.jsonl"],
            "/no/such/merchants.jsonl: cannot read",
        ),
        (vec!["run", "--input", sample, "--merchants", bad.to_str().unwrap()], "merchants.jsonl:2:"),
        (vec!["run", "--input", sample, "--updates", "x", "--updates-topic", "t"], "cannot be used with"),
    ] {
        let r = run_example("card_velocity", &args);
        assert!(!r.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got {err}");
    }
}

/// The model blocks when the prompt's length is even and answers "BUY", which this pipeline does
/// not declare, when it is odd, and again when asked to repair that.
fn card_model(req: &Request) -> Reply {
    let content = if req.user.len() % 2 == 0 && !is_repair(req) {
        r#"{"action":"BLOCK","reason":"the model blocks it","confidence":0.8}"#
    } else {
        r#"{"action":"BUY","reason":"not a card verdict","confidence":0.9}"#
    };
    Reply::Content { content: content.to_owned(), delay: std::time::Duration::ZERO }
}

fn is_repair(req: &Request) -> bool {
    req.user.starts_with("That reply is not valid")
}

#[test]
fn card_velocity_sends_review_to_the_llm_stage_which_may_answer_only_its_actions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let i = inputs(d, 1_500, 0);
    let want = reference(&i);
    let server = LlmServer::start(std::sync::Arc::new(card_model));
    let out = d.join("llm.jsonl");
    let mut args = run_args(&i, &out, "/dev/null");
    args.extend(["--llm", "--llm-base-url", &server.base_url(), "-w", "2"].map(String::from));
    let r =
        Command::new(example("card_velocity")).args(&args).env("OPENAI_API_KEY", "sk-card-secret").output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(!stderr.contains("sk-card-secret"), "the key is never printed");
    let got = json_lines(&out);
    assert_eq!(got.len(), want.len(), "one decision per payment");
    let reviews = want.values().filter(|w| w.action == "REVIEW").count();
    assert!(reviews > 100, "the input has cases for the LLM stage: {reviews}");
    let last_user = |b: &Value| {
        let messages = b["messages"].as_array().unwrap();
        messages.iter().rev().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap().to_owned()
    };
    let repairs = server.bodies().iter().filter(|b| last_user(b).starts_with("That reply is not valid")).count();
    assert_eq!(server.requests() as usize - repairs, reviews, "exactly the REVIEW cases go to the model");
    let (mut by_model, mut fallbacks) = (0, 0);
    for d in &got {
        let w = &want[&d["source"]["offset"].as_u64().unwrap()];
        assert_eq!(payment_of(d), w.payment, "{d}");
        match (w.action, d["decided_by"].as_str().unwrap()) {
            ("REVIEW", "llm") => {
                by_model += 1;
                assert_eq!((d["action"].as_str(), d["confidence"].as_f64()), (Some("BLOCK"), Some(0.8)), "{d}");
            }
            ("REVIEW", "fallback") => {
                fallbacks += 1;
                assert_eq!(d["action"], "REVIEW", "{d}: the fallback is the rules' verdict");
                assert!(d["reason"].as_str().unwrap().contains("BUY"), "{d}: the reason names the bad answer");
            }
            (_, by) => {
                assert_eq!(by, "rules", "{d}: only REVIEW goes to the model");
                assert_eq!(d["action"], w.action, "{d}");
            }
        }
    }
    assert!(by_model > 0 && fallbacks > 0, "both answers were seen: {by_model} by the model, {fallbacks} fell back");
    assert_eq!(repairs, fallbacks, "each bad answer was asked to be repaired once");
    for body in server.bodies() {
        let text = body.to_string();
        assert!(text.contains("ALLOW") && text.contains("BLOCK"), "the request offers the pipeline's actions: {text}");
        assert!(!text.contains("\"BUY\"") && !text.contains("\"HOLD\""), "and no bundled verb: {text}");
    }
    assert!(server.auth_headers().iter().all(|h| h.as_deref() == Some("Bearer sk-card-secret")));
}

#[test]
fn card_velocity_bench_reads_its_side_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(dir.path(), 2_000, 0);
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let (payments, merchants, updates) = (p(&i.payments), p(&i.merchants), p(&i.updates));
    let args = ["bench", "--input", &payments, "--merchants", &merchants, "--updates", &updates, "--runs", "1"];
    let r = run_example("card_velocity", &args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let out = String::from_utf8_lossy(&r.stdout);
    let run = out.lines().find(|l| l.starts_with("run 1:")).unwrap_or_else(|| panic!("{out}"));
    assert!(run.ends_with(" 2000 decisions"), "one decision per payment: {run}");
    let updates_read = std::fs::read_to_string(&i.updates).unwrap().lines().count();
    assert!(run.contains(&format!(" {} events in", 2_000 + updates_read)), "payments and updates read: {run}");
    let r = run_example("card_velocity", &["bench", "--input", &payments, "--updates", "-"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("side inputs from files"), "{err}");
}
