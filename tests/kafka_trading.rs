//! The trading pipeline through a real Kafka-protocol broker: tansu, started on a free loopback
//! port for each test (or the broker in `KAFKA_BROKERS`, e.g. Apache Kafka from docker-compose.yml).

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/broker.rs"]
mod broker;
#[path = "support/cli.rs"]
mod cli;

use broker::{Broker, unique};
use cli::BIN;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Writes synthetic market data (`inflight gen market` with `args`) to `dir/name`.
fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new(BIN).args(["gen", "market", "-o", path.to_str().unwrap()]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

fn inflight(broker: &Broker, args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).env("KAFKA_BROKERS", &broker.addr).output().unwrap();
    assert!(out.status.success(), "inflight {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn produce(broker: &Broker, topic: &str, input: &Path) {
    inflight(broker, &["produce", "--topic", topic, "--input", input.to_str().unwrap(), "--key-field", "asset"]);
}

/// Records of a topic with partition, offset, key and headers.
fn consume(broker: &Broker, topic: &str) -> Vec<Value> {
    let out = inflight(broker, &["consume", "--topic", topic, "--meta"]);
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn values(records: &[Value]) -> Vec<Value> {
    records.iter().map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap()).collect()
}

/// Decisions without wall clock and source, sorted: comparable between file and Kafka runs.
fn comparable(decisions: Vec<Value>) -> Vec<String> {
    let mut v: Vec<String> = decisions
        .into_iter()
        .map(|mut d| {
            let o = d.as_object_mut().unwrap();
            o.remove("decided_at");
            o.remove("source");
            d.to_string()
        })
        .collect();
    v.sort();
    v
}

fn file_decisions(input: &Path, extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.jsonl");
    let mut args = vec!["run", "trading", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()];
    args.extend_from_slice(&["--dead-letter", dir.path().join("dead").to_str().unwrap().to_owned().leak()]);
    args.extend_from_slice(extra);
    let status = Command::new(BIN).args(&args).output().unwrap();
    assert!(status.status.success());
    std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn events_in(out: &Output) -> u64 {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.trim_start().starts_with("events in")).expect("summary");
    line.trim_start()["events in".len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn kafka_and_file_give_the_same_decisions() {
    let broker = Broker::start();
    let (ticks, decisions, dead) = (unique("ticks"), unique("decisions"), unique("dead"));
    produce(&broker, &ticks, &fixture("market-small.jsonl"));
    let args = ["run", "trading", "--input-topic", &ticks, "--from", "earliest", "--bounded", "--emit", "all"];
    let out = inflight(
        &broker,
        &[&args[..], &["--output-topic", &decisions, "--dead-letter-topic", &dead, "-w", "2"]].concat(),
    );
    assert_eq!(events_in(&out), 2000);
    let records = consume(&broker, &decisions);
    let from_kafka = values(&records);
    assert!(from_kafka.len() > 500);
    assert_eq!(
        comparable(from_kafka.clone()),
        comparable(file_decisions(&fixture("market-small.jsonl"), &["--emit", "all"]))
    );
    for (r, d) in records.iter().zip(&from_kafka) {
        assert_eq!(r["key"], d["key"], "records are keyed by the decision's key");
        assert_eq!(r["headers"]["pipeline"], "trading");
        assert_eq!(r["headers"]["decided_by"], "rules");
        assert_eq!(d["source"]["topic"], ticks.as_str());
        assert!(d["source"]["partition"].is_u64() && d["source"]["offset"].is_u64());
    }
    assert!(consume(&broker, &dead).is_empty());
}

#[test]
fn malformed_payloads_go_to_the_dead_letter_topic() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = generate(
        dir.path(),
        "dirty.jsonl",
        &["--events", "3000", "--assets", "3", "--rate", "20", "--malformed", "0.05"],
    );
    let (ticks, dead) = (unique("dirty"), unique("dead"));
    // Keyless: malformed lines have no asset to key by.
    inflight(&broker, &["produce", "--topic", &ticks, "--input", input.to_str().unwrap()]);
    let out = dir.path().join("d.jsonl");
    let args = ["run", "trading", "--input-topic", &ticks, "--from", "earliest", "--bounded", "--lateness", "10m"];
    let res =
        inflight(&broker, &[&args[..], &["--output", out.to_str().unwrap(), "--dead-letter-topic", &dead]].concat());
    let letters = values(&consume(&broker, &dead));
    assert!(letters.len() > 80, "{} dead letters", letters.len());
    for l in &letters {
        assert!(["malformed", "invalid"].contains(&l["reason"].as_str().unwrap()), "{l}");
        assert_eq!(l["source"]["topic"], ticks.as_str());
        assert!(l["source"]["partition"].is_u64() && l["source"]["offset"].is_u64());
        assert!(!l["raw"].as_str().unwrap().is_empty());
    }
    // Every good record went through: good + dead = all lines.
    assert_eq!(events_in(&res), 3000);
    let summary = String::from_utf8_lossy(&res.stderr);
    let good = 3000 - letters.len() as u64;
    assert!(summary.contains(&format!("malformed or invalid {}", letters.len())), "{summary}");
    assert!(good > 2700);
}

#[test]
fn restart_from_committed_processes_each_record_once() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("market-small.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Split where the second changes, so no 1 s window spans both runs.
    let second = |l: &str| -> String {
        serde_json::from_str::<Value>(l).unwrap()["timestamp"].as_str().unwrap()[..19].to_owned()
    };
    let split = (1000..lines.len()).find(|&i| second(lines[i - 1]) != second(lines[i])).unwrap();
    let (first, rest) = (dir.path().join("first.jsonl"), dir.path().join("rest.jsonl"));
    std::fs::write(&first, lines[..split].join("\n") + "\n").unwrap();
    std::fs::write(&rest, lines[split..].join("\n") + "\n").unwrap();
    let (ticks, group) = (unique("restart"), unique("group"));
    let run = |out: &Path| {
        let args = ["run", "trading", "--input-topic", &ticks, "--group", &group, "--from", "committed", "--bounded"];
        inflight(&broker, &[&args[..], &["--emit", "all", "--output", out.to_str().unwrap()]].concat())
    };
    produce(&broker, &ticks, &first);
    let (out1, out2) = (dir.path().join("1.jsonl"), dir.path().join("2.jsonl"));
    assert_eq!(events_in(&run(&out1)), split as u64);
    produce(&broker, &ticks, &rest);
    assert_eq!(events_in(&run(&out2)), (lines.len() - split) as u64, "the second run reads only the new records");
    let mut ids: Vec<String> = [&out1, &out2]
        .iter()
        .flat_map(|p| std::fs::read_to_string(p).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|l| serde_json::from_str::<Value>(&l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no decision was made twice");
    // A third run finds nothing new.
    assert_eq!(events_in(&run(&dir.path().join("3.jsonl"))), 0);
}

#[test]
fn two_processes_share_the_partitions_and_agree_with_one() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let ticks = unique("shared");
    produce(&broker, &ticks, &fixture("market-small.jsonl"));
    let one = dir.path().join("one.jsonl");
    let args = ["run", "trading", "--input-topic", &ticks, "--from", "earliest", "--bounded", "--emit", "all"];
    inflight(&broker, &[&args[..], &["--output", one.to_str().unwrap()]].concat());
    let two = dir.path().join("two.jsonl");
    let outs = cli::cluster(dir.path(), |cmd| {
        cmd.args(args).args(["--output", two.to_str().unwrap()]).env("KAFKA_BROKERS", &broker.addr);
    });
    for out in outs {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let read = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (a, b) = (read(&one), read(&two));
    assert!(a.len() > 500);
    assert_eq!(comparable(a), comparable(b));
}

/// A pipeline running in the background; killed if the test fails before it stops it.
struct Running(Option<Child>);

impl Running {
    /// Sends SIGTERM and waits for the process to end.
    fn terminate(mut self) -> Output {
        let child = self.0.take().unwrap();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `cond` every 50 ms for up to 30 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// Splits the small fixture at a second boundary near the middle.
fn halves(dir: &Path) -> (PathBuf, usize, PathBuf, usize) {
    let text = std::fs::read_to_string(fixture("market-small.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let second = |l: &str| -> String {
        serde_json::from_str::<Value>(l).unwrap()["timestamp"].as_str().unwrap()[..19].to_owned()
    };
    let split = (1000..lines.len()).find(|&i| second(lines[i - 1]) != second(lines[i])).unwrap();
    let (first, rest) = (dir.join("first.jsonl"), dir.join("rest.jsonl"));
    std::fs::write(&first, lines[..split].join("\n") + "\n").unwrap();
    std::fs::write(&rest, lines[split..].join("\n") + "\n").unwrap();
    (first, split, rest, lines.len() - split)
}

#[test]
fn unbounded_run_stops_cleanly_on_sigterm_and_commits_what_it_read() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (first, n_first, rest, n_rest) = halves(dir.path());
    let (ticks, group) = (unique("live"), unique("group"));
    produce(&broker, &ticks, &first);
    let out = dir.path().join("live.jsonl");
    let child = Running(Some(
        Command::new(BIN)
            .args(["run", "trading", "--input-topic", &ticks, "--group", &group, "--from", "committed"])
            .args(["--idle-timeout", "200ms", "--emit", "all", "--output", out.to_str().unwrap()])
            .env("KAFKA_BROKERS", &broker.addr)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // Decisions appear while the run goes on (idle partitions let windows close); all but the
    // last window of each asset, which only the stop closes.
    let expected = file_decisions(&first, &["--emit", "all"]).len();
    wait_for("decisions from the live run", || line_count(&out) + 2 >= expected);
    let res = child.terminate();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert_eq!(events_in(&res), n_first as u64);
    // Restarting from the committed offsets reads nothing twice, and then only what is new.
    let again = |name: &str| {
        let args = ["run", "trading", "--input-topic", &ticks, "--group", &group, "--from", "committed", "--bounded"];
        inflight(&broker, &[&args[..], &["--output", dir.path().join(name).to_str().unwrap()]].concat())
    };
    assert_eq!(events_in(&again("empty.jsonl")), 0);
    produce(&broker, &ticks, &rest);
    assert_eq!(events_in(&again("rest.jsonl")), n_rest as u64);
}

#[test]
fn broker_outage_is_survived_and_records_after_it_are_processed() {
    if std::env::var("KAFKA_BROKERS").is_ok() {
        eprintln!("skipped: this test pauses its own tansu broker, not an external one");
        return;
    }
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (first, n_first, rest, n_rest) = halves(dir.path());
    let ticks = unique("outage");
    produce(&broker, &ticks, &first);
    let (out, log) = (dir.path().join("out.jsonl"), dir.path().join("stderr.log"));
    let child = Running(Some(
        Command::new(BIN)
            .args(["run", "trading", "--input-topic", &ticks, "--from", "earliest", "--idle-timeout", "200ms"])
            .args(["--emit", "all", "--output", out.to_str().unwrap(), "-X", "socket.timeout.ms=1500"])
            .env("KAFKA_BROKERS", &broker.addr)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    wait_for("decisions before the outage", || line_count(&out) > 100);
    // The broker goes away for 4 s and comes back with the same port and storage. (It is paused,
    // not killed: tansu keeps data only in memory, and cannot bind its port again for a minute
    // after a kill because of TIME_WAIT. To its clients a paused broker is a gone one.)
    let pid = broker.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_secs(4));
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    produce(&broker, &ticks, &rest);
    // Everything but the last window of each asset, which only the stop closes.
    let expected = file_decisions(&fixture("market-small.jsonl"), &["--emit", "all"]).len();
    wait_for("decisions after the outage", || line_count(&out) + 2 >= expected);
    let res = child.terminate();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(res.status.success(), "{stderr}");
    assert!(stderr.contains("Timed out"), "the outage is reported: {stderr}");
    assert!(stderr.contains(&format!("events in {:>17}", n_first + n_rest)), "nothing lost: {stderr}");
    assert_eq!(line_count(&out), expected);
}

#[test]
fn a_bounded_read_of_many_batches_reads_every_record() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), "many.jsonl", &["--events", "60000", "--assets", "50"]);
    let ticks = unique("many");
    // Many small batches: the broker's reported end offsets lag the real ones on tansu.
    inflight(&broker, &["produce", "--topic", &ticks, "--input", input.to_str().unwrap(), "--key-field", "asset"]);
    let args = ["run", "trading", "--input-topic", &ticks, "--from", "earliest", "--bounded", "-w", "2"];
    let out = inflight(&broker, &[&args[..], &["--output", dir.path().join("d").to_str().unwrap()]].concat());
    assert_eq!(events_in(&out), 60_000);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("late                      0"), "{summary}");
}

#[test]
fn periodic_commits_follow_acknowledged_outputs_and_never_run_ahead() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ticks, group) = (unique("periodic"), unique("group"));
    // One record per batch: tansu 0.6 serves a fetch only from a batch boundary, so a restart at a
    // committed offset inside a batch would wait for new data there (Apache Kafka does not).
    let input = fixture("market-small.jsonl");
    let args = ["produce", "--topic", &ticks, "--input", input.to_str().unwrap(), "--key-field", "asset"];
    inflight(&broker, &[&args[..], &["-X", "batch.num.messages=1", "-X", "linger.ms=0"]].concat());
    let child = Running(Some(
        Command::new(BIN)
            .args(["run", "trading", "--input-topic", &ticks, "--group", &group, "--from", "committed"])
            .args(["--idle-timeout", "200ms", "--emit", "all", "--output-topic", &unique("decisions")])
            .env("KAFKA_BROKERS", &broker.addr)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    // Let it read everything and commit a few times, then kill it without a clean stop.
    std::thread::sleep(Duration::from_secs(4));
    drop(child); // SIGKILL: no final commit
    let args = ["run", "trading", "--input-topic", &ticks, "--group", &group, "--from", "committed", "--bounded"];
    let again =
        inflight(&broker, &[&args[..], &["--output", dir.path().join("again.jsonl").to_str().unwrap()]].concat());
    let reread = events_in(&again);
    // Some offsets were committed while it ran (else all 2000 would be read again), but not past
    // records whose windows were still open when it died (the last window of each asset is).
    assert!(reread > 0, "committed past records whose outputs were not acknowledged");
    assert!(reread < 2000, "no offsets were committed while the run went on");
}

#[test]
fn a_sink_that_cannot_deliver_fails_the_run() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    // One malformed record far larger than the producer may send: its dead letter cannot go out.
    std::fs::write(&input, format!("{{\"asset\": \"{}\n", "X".repeat(5_000))).unwrap();
    let ticks = unique("undeliverable");
    inflight(
        &broker,
        &["produce", "--topic", &ticks, "--input", input.to_str().unwrap(), "-X", "message.max.bytes=100000"],
    );
    let out = Command::new(BIN)
        .args(["run", "trading", "--input-topic", &ticks, "--from", "earliest", "--bounded"])
        .args(["--output", dir.path().join("d.jsonl").to_str().unwrap(), "--dead-letter-topic", &unique("dead")])
        .args(["-X", "message.max.bytes=1000"])
        .env("KAFKA_BROKERS", &broker.addr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run must fail: {stderr}");
    assert!(stderr.contains("could not be delivered"), "{stderr}");
}

/// Runs the binary against `brokers` (no success expected) and returns (exit code, stderr, seconds).
fn attempt(brokers: &str, args: &[&str]) -> (i32, String, f64) {
    let start = Instant::now();
    let out = Command::new(BIN).args(args).env("KAFKA_BROKERS", brokers).output().unwrap();
    let secs = start.elapsed().as_secs_f64();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).trim().to_owned(), secs)
}

/// What a user gets wrong with Kafka is an error within seconds, in one line: a typo'd input
/// topic (not created), two inputs, no broker at the address, a missing topic to consume. A
/// reader that stops early (`consume | head`) ends consume quietly, and a run resuming from
/// committed offsets without checkpoints says that its state starts empty.
#[test]
fn kafka_mistakes_are_one_line_errors_within_seconds() {
    let broker = Broker::start();
    let ticks = unique("ticks");
    produce(&broker, &ticks, &fixture("market-small.jsonl"));
    let typo = format!("{ticks}-typo");

    let (code, err, _) = attempt(&broker.addr, &["run", "trading", "--input-topic", &typo, "--bounded"]);
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.contains(&format!("topic {typo:?} does not exist (topics there: ")), "{err}");
    assert!(last.contains(&ticks) && last.ends_with("produce to it first, or pass --create-topics"), "{err}");
    let (code, err, secs) = attempt(&broker.addr, &["consume", "--topic", &typo]);
    assert_eq!(code, 1, "the typo'd topic was created: {err}");
    assert!(err.contains(&format!("topic {typo:?} does not exist")) && err.lines().count() == 1, "{err}");
    assert!(secs < 5.0, "consume of a missing topic took {secs:.1} s");

    // Opting in creates it, and a bounded read of the empty topic finishes.
    let out = inflight(&broker, &["run", "trading", "--input-topic", &typo, "--create-topics", "--bounded"]);
    assert_eq!(events_in(&out), 0);

    let sample = fixture("market-small.jsonl");
    let (code, err, _) =
        attempt(&broker.addr, &["run", "trading", "--input-topic", &ticks, "--input", sample.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("both --input and --input-topic are given") && err.lines().count() == 1, "{err}");

    // Nothing listens on a port just freed.
    let nobody = format!("127.0.0.1:{}", cli::free_port());
    for args in
        [&["run", "trading", "--input-topic", "t1", "--bounded"][..], &["run", "trading", "--output-topic", "t1"]]
    {
        let (code, err, secs) = attempt(&nobody, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        let last = err.lines().last().unwrap();
        assert!(last.contains(&format!("kafka ({nobody}): cannot reach the brokers within 5 s")), "{args:?}: {err}");
        assert!(secs < 15.0, "{args:?}: {secs:.1} s to give up");
    }

    // `consume | head -1`: the reader goes away after one line.
    let mut child = Command::new(BIN)
        .args(["consume", "--topic", &ticks])
        .env("KAFKA_BROKERS", &broker.addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    assert!(first.starts_with('{'), "{first}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("Broken pipe"), "{}: {err}", out.status);

    let note = "without --checkpoint-dir the pipeline's state";
    let out = inflight(&broker, &["run", "trading", "--input-topic", &ticks, "--bounded", "-o", "/dev/null"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(note));
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().to_str().unwrap();
    let out = inflight(
        &broker,
        &["run", "trading", "--input-topic", &ticks, "--bounded", "-o", "/dev/null", "--checkpoint-dir", ck],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(note));
}
