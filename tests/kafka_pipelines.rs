//! The flight and code pipelines through Kafka (tansu on 127.0.0.1, or `KAFKA_BROKERS`): the same
//! decisions as from the files, the flight pipeline's schedule changes from their own topic, and
//! the code pipeline's bad records on the dead-letter topic.

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/broker.rs"]
mod broker;
#[path = "support/cli.rs"]
mod cli;

use broker::{Broker, unique};
use cli::{BIN, json_lines, ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(name)
}

fn with_broker(broker: &Broker, args: &[&str]) -> Output {
    ok(Command::new(BIN).args(args).env("KAFKA_BROKERS", &broker.addr).output().unwrap())
}

/// Decisions read back from a topic (or a file) without what differs between the two: the wall
/// clock, the source position and the code pipeline's position-based id.
fn comparable(decisions: Vec<Value>) -> Vec<String> {
    let mut v: Vec<String> = decisions
        .into_iter()
        .map(|mut d| {
            let o = d.as_object_mut().unwrap();
            o.remove("decided_at");
            o.remove("source");
            if o["pipeline"] == "code" {
                o.remove("id");
            }
            d.to_string()
        })
        .collect();
    v.sort();
    v
}

fn from_topic(broker: &Broker, topic: &str) -> Vec<Value> {
    let out = with_broker(broker, &["consume", "--topic", topic]);
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn from_file(dir: &Path, pipeline: &str, input: &Path) -> Vec<Value> {
    let out = dir.join(format!("{pipeline}.jsonl"));
    let (input, out_s) = (input.to_str().unwrap(), out.to_str().unwrap());
    ok(Command::new(BIN)
        .args(["run", pipeline, "--input", input, "--output", out_s, "--dead-letter", "/dev/null"])
        .output()
        .unwrap());
    json_lines(&out)
}

#[test]
fn flight_from_topics_with_changes_on_their_own_topic_equals_the_file_run() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(data("flight-sample.jsonl")).unwrap();
    let (statuses, changes): (Vec<&str>, Vec<&str>) = sample.lines().partition(|l| !l.contains("\"op\""));
    let (status_file, change_file) = (dir.path().join("status.jsonl"), dir.path().join("changes.jsonl"));
    std::fs::write(&status_file, statuses.join("\n")).unwrap();
    std::fs::write(&change_file, changes.join("\n")).unwrap();
    let (status_topic, change_topic, out, dead) = (unique("status"), unique("changes"), unique("out"), unique("dead"));
    for (topic, file) in [(&status_topic, &status_file), (&change_topic, &change_file)] {
        with_broker(
            &broker,
            &["produce", "--topic", topic, "--input", file.to_str().unwrap(), "--key-field", "flight_id"],
        );
    }
    let run = with_broker(
        &broker,
        &[
            "run",
            "flight",
            "--input-topic",
            &status_topic,
            "--updates-topic",
            &change_topic,
            "--from",
            "earliest",
            "--bounded",
            "--output-topic",
            &out,
            "--dead-letter-topic",
            &dead,
            "-w",
            "2",
        ],
    );
    let from_kafka = from_topic(&broker, &out);
    assert_eq!(from_kafka.len(), 10, "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(comparable(from_kafka), comparable(from_file(dir.path(), "flight", &data("flight-sample.jsonl"))));
    let dead = from_topic(&broker, &dead);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["source"]["topic"], status_topic.as_str());
}

#[test]
fn code_from_a_topic_equals_the_file_run_and_dead_letters_bad_records() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (events, out, dead) = (unique("code"), unique("fixes"), unique("dead"));
    with_broker(&broker, &["produce", "--topic", &events, "--input", data("code-sample.jsonl").to_str().unwrap()]);
    // The specification's example has no timestamp, so in Kafka it takes the record's time (now),
    // years after the sample's other events: without this lateness they would be late.
    let args = ["run", "code", "--input-topic", &events, "--from", "earliest", "--bounded", "--lateness", "10years"];
    with_broker(&broker, &[&args[..], &["--output-topic", &out, "--dead-letter-topic", &dead, "-w", "2"]].concat());
    let mut from_kafka = from_topic(&broker, &out);
    let mut from_files = from_file(dir.path(), "code", &data("code-sample.jsonl"));
    for d in from_kafka.iter_mut().chain(from_files.iter_mut()) {
        if d["key"] == "-" {
            d.as_object_mut().unwrap().remove("event_time");
        }
    }
    assert_eq!(from_kafka.len(), 7);
    assert_eq!(comparable(from_kafka), comparable(from_files));
    let mut reasons: Vec<String> =
        from_topic(&broker, &dead).iter().map(|d| d["reason"].as_str().unwrap().to_owned()).collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid", "malformed"]);
}
