//! Declared operator state: a checkpoint restores only into a graph that declares the same state
//! (names and versions), and a graph that declares a name twice does not run. Both fail at start
//! with one line, never by restoring nothing or another operator's bytes.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

use inflight::engine::job::{JobConfig, JobError, run};
use inflight::engine::recovery::CheckpointConfig;
use inflight::engine::runtime::{Cluster, RunContext};
use inflight::engine::sink::Output;
use inflight::engine::source::{Input, SourceConfig};
use inflight::engine::{Graph, Key, Sourced, Stream};
use inflight::operators::{Decision, KeyByExt, Keyed, KeyedStateExt};
use inflight::pipelines::trading::synthetic::{GenConfig, generate};
use inflight::pipelines::trading::{MarketTick, TradingConfig, trading};
use std::path::Path;
use timely::dataflow::operators::vec::Map;

/// A decision under its key, so that a test can count decisions per key in keyed state.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct ByKey(Key, Decision);

impl Keyed for ByKey {
    fn key(&self) -> &Key {
        &self.0
    }
}

/// What the graph adds after the trading pipeline.
#[derive(Clone, Copy)]
enum Extra {
    /// Nothing: the trading pipeline as shipped.
    None,
    /// One more stateful operator, "decisions-per-key" version `version`.
    Counter { version: u32 },
    /// A second operator named like one of trading's own ("bars").
    Duplicate,
}

fn job(input: &Path, checkpoints: &Path, output: &Path) -> JobConfig {
    JobConfig {
        input: Input::File(input.to_owned()),
        side_inputs: Vec::new(),
        source: SourceConfig::default(),
        output: Output::File(output.to_owned()),
        dead_letter: Output::Discard,
        cluster: Cluster { workers: 2, ..Cluster::default() },
        checkpoint: Some(CheckpointConfig {
            pipeline: "trading".into(),
            dir: checkpoints.to_owned(),
            interval: 10_000,
            keep: 3,
        }),
    }
}

fn counted<'s>(graph: &Graph<'s>, decisions: Stream<'s, Decision>, name: &str, version: u32) -> Stream<'s, Decision> {
    decisions
        .map(|d: Decision| ByKey(d.key.clone(), d))
        .key_by()
        .keyed_state(graph.state(name, version), |seen: &mut u64, d: ByKey, out: &mut Vec<Decision>| {
            *seen += 1;
            out.push(d.1);
        })
        .into_stream()
}

fn run_with(job: &JobConfig, extra: Extra) -> Result<u64, JobError> {
    let config = TradingConfig::default();
    let source = job.input.name();
    let report =
        run::<MarketTick, _, _>(job, &RunContext::default(), move |graph, events: Stream<'_, Sourced<MarketTick>>| {
            let decisions = trading(graph, events, &config, source.clone(), None);
            match extra {
                Extra::None => decisions,
                Extra::Counter { version } => counted(graph, decisions, "decisions-per-key", version),
                Extra::Duplicate => counted(graph, decisions, "bars", 1),
            }
        })?;
    Ok(report.outputs)
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("market.jsonl");
    // 100 s of event time on 5 assets: several checkpoints at a 10 s interval, and decisions.
    let market = GenConfig { events: 20_000, assets: 5, rate: 200.0, ..GenConfig::default() };
    generate(&market, &mut std::io::BufWriter::new(std::fs::File::create(&input).unwrap())).unwrap();
    (dir, input)
}

fn one_line(e: &JobError) -> String {
    let line = e.to_string();
    assert!(!line.contains('\n'), "more than one line: {line}");
    line
}

#[test]
fn a_checkpoint_does_not_restore_into_a_graph_with_one_more_stateful_operator() {
    let (dir, input) = setup();
    let checkpoints = dir.path().join("ck");
    let out = dir.path().join("out.jsonl");
    let first = run_with(&job(&input, &checkpoints, &out), Extra::None).unwrap();
    assert!(first > 0, "the plain run made no decisions");

    let err = run_with(&job(&input, &checkpoints, &out), Extra::Counter { version: 1 }).unwrap_err();
    let line = one_line(&err);
    assert!(line.contains("'decisions-per-key'"), "does not name the extra state: {line}");
    assert!(line.contains("this graph has state the checkpoint lacks"), "{line}");
    assert!(line.contains(&checkpoints.display().to_string()), "does not name the directory: {line}");

    // The graph that wrote the checkpoint still restores from it.
    run_with(&job(&input, &checkpoints, &out), Extra::None).unwrap();
}

#[test]
fn a_checkpoint_does_not_restore_into_a_graph_lacking_one_of_its_states_or_of_another_version() {
    let (dir, input) = setup();
    let checkpoints = dir.path().join("ck");
    let out = dir.path().join("out.jsonl");
    run_with(&job(&input, &checkpoints, &out), Extra::Counter { version: 1 }).unwrap();

    let line = one_line(&run_with(&job(&input, &checkpoints, &out), Extra::None).unwrap_err());
    assert!(line.contains("the checkpoint has state this graph lacks: 'decisions-per-key'"), "{line}");

    let line = one_line(&run_with(&job(&input, &checkpoints, &out), Extra::Counter { version: 2 }).unwrap_err());
    assert!(line.contains("'decisions-per-key' is version 1 there, 2 here"), "{line}");
}

#[test]
fn two_operators_with_one_state_name_do_not_run() {
    let (dir, input) = setup();
    let err =
        run_with(&job(&input, &dir.path().join("ck"), &dir.path().join("out.jsonl")), Extra::Duplicate).unwrap_err();
    let line = one_line(&err);
    assert!(line.contains("'bars'"), "does not name the state: {line}");
    assert!(line.contains("two operators declare the state"), "{line}");
    // Nothing was written: the run ended before it read anything.
    let written = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default();
    assert_eq!(written, "", "a refused graph wrote decisions");
}
