//! The code-fix pipeline end to end through the `inflight` binary: the specification's example,
//! generated snippets with known injected errors (the fix must give back the original), dead
//! letters, parallelism and bad arguments. The fix rate per kind is printed
//! (`cargo test --release --test code_cli -- --nocapture`).

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use cli::{assert_refused, assert_same, decisions_by_id, inflight, json_lines, ok, sorted_strings, two_processes};
use inflight::pipelines::code::{Language, parses};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn run_code(dir: &Path, tag: &str, input: &str, extra: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let (out, dead) = (dir.join(format!("{tag}.jsonl")), dir.join(format!("{tag}.dead")));
    let mut args = vec!["run", "code", "--input", input, "--output", out.to_str().unwrap()];
    args.extend_from_slice(&["--dead-letter", dead.to_str().unwrap()]);
    args.extend_from_slice(extra);
    ok(inflight(&args));
    (decisions_by_id(&out), json_lines(&dead))
}

fn language(d: &Value) -> Language {
    match d["evidence"]["language"].as_str().unwrap() {
        "javascript" => Language::Javascript,
        _ => Language::Python,
    }
}

#[test]
fn the_sample_fixes_what_the_rules_know_and_suggests_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/code-sample.jsonl");
    let (decisions, dead) = run_code(dir.path(), "sample", sample.to_str().unwrap(), &[]);
    let by_line = |line: u64| decisions.iter().find(|d| d["source"]["line"] == line).unwrap();
    // The specification's example: a one-line, validated fix with confidence >= 0.9.
    let spec = by_line(1);
    assert_eq!(spec["action"], "FIX");
    assert!(spec["confidence"].as_f64().unwrap() >= 0.9);
    assert_eq!(spec["evidence"]["validated"], true);
    let diff = spec["evidence"]["diff"].as_str().unwrap();
    assert!(diff.contains("-    for price in prices\n+    for price in prices:\n"), "{diff}");
    assert_eq!(diff.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).count(), 1);
    // Bracket (Python), bracket (JavaScript), string, indentation: fixed; each fix parses.
    for line in 2..=5 {
        let d = by_line(line);
        assert_eq!(d["action"], "FIX", "line {line}: {d}");
        assert!(parses(language(d), d["evidence"]["fixed"].as_str().unwrap()), "line {line}");
        assert_eq!(d["key"].as_str().unwrap().split('/').next(), Some("acme"));
    }
    // A runtime error and code no rule repairs: low-confidence suggestions, nothing validated.
    for line in [6, 7] {
        let d = by_line(line);
        assert_eq!((d["action"].as_str(), d["evidence"]["validated"].as_bool()), (Some("SUGGEST"), Some(false)));
        assert!(d["confidence"].as_f64().unwrap() < 0.7);
    }
    assert_eq!(decisions.len(), 7);
    let reasons: Vec<_> = dead.iter().map(|d| (d["source"]["line"].as_u64().unwrap(), d["reason"].clone())).collect();
    assert_eq!(reasons, vec![(8, "invalid".into()), (9, "malformed".into())]);
    assert!(dead[0]["error"].as_str().unwrap().contains("cobol"));
}

#[test]
fn generated_errors_are_restored_per_kind_and_no_unparsable_fix_is_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    ok(inflight(&["gen", "code", "--events", "3000", "--malformed", "0.01", "-o", input.to_str().unwrap()]));
    let (decisions, dead) = run_code(dir.path(), "gen", input.to_str().unwrap(), &["-w", "2", "--chunk-size", "65536"]);
    let truth: Vec<Value> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("injected").is_some())
        .collect();
    // Nothing lost: every line is a decision or a dead letter.
    let lines = std::fs::read_to_string(&input).unwrap().lines().count();
    assert_eq!(decisions.len() + dead.len(), lines);
    assert!(dead.len() >= 10, "{} dead letters", dead.len());
    let mut tally: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for d in &decisions {
        let offset = d["source"]["line"].as_u64().unwrap() as usize;
        let case = truth.iter().find(|t| t["code"] == d["evidence"]["code"]).unwrap();
        let kind = (
            d["evidence"]["language"].as_str().unwrap().to_owned(),
            case["injected"]["kind"].as_str().unwrap().to_owned(),
        );
        let entry = tally.entry(kind).or_default();
        entry.1 += 1;
        if d["action"] == "FIX" {
            let fixed = d["evidence"]["fixed"].as_str().unwrap();
            assert!(parses(language(d), fixed), "line {offset}: a FIX always parses");
            assert_eq!(d["evidence"]["validated"], true);
            let by = d["evidence"]["validated_by"].as_str().unwrap_or_default();
            assert!(by.starts_with("ruff_python_parser") || by.starts_with("oxc_parser"), "line {offset}: {by:?}");
            if fixed == case["injected"]["original"].as_str().unwrap() {
                entry.0 += 1;
            }
        } else {
            assert_eq!(d["evidence"]["validated"], false);
        }
    }
    let mut below = Vec::new();
    for ((language, kind), (restored, cases)) in &tally {
        let rate = *restored as f64 / *cases as f64;
        println!("{language:>10} {kind:<20} {restored}/{cases} restored ({:.0}%)", rate * 100.0);
        let floor = if kind == "missing_colon" { 0.95 } else { 0.6 };
        if rate < floor {
            below.push(format!("{language} {kind}: {restored}/{cases} below {floor}"));
        }
    }
    assert!(below.is_empty(), "{below:?}");
    assert!(tally.len() >= 6, "every kind in both languages: {:?}", tally.keys());
}

#[test]
fn one_two_workers_and_two_processes_give_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    ok(inflight(&["gen", "code", "--events", "1500", "--malformed", "0.02", "-o", input.to_str().unwrap()]));
    let input = input.to_str().unwrap();
    let (one, dead_one) = run_code(dir.path(), "w1", input, &["--chunk-size", "32768"]);
    let (two, dead_two) = run_code(dir.path(), "w2", input, &["--chunk-size", "32768", "-w", "2"]);
    assert_same("-w 1 vs -w 2", &one, &two);
    assert_eq!(sorted_strings(&dead_one), sorted_strings(&dead_two));
    let (out, dead) = (dir.path().join("n2.jsonl"), dir.path().join("n2.dead"));
    let (out_s, dead_s) = (out.to_str().unwrap(), dead.to_str().unwrap());
    two_processes(
        dir.path(),
        &["run", "code", "--input", input, "--output", out_s, "--dead-letter", dead_s, "--chunk-size", "32768"],
    );
    assert_same("-w 1 vs -n 2", &one, &decisions_by_id(&out));
    assert_eq!(sorted_strings(&dead_one), sorted_strings(&json_lines(&dead)));
}

#[test]
fn bad_flags_exit_non_zero_with_one_line() {
    let cases: [(&[&str], &str); 3] = [
        (&["run", "code", "--input", "/no/such/file.jsonl"], "cannot read input"),
        (&["run", "code", "--emit", "all"], "unexpected argument '--emit'"),
        (&["run", "code", "--llm", "--llm-min-confidence", "2"], "min_confidence"),
    ];
    for (args, want) in cases {
        assert_refused(args, want);
    }
}

#[test]
fn the_example_config_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("data/code-sample.jsonl");
    let config = root.join("data/code.toml");
    let (plain, _) = run_code(dir.path(), "plain", sample.to_str().unwrap(), &[]);
    let (configured, _) =
        run_code(dir.path(), "config", sample.to_str().unwrap(), &["--config", config.to_str().unwrap()]);
    assert_eq!(plain, configured);
}
