//! The bundled pipelines' outputs, byte for byte, against files committed in tests/golden/: the
//! samples in data/ and generated inputs (fixed seeds, late and malformed lines included), at
//! `-w 1` and `-w 4`. They pin what a refactor of the engine or the runner must not change.
//! Decisions lose only `decided_at` (wall-clock time); lines are sorted, since parallel runs
//! interleave them. `INFLIGHT_BLESS=1 cargo test --test golden` rewrites the files after an
//! intended change (review the diff).

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use cli::{inflight, ok};
use std::path::{Path, PathBuf};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// `line` without its `"decided_at":"…",` member (the only wall-clock field).
fn without_decided_at(line: &str) -> String {
    const KEY: &str = "\"decided_at\":\"";
    let Some(at) = line.find(KEY) else { return line.to_owned() };
    let value_end = at + KEY.len() + line[at + KEY.len()..].find('"').unwrap() + 1;
    let end = if line[value_end..].starts_with(',') { value_end + 1 } else { value_end };
    format!("{}{}", &line[..at], &line[end..])
}

/// The sorted lines of a run's output file, without `decided_at`, with `dir` (the temporary
/// directory generated inputs are in) written as `$DIR`.
fn lines(path: &Path, dir: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap().replace(dir.to_str().unwrap(), "$DIR");
    let mut lines: Vec<String> = text.lines().map(without_decided_at).collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[track_caller]
fn check(name: &str, got: &str) {
    let path = golden(name);
    if std::env::var_os("INFLIGHT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if want != got {
        let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let first = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(w.len().min(g.len()));
        panic!(
            "{name}: output differs from the golden file ({} lines there, {} now); first difference at line {}:\n\
             golden: {}\nnow:    {}",
            w.len(),
            g.len(),
            first + 1,
            w.get(first).unwrap_or(&"(none)"),
            g.get(first).unwrap_or(&"(none)")
        );
    }
}

/// Runs `args` at -w 1 and -w 4 (both must agree) and checks decisions and dead letters.
fn run_and_check(dir: &Path, name: &str, args: &[&str]) {
    for workers in ["1", "4"] {
        let out = dir.join(format!("{name}-w{workers}.out"));
        let dead = dir.join(format!("{name}-w{workers}.dead"));
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-w", workers, "-o", out.to_str().unwrap(), "--dead-letter", dead.to_str().unwrap()]);
        ok(inflight(&all));
        check(&format!("{name}.jsonl"), &lines(&out, dir));
        check(&format!("{name}.dead.jsonl"), &lines(&dead, dir));
    }
}

fn generate(dir: &Path, file: &str, args: &[&str]) -> String {
    let path = dir.join(file).to_str().unwrap().to_owned();
    let mut all = vec!["gen"];
    all.extend_from_slice(args);
    all.extend(["-o", &path]);
    ok(inflight(&all));
    path
}

#[test]
fn trading_sample() {
    let dir = tempfile::tempdir().unwrap();
    run_and_check(dir.path(), "trading-sample", &["run", "trading", "--input", "data/market-sample.jsonl"]);
}

#[test]
fn trading_generated() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(
        dir.path(),
        "ticks.jsonl",
        &["market", "--events", "20000", "--assets", "12", "--rate", "200", "--out-of-order", "0.05", "--seed", "3"],
    );
    let input_bad = generate(
        dir.path(),
        "bad.jsonl",
        &["market", "--events", "3000", "--assets", "3", "--rate", "40", "--malformed", "0.05", "--seed", "9"],
    );
    run_and_check(
        dir.path(),
        "trading-generated",
        &["run", "trading", "--input", &input, "--lateness", "300ms", "--emit", "all"],
    );
    run_and_check(dir.path(), "trading-malformed", &["run", "trading", "--input", &input_bad]);
}

#[test]
fn flight_sample() {
    let dir = tempfile::tempdir().unwrap();
    run_and_check(dir.path(), "flight-sample", &["run", "flight", "--input", "data/flight-sample.jsonl"]);
}

#[test]
fn flight_generated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (schedule, bookings) = (d.join("s.jsonl"), d.join("b.jsonl"));
    let (schedule, bookings) = (schedule.to_str().unwrap(), bookings.to_str().unwrap());
    let input = generate(
        d,
        "flight.jsonl",
        &[
            "flight",
            "--events",
            "1200",
            "--bookings",
            "800",
            "--changes",
            "0.05",
            "--mix",
            "stress",
            "--malformed",
            "0.01",
            "--schedule-out",
            schedule,
            "--bookings-out",
            bookings,
        ],
    );
    let args = ["run", "flight", "--input", &input, "--schedule", schedule, "--bookings", bookings, "--emit", "all"];
    run_and_check(d, "flight-generated", &args);
}

#[test]
fn code_sample() {
    let dir = tempfile::tempdir().unwrap();
    run_and_check(dir.path(), "code-sample", &["run", "code", "--input", "data/code-sample.jsonl"]);
}

#[test]
fn code_generated() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), "code.jsonl", &["code", "--events", "120", "--malformed", "0.02", "--seed", "5"]);
    run_and_check(dir.path(), "code-generated", &["run", "code", "--input", &input]);
}

#[test]
fn decided_at_is_all_that_is_removed() {
    let line = r#"{"id":"a","decided_at":"2024-01-07T10:00:00.000Z","source":{}}"#;
    assert_eq!(without_decided_at(line), r#"{"id":"a","source":{}}"#);
    assert_eq!(without_decided_at(r#"{"a":1}"#), r#"{"a":1}"#);
}
