//! Running the `inflight` binary from tests and reading what it wrote.

#![allow(dead_code)] // each test file uses its own part

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_inflight");

/// Runs the binary to completion.
pub fn inflight(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("inflight runs")
}

/// Asserts the run succeeded.
#[track_caller]
pub fn ok(out: Output) -> Output {
    assert!(out.status.success(), "inflight failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Every line of a JSONL file, parsed.
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("output written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

/// Decisions without their wall-clock field, sorted by id (outputs of parallel runs are compared
/// order-insensitively).
pub fn decisions_by_id(path: &Path) -> Vec<Value> {
    let mut all: Vec<Value> = json_lines(path)
        .into_iter()
        .map(|mut d| {
            d.as_object_mut().expect("object").remove("decided_at").expect("decided_at present");
            d
        })
        .collect();
    all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()).then_with(|| a.to_string().cmp(&b.to_string())));
    all
}

/// Each value as JSON text, sorted.
pub fn sorted_strings(values: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = values.iter().map(Value::to_string).collect();
    v.sort();
    v
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `args` as a two-process cluster (one worker each) on loopback and waits for both.
pub fn two_processes(dir: &Path, args: &[&str]) {
    let hosts: PathBuf = dir.join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let spawn = |p: &str| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-w", "1", "-n", "2", "-p", p, "-h", hosts.to_str().unwrap()]);
        Command::new(BIN).args(&all).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (p0, p1) = (spawn("0"), spawn("1"));
    ok(p1.wait_with_output().unwrap());
    ok(p0.wait_with_output().unwrap());
}

/// Asserts two decision lists are equal, reporting only the first difference.
#[track_caller]
pub fn assert_same(what: &str, a: &[Value], b: &[Value]) {
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        panic!("{what}: first difference at decision {i}:\n  {}\n  {}", a[i], b[i]);
    }
    assert_eq!(a.len(), b.len(), "{what}: decision counts differ");
}

/// Asserts the run fails with a one-line error that contains `want`.
#[track_caller]
pub fn assert_refused(args: &[&str], want: &str) {
    let out = inflight(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(want), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got {err}");
}
