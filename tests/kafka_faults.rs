//! Kafka fault injection that a separate broker cannot do, on librdkafka's in-process mock cluster:
//! produce and fetch requests failing with retriable errors, a slow broker, and a broker going down
//! and coming back mid-run. The trading job must still deliver exactly the decisions of a file
//! run. (End-to-end tests against a real broker are in kafka_trading.rs, on tansu.)

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use inflight::engine::job::JobConfig;
use inflight::engine::kafka::{KafkaConfig, consume_to, produce_lines};
use inflight::engine::runtime::{Cluster, RunContext, Stop};
use inflight::engine::sink::{KafkaOutput, Output};
use inflight::engine::source::{Input, KafkaInput, SourceConfig, StartFrom};
use inflight::operators::Emit;
use inflight::pipelines::trading::TradingConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const INPUT: &str = "tests/fixtures/market-small.jsonl";

/// Decisions by id, as (action, reason): what must not change whatever the transport did.
fn by_id(lines: &str) -> BTreeMap<String, (Value, Value)> {
    let mut map = BTreeMap::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let d: Value = serde_json::from_str(line).unwrap();
        let id = d["id"].as_str().unwrap().to_owned();
        assert!(map.insert(id.clone(), (d["action"].clone(), d["reason"].clone())).is_none(), "{id} twice");
    }
    map
}

/// Every bar's decision, so there are many to lose.
fn config() -> TradingConfig {
    TradingConfig { emit: Emit::All, ..TradingConfig::default() }
}

fn file_decisions(dir: &Path) -> BTreeMap<String, (Value, Value)> {
    let out = dir.join("file.jsonl");
    let job = JobConfig {
        input: Input::File(INPUT.into()),
        side_inputs: Vec::new(),
        source: SourceConfig::default(),
        output: Output::File(out.clone()),
        dead_letter: Output::Discard,
        cluster: Cluster::default(),
        checkpoint: None,
    };
    inflight::run_trading(&job, &config(), &RunContext::default()).unwrap();
    by_id(&std::fs::read_to_string(out).unwrap())
}

#[test]
fn decisions_survive_request_errors_a_slow_broker_and_a_broker_outage() {
    let dir = tempfile::tempdir().unwrap();
    let expected = file_decisions(dir.path());
    assert!(expected.len() > 20);

    let cluster = MockCluster::new(3).unwrap();
    for topic in ["market", "decisions"] {
        cluster.create_topic(topic, 4, 3).unwrap();
    }
    let kafka = KafkaConfig { brokers: cluster.bootstrap_servers(), properties: Vec::new() };
    let reader = std::io::BufReader::new(std::fs::File::open(INPUT).unwrap());
    let produced = produce_lines(&kafka, "market", 4, reader, Some("asset"), None).unwrap();
    assert!(produced.records > 1000);

    // Faults: retriable produce and fetch errors, and every broker 30 ms away.
    use RDKafkaRespErr::*;
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART],
    );
    for broker in 1..=3 {
        cluster.broker_round_trip_time(broker, Duration::from_millis(30)).unwrap();
    }

    let job = JobConfig {
        input: Input::Kafka(KafkaInput {
            kafka: kafka.clone(),
            topic: "market".into(),
            group: "faults".into(),
            from: StartFrom::Earliest,
            bounded: true,
            idle_timeout: Duration::from_secs(5),
            create: false,
        }),
        side_inputs: Vec::new(),
        source: SourceConfig { max_lag: 60_000, ..SourceConfig::default() },
        output: Output::Kafka(KafkaOutput { kafka: kafka.clone(), topic: "decisions".into(), partitions: 4 }),
        dead_letter: Output::Discard,
        cluster: Cluster { workers: 2, ..Cluster::default() },
        checkpoint: None,
    };
    let ctx = RunContext::default();
    let outage = std::thread::scope(|s| {
        let run = s.spawn(|| inflight::run_trading(&job, &config(), &ctx));
        // Once the run is reading, a broker goes down for a second.
        while ctx.progress.get() == 0 && !run.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        cluster.broker_down(2).unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        cluster.broker_up(2).unwrap();
        run.join().unwrap()
    });
    let report = outage.unwrap();
    assert_eq!(report.source.records(), produced.records, "every record read once");

    let mut out = Vec::new();
    consume_to(&kafka, "decisions", false, false, &Stop::default(), &mut out).unwrap();
    let got = by_id(&String::from_utf8(out).unwrap());
    assert_eq!(got, expected, "the same decisions as from the file, each once");
}
