//! Clusters of real processes on loopback: a lost process ends its peer at once with one line and
//! a restart of both resumes from the last checkpoint; a supervisor that restarts whatever exits
//! non-zero (as `restart: on-failure` does) survives random kills; stdout carries only decisions;
//! a peer that never comes up ends the run after the connect timeout; the bundled samples run from
//! any directory.

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use cli::{BIN, RunResult, assert_same_result as assert_same, ok, result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// `EXIT_PEER_LOST`: a process whose peer was lost exits with it.
const PEER_LOST: i32 = 75;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A hostfile of two free loopback ports.
fn hostfile(dir: &Path) -> PathBuf {
    let path = dir.join("hosts");
    // Both probes held at once, so the two ports differ.
    let probes: Vec<_> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let lines: String = probes.iter().map(|l| format!("{}\n", l.local_addr().unwrap())).collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// Market ticks spanning `seconds` of event time (200 assets, 5 ticks each per second), with bad
/// lines and disorder so dead letters and lateness are part of the state.
fn market(dir: &Path, seconds: u64) -> PathBuf {
    let path = dir.join("market.jsonl");
    let (events, rate) = ((200 * 5 * seconds).to_string(), "1000");
    let args = ["gen", "market", "--events", &events, "--assets", "200", "--rate", rate];
    ok(Command::new(BIN)
        .args(args)
        .args(["--malformed", "0.001", "--out-of-order", "0.02", "-o", s(&path)])
        .output()
        .unwrap());
    path
}

/// The arguments every process of a run gets (process index and cluster flags added later).
fn trading(input: &Path, out: &Path) -> Vec<String> {
    let dead = out.with_extension("dead");
    ["run", "trading", "--input", s(input), "-o", s(out), "--dead-letter", s(&dead), "--lateness", "300ms"]
        .map(String::from)
        .to_vec()
}

/// The same run in one process, uninterrupted.
fn reference(dir: &Path, input: &Path) -> RunResult {
    let out = dir.join("reference.jsonl");
    ok(Command::new(BIN).args(trading(input, &out)).output().unwrap());
    let r = result(&out);
    assert!(
        r.decisions.len() > 1_000 && !r.dead.is_empty(),
        "{} decisions, {} dead letters",
        r.decisions.len(),
        r.dead.len()
    );
    r
}

/// Process `p` of a two-process run with checkpoints in `ckpt`, replayed at `speed` so that it
/// lasts long enough to be killed.
fn process(base: &[String], hosts: &Path, ckpt: &Path, p: usize, speed: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(base)
        .args(["--checkpoint-dir", s(ckpt), "--checkpoint-interval", "2s", "--replay-speed", speed])
        .args(["-n", "2", "-p", &p.to_string(), "--hostfile", s(hosts), "--connect-timeout", "30s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Committed checkpoints under `dir`.
fn committed(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter(|e| e.path().join("MANIFEST.json").is_file()).count())
        .unwrap_or(0)
}

/// Waits for `child` to exit, at most `limit`: its status, or None if it is still running.
fn wait_at_most(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn stderr_of(child: Child) -> String {
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned()
}

/// A small pseudo-random number.
fn rand_below(n: u64) -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    (t.wrapping_mul(6364136223846793005) >> 17) % n.max(1)
}

#[test]
fn kill_9_of_one_process_ends_the_other_with_one_line_and_a_restart_of_both_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), 240);
    let want = reference(dir.path(), &input);
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out.jsonl"));
    let base = trading(&input, &out);
    let hosts = hostfile(dir.path());

    let mut p0 = process(&base, &hosts, &ckpt, 0, "20x").spawn().unwrap();
    let mut p1 = process(&base, &hosts, &ckpt, 1, "20x").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&ckpt) < 3 {
        assert!(Instant::now() < deadline, "no checkpoints");
        assert!(p0.try_wait().unwrap().is_none() && p1.try_wait().unwrap().is_none(), "a process ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    p1.kill().unwrap();
    p1.wait().unwrap();
    let killed = Instant::now();
    let status =
        wait_at_most(&mut p0, Duration::from_secs(10)).expect("process 0 exits within 10 s of losing process 1");
    let took = killed.elapsed();
    let err = stderr_of(p0);
    assert_eq!(status.code(), Some(PEER_LOST), "{err}");
    let lost: Vec<&str> = err.lines().filter(|l| l.contains("lost process")).collect();
    assert_eq!(lost.len(), 1, "one line about the lost process: {err}");
    assert!(lost[0].starts_with("inflight: lost process 1 (127.0.0.1:"), "{err}");
    assert!(lost[0].contains("restart every process with the same command"), "{err}");
    assert!(lost[0].contains("last complete checkpoint"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "no panic output: {err}");
    eprintln!("process 0 exited {took:?} after process 1 was killed");

    // Restart both, process 1 first and process 0 three seconds later, at full speed.
    let p1 = process(&base, &hosts, &ckpt, 1, "100000x").spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let p0 = process(&base, &hosts, &ckpt, 0, "100000x").spawn().unwrap();
    let (o0, o1) = (p0.wait_with_output().unwrap(), p1.wait_with_output().unwrap());
    let e0 = String::from_utf8_lossy(&o0.stderr);
    assert!(o0.status.success() && o1.status.success(), "{e0}\n{}", String::from_utf8_lossy(&o1.stderr));
    assert!(e0.contains("restored from the checkpoint at"), "{e0}");
    assert_same("after kill -9 and a restart of both", &want, &result(&out));
}

/// A supervisor like `restart: on-failure`: whatever exits non-zero is started again with the same
/// command. Five kills at random moments, each of a random process, and the run still ends with
/// the uninterrupted output.
#[test]
fn a_supervisor_that_restarts_failed_processes_survives_five_random_kills() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), 360);
    let want = reference(dir.path(), &input);
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out.jsonl"));
    let base = trading(&input, &out);
    let hosts = hostfile(dir.path());
    let start = |p: usize| process(&base, &hosts, &ckpt, p, "20x").stderr(Stdio::null()).spawn().unwrap();

    let mut children: Vec<Option<Child>> = vec![Some(start(0)), Some(start(1))];
    let (mut kills, mut restarts, mut next_kill) = (0, 0, Instant::now() + Duration::from_millis(1_000));
    let deadline = Instant::now() + Duration::from_secs(300);
    while children.iter().any(Option::is_some) {
        assert!(Instant::now() < deadline, "the cluster did not finish: {kills} kills, {restarts} restarts");
        if kills < 5 && Instant::now() >= next_kill {
            let p = rand_below(2) as usize;
            if let Some(c) = children[p].as_mut() {
                if c.try_wait().unwrap().is_none() {
                    c.kill().unwrap();
                    kills += 1;
                }
            }
            next_kill = Instant::now() + Duration::from_millis(500 + rand_below(1_500));
        }
        for (p, slot) in children.iter_mut().enumerate() {
            let Some(status) = slot.as_mut().and_then(|c| c.try_wait().unwrap()) else { continue };
            *slot = if status.success() {
                None
            } else {
                restarts += 1;
                Some(start(p))
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(kills, 5, "the run ended before five kills");
    assert!(restarts >= 10, "each kill restarts both processes: {restarts} restarts");
    assert_same("after five kills under a supervisor", &want, &result(&out));
}

#[test]
fn with_output_to_stdout_a_cluster_writes_only_decisions_there() {
    let dir = tempfile::tempdir().unwrap();
    let single = ok(Command::new(BIN).args(["run", "trading", "-o", "-"]).output().unwrap());
    let n = String::from_utf8_lossy(&single.stdout).lines().count();
    assert!(n > 10);
    let outs = cli::cluster(dir.path(), |cmd| {
        cmd.args(["run", "trading", "-o", "-"]).stdout(Stdio::piped());
    });
    for (p, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "process {p}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("process {p}: {e}: {line:?}"));
            assert!(v["action"].is_string() && v["key"].is_string(), "process {p}: not a decision: {line}");
        }
    }
    assert_eq!(String::from_utf8_lossy(&outs[0].stdout).lines().count(), n, "process 0 writes every decision");
    assert!(outs[1].stdout.is_empty(), "process 1 writes none");
}

#[test]
fn a_peer_that_never_comes_up_ends_the_run_after_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = hostfile(dir.path());
    let lines: Vec<String> = std::fs::read_to_string(&hosts).unwrap().lines().map(str::to_owned).collect();
    for (p, missing) in [(0, 1), (1, 0)] {
        let start = Instant::now();
        let out: Output = Command::new(BIN)
            .args(["run", "trading", "-o", "-", "-n", "2", "-p", &p.to_string(), "--hostfile", s(&hosts)])
            .args(["--connect-timeout", "1s"])
            .output()
            .unwrap();
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "process {p}: {err}");
        assert!(took < Duration::from_secs(8), "process {p} gave up after {took:?}");
        assert_eq!(err.trim().lines().count(), 1, "process {p}: one line: {err}");
        assert!(err.contains(&format!("process {missing} ({})", lines[missing])), "process {p}: {err}");
        assert!(err.contains("connect timeout (1s)"), "process {p}: {err}");
        assert!(out.stdout.is_empty(), "process {p}: nothing on stdout");
    }
}

#[test]
fn a_cluster_of_processes_that_disagree_on_the_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = hostfile(dir.path());
    let spawn = |p: &str, w: &str| {
        Command::new(BIN)
            .args(["run", "trading", "-o", "-", "-n", "2", "-p", p, "-w", w, "--hostfile", s(&hosts)])
            .args(["--connect-timeout", "20s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("0", "1"), spawn("1", "2"));
    for (p, child) in [a, b].into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "process {p}: {err}");
        assert!(err.contains("every process needs the same -n and -w"), "process {p}: {err}");
    }
}

#[test]
fn the_bundled_samples_run_from_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    for pipeline in ["trading", "flight", "code"] {
        let out = ok(Command::new(BIN).args(["run", pipeline]).current_dir(dir.path()).output().unwrap());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().count() > 3, "{pipeline}: {text}");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(v["action"].is_string(), "{pipeline}: {line}");
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written to the directory");
}
