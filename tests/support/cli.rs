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
    assert!(out.status.success(), "inflight failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
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

/// The number after `label` in a run summary on stderr (`  events in      5000`).
#[track_caller]
pub fn summary_value(stderr: &str, label: &str) -> f64 {
    let line =
        stderr.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label} in {stderr}"));
    line.trim_start()[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

/// An example's binary: target/<profile>/examples/<name>, beside the test's deps/ directory.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let path = profile.join("examples").join(name);
    assert!(path.exists(), "{} not built (cargo test builds examples)", path.display());
    path
}

/// Runs an example's binary to completion.
pub fn run_example(name: &str, args: &[&str]) -> Output {
    Command::new(example(name)).args(args).output().unwrap()
}

/// Starts `run` (a run with `--checkpoint-dir ckpt`) and kills it with SIGKILL once its first
/// checkpoint is committed (or when it ends first, on a fast machine; or after 60 s).
pub fn kill_9_after_first_checkpoint(mut run: Command, ckpt: &Path) {
    let mut child = run.stderr(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        let committed = std::fs::read_dir(ckpt)
            .map(|d| d.flatten().any(|e| e.path().join("MANIFEST.json").is_file()))
            .unwrap_or(false);
        if committed {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = child.kill();
    child.wait().unwrap();
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `args` as a two-process cluster (one worker each) on loopback and waits for both.
pub fn two_processes(dir: &Path, args: &[&str]) {
    for out in cluster(dir, |cmd| {
        cmd.args(args).stdout(Stdio::null());
    }) {
        ok(out);
    }
}

/// Starts a two-process cluster on loopback (`configure` adds the arguments, `-n`/`-p`/`-h` are
/// added here) and returns both processes' outputs. A free port can be taken by another test
/// between our probe and timely's bind; such a start is retried on new ports, nothing else is.
pub fn cluster(dir: &Path, configure: impl Fn(&mut Command)) -> Vec<Output> {
    let hosts: PathBuf = dir.join("hosts");
    for _ in 0..5 {
        // Both probes held at once, so the two ports differ.
        let probes: Vec<_> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let lines: String = probes.iter().map(|l| format!("{}\n", l.local_addr().unwrap())).collect();
        drop(probes);
        std::fs::write(&hosts, lines).unwrap();
        let spawn = |p: &str| {
            let mut cmd = Command::new(BIN);
            configure(&mut cmd);
            cmd.args(["-w", "1", "-n", "2", "-p", p, "--hostfile", hosts.to_str().unwrap()]);
            cmd.stderr(Stdio::piped()).spawn().unwrap()
        };
        let mut children = vec![spawn("0"), spawn("1")];
        // A process that fails to start leaves its peer waiting for it: stop the peer then.
        loop {
            let failed = children.iter_mut().any(|c| c.try_wait().unwrap().is_some_and(|s| !s.success()));
            let done = children.iter_mut().all(|c| c.try_wait().unwrap().is_some());
            if failed && !done {
                for c in &mut children {
                    let _ = c.kill();
                }
            }
            if failed || done {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let in_use = outs.iter().any(|o| String::from_utf8_lossy(&o.stderr).contains("Address already in use"));
        if !in_use {
            return outs;
        }
    }
    panic!("no free pair of loopback ports in 5 tries");
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

/// What a run left: decisions without `decided_at`, in file order, and dead letters sorted
/// (their order within one event time depends on the worker layout, their set does not).
#[derive(Debug, PartialEq)]
pub struct RunResult {
    /// Decisions without `decided_at`, in file order.
    pub decisions: Vec<String>,
    /// Dead letters, sorted.
    pub dead: Vec<String>,
}

pub fn result(out: &Path) -> RunResult {
    let decisions = std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("decided_at").expect("decided_at");
            v.to_string()
        })
        .collect();
    let mut dead: Vec<String> =
        std::fs::read_to_string(out.with_extension("dead")).unwrap().lines().map(str::to_owned).collect();
    dead.sort();
    RunResult { decisions, dead }
}

#[track_caller]
pub fn assert_same_result(what: &str, want: &RunResult, got: &RunResult) {
    if let Some(i) = want.decisions.iter().zip(&got.decisions).position(|(a, b)| a != b) {
        panic!("{what}: decision {i} differs:\n  {}\n  {}", want.decisions[i], got.decisions[i]);
    }
    assert_eq!(want.decisions.len(), got.decisions.len(), "{what}: decision counts differ");
    assert!(want.dead == got.dead, "{what}: dead letters differ ({} vs {})", want.dead.len(), got.dead.len());
}

/// The `[sizing]` numbers of a test's config.
#[derive(Clone, Copy)]
pub struct Sizes {
    pub risk: f64,
    pub multiple: f64,
    pub lot: f64,
    pub cap: f64,
}

/// Recomputes every decision's size and running position (per key, in file order) from its own
/// evidence and asserts what the run wrote; returns how often each case happened.
pub fn check_sized(decisions: &[Value], sizes: Sizes) -> std::collections::BTreeMap<&'static str, usize> {
    let Sizes { risk, multiple, lot, cap } = sizes;
    let round9 = |x: f64| (x * 1e9).round() / 1e9;
    let mut positions = std::collections::BTreeMap::<String, f64>::new();
    let mut seen = std::collections::BTreeMap::<&'static str, usize>::new();
    for d in decisions {
        let position = positions.entry(d["key"].as_str().unwrap().to_owned()).or_insert(0.0);
        let (action, reason) = (d["action"].as_str().unwrap(), d["reason"].as_str().unwrap());
        let atr = d["evidence"]["atr"].as_f64();
        let signal = ["BUY", "SELL"].into_iter().find(|a| reason.starts_with(&format!("{a} held: ")));
        match (action, signal) {
            ("BUY" | "SELL", _) => {
                let buy = action == "BUY";
                let raw = risk / (multiple * atr.expect("a sized trade has an ATR"));
                let room = if buy { cap - *position } else { *position };
                let lots = (raw.min(room) / lot + 1e-9).floor();
                let size = d["suggested_size"].as_f64().unwrap();
                assert_eq!(size, round9(lots * lot), "{d}");
                assert!(lots >= 1.0, "{d}");
                *position = round9(if buy { *position + size } else { *position - size });
                *seen.entry(if raw > room { "capped" } else { "traded" }).or_default() += 1;
            }
            ("HOLD", Some(signal)) => {
                assert!(d.get("suggested_size").is_none(), "{d}");
                let why = if atr.is_none() {
                    "ATR(14) has no value yet"
                } else if signal == "BUY" && *position >= cap {
                    "is at max_position"
                } else if signal == "SELL" && *position <= 0.0 {
                    "there is no position to sell"
                } else {
                    "below one lot"
                };
                assert!(reason.contains(why), "{why}: {d}");
                *seen.entry(why).or_default() += 1;
            }
            _ => assert!(d.get("suggested_size").is_none(), "{d}"),
        }
        assert_eq!(d["position_after"].as_f64(), Some(*position), "{d}");
        assert!((0.0..=cap).contains(position), "{d}");
    }
    seen
}
