//! `bench`: a pipeline's throughput and latency over a file, run after run. It prints figures
//! and never judges them. Every app has it (the bundled binary's own `bench` generates inputs).

use super::Pipeline;
use super::cli::ClusterArgs;
use super::run::{SideInput, percentiles, read_config, run_job};
use crate::engine::job::{JobConfig, JobReport};
use crate::engine::recovery::{CheckpointConfig, LastCheckpoint};
use crate::engine::runtime::{Cluster, RunContext};
use crate::engine::sink::Output;
use crate::engine::source::{FileSkew, Input, SourceConfig};
use crate::engine::time::{Millis, parse_duration};
use anyhow::{Context, Result, bail};
use clap::{ArgMatches, Args, FromArgMatches};
use std::path::PathBuf;
use std::sync::Arc;

/// The flags of `bench`, for every pipeline.
#[derive(Args)]
pub struct BenchArgs {
    /// The input, JSONL (default: the pipeline's sample, if it has one).
    #[arg(long, short = 'i')]
    pub input: Option<PathBuf>,
    /// Runs over the input, each from its start; the median run is printed last.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// The pipeline's settings, TOML (its LLM stage stays off: a bench measures the engine).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Take checkpoints at this interval of event time (in a fresh temporary directory per run),
    /// to measure what they cost.
    #[arg(long, value_parser = parse_duration)]
    pub checkpoint_interval: Option<u64>,
    /// Flow control as in `run` (default: the pipeline's for files).
    #[arg(long, value_parser = parse_duration)]
    pub max_lag: Option<u64>,
    /// File chunk size in bytes, as in `run`.
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,
}

/// `bench` of pipeline `P` from parsed arguments.
pub(super) fn from_matches<P: Pipeline>(m: &ArgMatches) -> Result<()> {
    let args = BenchArgs::from_arg_matches(m)?;
    let cluster = ClusterArgs::from_arg_matches(m)?;
    let flags = P::Flags::from_arg_matches(m)?;
    let mut config = read_config::<P>(args.config.as_deref())?;
    P::configure(&mut config, &flags)?;
    if let Some(llm) = P::llm_settings(&mut config) {
        llm.enabled = false;
    }
    P::validate(&config).map_err(|e| anyhow::anyhow!("invalid {} config: {e}", P::NAME))?;
    let Some(input) = args.input.clone().map(Input::File).or_else(|| P::sample().map(Input::Bundled)) else {
        bail!("bench of the {} pipeline needs --input FILE", P::NAME);
    };
    let side_inputs = P::side_inputs(&flags)
        .into_iter()
        .map(|s| match s {
            SideInput::File(path) if path != "-" => Ok(Input::File(path.into())),
            _ => bail!("bench reads side inputs from files (not stdin or Kafka)"),
        })
        .collect::<Result<Vec<_>>>()?;
    let source = SourceConfig {
        max_lag: args.max_lag.unwrap_or_else(P::file_max_lag),
        file_skew: if args.max_lag.is_some() { FileSkew::Free } else { FileSkew::Bounded },
        settle: P::settle(&config),
        chunk_size: args.chunk_size,
        ..SourceConfig::default()
    };
    let shared = Arc::new(P::prepare(&config, &flags, cluster.process)?);
    let runs = usize::try_from(args.runs).unwrap_or(usize::MAX);
    let hint = P::no_decisions_hint(&config);
    let job = FileBench { name: P::NAME, input, side_inputs, runs, source, checkpoint: args.checkpoint_interval, hint };
    job.run(cluster.cluster(), |job| Ok(run_job::<P>(job, &config, Arc::clone(&shared), &RunContext::default(), None)?))
}

/// Runs of one pipeline over a file, outputs discarded.
pub struct FileBench {
    /// The pipeline's name (for the header line and the checkpoints' manifest).
    pub name: &'static str,
    /// The main input: a file, or a bundled sample.
    pub input: Input,
    /// Side inputs, files.
    pub side_inputs: Vec<Input>,
    /// Runs, at least 1.
    pub runs: usize,
    /// How the sources read (flow control, chunks).
    pub source: SourceConfig,
    /// Checkpoint interval, if the runs take checkpoints.
    pub checkpoint: Option<Millis>,
    /// Said when the runs decide nothing ([`super::Pipeline::no_decisions_hint`]).
    pub hint: Option<String>,
}

impl FileBench {
    /// Runs `run` over the file `runs` times, printing each run and the median (to stdout).
    pub fn run(self, cluster: Cluster, run: impl Fn(&JobConfig) -> Result<JobReport>) -> Result<()> {
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        let size = match &self.input {
            Input::File(path) => {
                std::fs::metadata(path).with_context(|| format!("cannot read input {}", path.display()))?.len()
            }
            Input::Bundled(b) => b.bytes.len() as u64,
            _ => bail!("bench reads a file"),
        };
        let name = match &self.input {
            Input::File(path) => path.display().to_string(),
            Input::Bundled(b) => format!("{} (bundled)", b.name),
            _ => String::new(),
        };
        let (workers, processes) = (cluster.workers, cluster.processes);
        let mut job = JobConfig {
            input: self.input,
            side_inputs: self.side_inputs,
            source: self.source,
            output: Output::Discard,
            dead_letter: Output::Discard,
            cluster,
            checkpoint: None,
        };
        eprintln!(
            "bench {}: {} ({:.1} MB), {workers} worker(s) x {processes} process(es), {} run(s)",
            self.name,
            name,
            size as f64 / 1e6,
            self.runs,
        );
        let mut reports = Vec::new();
        for i in 0..self.runs {
            // A fresh checkpoint directory per run: each run starts from nothing.
            let ckpt = tempfile::tempdir().context("creating a checkpoint directory")?;
            job.checkpoint = self.checkpoint.map(|interval| CheckpointConfig {
                pipeline: self.name.to_owned(),
                dir: ckpt.path().to_owned(),
                interval,
                keep: 3,
            });
            let r = run(&job)?;
            println!(
                "run {}: {} events in {:.3} s = {:.0} events/s, {} decisions",
                i + 1,
                r.source.records(),
                r.elapsed.as_secs_f64(),
                r.events_per_sec(),
                r.outputs
            );
            if self.checkpoint.is_some() {
                print_checkpoints(&r.checkpoints);
            }
            reports.push(r);
        }
        reports.sort_by_key(|r| r.elapsed);
        let m = &reports[reports.len() / 2];
        println!(
            "median: {:.0} events/s, wall {:.3} s; read → decision latency {}",
            m.events_per_sec(),
            m.elapsed.as_secs_f64(),
            percentiles(&m.latency)
        );
        if let Some(hint) = self.hint.filter(|_| super::run::no_decisions(m)) {
            println!("note: {hint}");
        }
        Ok(())
    }
}

/// How many checkpoints a run committed, how long they took and how big they were.
fn print_checkpoints(all: &[LastCheckpoint]) {
    if all.is_empty() {
        println!("  checkpoints: none committed");
        return;
    }
    let mut ms: Vec<u64> = all.iter().map(|c| c.duration_ms).collect();
    let mut bytes: Vec<u64> = all.iter().map(|c| c.bytes).collect();
    ms.sort_unstable();
    bytes.sort_unstable();
    println!(
        "  checkpoints: {} committed, duration median {} ms (max {} ms), size median {:.1} KB (max {:.1} KB)",
        all.len(),
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        bytes[bytes.len() / 2] as f64 / 1e3,
        bytes[bytes.len() - 1] as f64 / 1e3
    );
}
