//! The user pipelines in examples/, end to end from their own command lines (built by `cargo
//! test`, found next to this test's binary): their decisions against a reference computed here
//! from the input, the same at -w 1, -w 4 and two processes, bad input dead-lettered.

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/broker.rs"]
mod broker;
#[path = "support/cli.rs"]
mod cli;

use broker::{Broker, unique};
use cli::{
    BIN, assert_same, decisions_by_id, example, inflight, json_lines, kill_9_after_first_checkpoint, ok, run_example,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the reference expects of one decision: (asset, bar end ms, action, vwap, upper, lower).
type Expected = (String, i64, String, f64, f64, f64);

/// A tick as the reference reads it: (time ms, line, price, volume).
type RefTick = (i64, usize, f64, f64);

/// Session VWAP bands computed the plain way: ticks grouped into 1 s bars per asset, bars in time
/// order, sums since 00:00 UTC, the state of each bar's close, kept when it changes or a session
/// starts. Independent of the pipeline's code (it shares only the definition).
fn reference(input: &Path) -> Vec<Expected> {
    // asset -> bar start -> ticks
    let mut bars: BTreeMap<String, BTreeMap<i64, Vec<RefTick>>> = BTreeMap::new();
    for (line, text) in std::fs::read_to_string(input).unwrap().lines().enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(text) else { continue };
        let (Some(asset), Some(price), Some(volume), Some(ts)) =
            (v["asset"].as_str(), v["price"].as_f64(), v["volume"].as_f64(), v["timestamp"].as_str())
        else {
            continue;
        };
        if price <= 0.0 || volume < 0.0 || asset.is_empty() {
            continue;
        }
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else { continue };
        let ms = t.timestamp_millis();
        bars.entry(asset.to_owned())
            .or_default()
            .entry(ms - ms.rem_euclid(1000))
            .or_default()
            .push((ms, line, price, volume));
    }
    let mut out = Vec::new();
    for (asset, by_start) in bars {
        let (mut day, mut pv, mut p2v, mut v, mut last) = (None, 0.0, 0.0, 0.0, None::<String>);
        for (start, mut ticks) in by_start {
            ticks.sort_by_key(|&(t, line, ..)| (t, line));
            if day != Some(start.div_euclid(86_400_000)) {
                (day, pv, p2v, v, last) = (Some(start.div_euclid(86_400_000)), 0.0, 0.0, 0.0, None);
            }
            for &(_, _, p, vol) in &ticks {
                pv += p * vol;
                p2v += p * p * vol;
                v += vol;
            }
            if v <= 0.0 {
                continue;
            }
            let vwap = pv / v;
            let sigma = (p2v / v - vwap * vwap).max(0.0).sqrt();
            let (upper, lower) = (vwap + 2.0 * sigma, vwap - 2.0 * sigma);
            let close = ticks.last().unwrap().2;
            let state = if close > upper {
                "ALERT_ABOVE"
            } else if close < lower {
                "ALERT_BELOW"
            } else {
                "INSIDE"
            };
            if last.as_deref() != Some(state) {
                last = Some(state.to_owned());
                out.push((asset.clone(), start + 1000, state.to_owned(), vwap, upper, lower));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[track_caller]
fn assert_matches_reference(got: &[Value], want: &[Expected]) {
    let mut got: Vec<&Value> = got.iter().collect();
    got.sort_by_key(|d| (d["key"].as_str().unwrap().to_owned(), d["id"].as_str().unwrap().to_owned()));
    let rows: Vec<(String, i64, String)> = got
        .iter()
        .map(|d| {
            let t = chrono::DateTime::parse_from_rfc3339(d["event_time"].as_str().unwrap()).unwrap();
            (d["key"].as_str().unwrap().to_owned(), t.timestamp_millis(), d["action"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut rows_sorted = rows.clone();
    rows_sorted.sort();
    let want_rows: Vec<(String, i64, String)> = want.iter().map(|w| (w.0.clone(), w.1, w.2.clone())).collect();
    assert_eq!(rows_sorted, want_rows, "decisions (asset, bar end, action)");
    for d in got {
        let t = chrono::DateTime::parse_from_rfc3339(d["event_time"].as_str().unwrap()).unwrap().timestamp_millis();
        let w = want.iter().find(|w| w.0 == d["key"].as_str().unwrap() && w.1 == t).unwrap();
        let e = &d["evidence"];
        for (name, value) in [("vwap", w.3), ("upper", w.4), ("lower", w.5)] {
            assert!(close(e[name].as_f64().unwrap(), value), "{name} of {d}: want {value}");
        }
        assert_eq!(d["pipeline"], "vwap_bands");
    }
}

/// 6,000 ticks on 3 assets over ~17 h of event time from 10:00 UTC (sessions restart at midnight),
/// a fraction `malformed` of them malformed.
fn ticks(dir: &Path, malformed: f64) -> PathBuf {
    let input = dir.join("ticks.jsonl");
    let malformed = malformed.to_string();
    let args = ["gen", "market", "--events", "6000", "--assets", "3", "--rate", "0.1", "--seed", "11"];
    ok(inflight(&[&args[..], &["--malformed", &malformed, "-o", input.to_str().unwrap()]].concat()));
    input
}

#[test]
fn vwap_bands_matches_the_reference_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = ticks(d, 0.02);
    let want = reference(&input);
    assert!(want.len() > 50, "the input exercises the bands: {} decisions", want.len());
    let days: std::collections::BTreeSet<i64> = want.iter().map(|w| (w.1 - 1).div_euclid(86_400_000)).collect();
    assert!(days.len() >= 2, "the input crosses midnight");
    let mut runs = Vec::new();
    for workers in ["1", "4"] {
        let (out, dead) = (d.join(format!("w{workers}.jsonl")), d.join(format!("w{workers}.dead")));
        let r = run_example(
            "vwap_bands",
            &[
                "run",
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--dead-letter",
                dead.to_str().unwrap(),
                "-w",
                workers,
                "--chunk-size",
                "65536",
            ],
        );
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_matches_reference(&json_lines(&out), &want);
        let dead = json_lines(&dead);
        assert!(!dead.is_empty() && dead.iter().all(|l| l["reason"] == "malformed" || l["reason"] == "invalid"));
        assert!(dead.iter().all(|l| l["source"]["line"].as_u64().is_some()), "dead letters name their line");
        runs.push(decisions_by_id(&out));
    }
    assert_same("-w 1 vs -w 4", &runs[0], &runs[1]);
    let out = d.join("n2.jsonl");
    let exe = example("vwap_bands");
    for o in cli::cluster(d, |cmd| {
        *cmd = Command::new(&exe);
        cmd.args(["run", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()]);
        cmd.args(["--dead-letter", "/dev/null", "--chunk-size", "65536"]);
    }) {
        ok(o);
    }
    assert_same("-w 1 vs -n 2", &runs[0], &decisions_by_id(&out));
}

#[test]
fn vwap_bands_refuses_bad_flags_in_one_line() {
    for (args, want) in [
        (&["run", "--window", "1s"][..], "unexpected argument '--window'"),
        (&["run", "--input", "/no/such/file.jsonl"][..], "cannot read input"),
        (&["run", "--llm"][..], "has no LLM stage"),
    ] {
        let r = run_example("vwap_bands", args);
        assert!(!r.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got {err}");
    }
}

/// Ticks over ~11 h of event time on 20 assets: many checkpoints at a 10-minute interval.
fn long_input(dir: &Path) -> PathBuf {
    let input = dir.join("long.jsonl");
    ok(inflight(&[
        "gen",
        "market",
        "--events",
        "200000",
        "--assets",
        "20",
        "--rate",
        "5",
        "--seed",
        "4",
        "--malformed",
        "0.001",
        "-o",
        input.to_str().unwrap(),
    ]));
    input
}

#[test]
fn vwap_bands_after_a_crash_mid_checkpoint_and_a_kill_9_restarts_to_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = long_input(d);
    let args = |out: &Path, ckpt: Option<&Path>| -> Vec<String> {
        let mut a: Vec<String> = ["run", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()]
            .into_iter()
            .chain(["--dead-letter", "/dev/null", "-w", "2", "--chunk-size", "262144"])
            .map(String::from)
            .collect();
        if let Some(c) = ckpt {
            a.extend(["--checkpoint-dir", c.to_str().unwrap(), "--checkpoint-interval", "10m"].map(String::from));
        }
        a
    };
    let want_path = d.join("want.jsonl");
    let r = Command::new(example("vwap_bands")).args(args(&want_path, None)).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let want = decisions_by_id(&want_path);
    assert!(want.len() > 500, "{} decisions", want.len());

    // An abort after the 23rd checkpoint part leaves a half-written checkpoint behind.
    let (ckpt, out) = (d.join("ckpt-a"), d.join("a.jsonl"));
    let crashed = Command::new(example("vwap_bands"))
        .args(args(&out, Some(&ckpt)))
        .env("INFLIGHT_CRASH_AFTER_PARTS", "23")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the abort happened: {}", String::from_utf8_lossy(&crashed.stderr));
    let again = Command::new(example("vwap_bands")).args(args(&out, Some(&ckpt))).output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(err.contains("restored from the checkpoint at"), "the restart restored: {err}");
    assert_same("after the abort", &want, &decisions_by_id(&out));

    // A kill -9 once the first checkpoint is on disk (or the run's end, on a fast machine).
    let (ckpt, out) = (d.join("ckpt-b"), d.join("b.jsonl"));
    let mut run = Command::new(example("vwap_bands"));
    run.args(args(&out, Some(&ckpt)));
    kill_9_after_first_checkpoint(run, &ckpt);
    let again = Command::new(example("vwap_bands")).args(args(&out, Some(&ckpt))).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_same("after kill -9", &want, &decisions_by_id(&out));
}

#[test]
fn vwap_bands_reads_and_writes_kafka() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = ticks(d, 0.0);
    let with_broker = |program: &Path, args: &[&str]| {
        let out = Command::new(program).args(args).env("KAFKA_BROKERS", &broker.addr).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let (ticks, decisions) = (unique("vwap-ticks"), unique("vwap-decisions"));
    with_broker(
        Path::new(BIN),
        &["produce", "--topic", &ticks, "--input", input.to_str().unwrap(), "--key-field", "asset"],
    );
    let run = with_broker(
        &example("vwap_bands"),
        &["run", "--input-topic", &ticks, "--from", "earliest", "--bounded", "--output-topic", &decisions, "-w", "2"],
    );
    let summary = String::from_utf8_lossy(&run.stderr);
    let written = cli::summary_value(&summary, "decisions out") as usize;
    let want = reference(&input);
    assert_eq!(written, want.len(), "{summary}");
    // The broker may acknowledge a write a moment before a reader sees it: read until all are there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let got = loop {
        let out = with_broker(Path::new(BIN), &["consume", "--topic", &decisions]);
        let got: Vec<Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if got.len() >= written || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_matches_reference(&got, &want);
    assert!(got.iter().all(|d| d["source"]["topic"] == ticks.as_str()), "decisions name the topic they came from");
}

#[test]
fn vwap_bands_bench_prints_each_run_and_the_median() {
    let dir = tempfile::tempdir().unwrap();
    let input = ticks(dir.path(), 0.0);
    let want = reference(&input).len();
    let path = input.to_str().unwrap();
    let r = ok(run_example(
        "vwap_bands",
        &["bench", "--input", path, "--runs", "2", "-w", "2", "--checkpoint-interval", "1m"],
    ));
    let out = String::from_utf8_lossy(&r.stdout);
    let runs: Vec<&str> = out.lines().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(runs.len(), 2, "{out}");
    for line in runs {
        // "run 1: 6000 events in 0.012 s = 500000 events/s, 57 decisions"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[2], "6000", "every tick counted: {line}");
        assert_eq!(words[words.len() - 2], want.to_string(), "the decisions a run makes: {line}");
        assert!(words[8].parse::<f64>().unwrap() > 0.0, "{line}");
    }
    assert!(out.lines().filter(|l| l.contains("checkpoints:")).all(|l| l.contains("committed")), "{out}");
    let median = out.lines().find(|l| l.starts_with("median:")).unwrap_or_else(|| panic!("{out}"));
    assert!(median.contains("events/s") && median.contains("p50") && median.contains("p99"), "{median}");
    for (args, want) in [
        (&["bench", "--runs", "0", "--input", path][..], "--runs"),
        (&["bench", "--input", "/no/such/file.jsonl"][..], "cannot read input"),
        (&["bench"][..], "needs --input"),
    ] {
        let r = run_example("vwap_bands", args);
        assert!(!r.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got {err}");
    }
}

/// The README shows examples/vwap_bands.rs whole: its copy must be the file, which the test suite
/// builds (`INFLIGHT_UPDATE_README=1` rewrites the copy).
#[test]
fn the_readme_shows_the_example_as_it_is_built() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let file = std::fs::read_to_string(root.join("examples/vwap_bands.rs")).unwrap();
    let (begin, end) = ("<!-- include examples/vwap_bands.rs -->\n```rust\n", "```\n<!-- end include -->");
    let start = readme.find(begin).expect("the README includes examples/vwap_bands.rs") + begin.len();
    let stop = start + readme[start..].find(end).expect("the include ends");
    if readme[start..stop] != file && std::env::var_os("INFLIGHT_UPDATE_README").is_some() {
        std::fs::write(root.join("README.md"), format!("{}{file}{}", &readme[..start], &readme[stop..])).unwrap();
        return;
    }
    assert!(
        readme[start..stop] == file,
        "README.md's copy of examples/vwap_bands.rs differs from the file: run this test with INFLIGHT_UPDATE_README=1"
    );
}
