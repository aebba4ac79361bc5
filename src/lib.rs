//! inflight: a dataflow stream-processing engine (on Timely Dataflow) that turns live event streams
//! into decisions. This crate re-exports the workspace for users who write their own pipelines, and
//! offers ready-made runs of the bundled pipelines.
//!
//! A pipeline is a function from a stream of parsed events to a stream of [`Decision`]s; the engine
//! runs it on every worker between a source and the sinks:
//!
//! ```no_run
//! use inflight::engine::job::{JobConfig, run};
//! use inflight::engine::runtime::{Cluster, RunContext};
//! use inflight::engine::sink::Output;
//! use inflight::engine::source::{Input, SourceConfig};
//! use inflight::pipelines::trading::{TradingConfig, MarketEvent, trading};
//!
//! let job = JobConfig {
//!     input: Input::File("data/market-sample.jsonl".into()),
//!     source: SourceConfig::default(),
//!     output: Output::Stdout,
//!     dead_letter: Output::Stderr,
//!     cluster: Cluster { workers: 2, ..Cluster::default() },
//! };
//! let config = TradingConfig::default();
//! let source = job.input.name();
//! let report = run::<MarketEvent, _, _>(&job, &RunContext::default(), move |scope, events| {
//!     trading(scope, events, &config, source.clone())
//! })?;
//! eprintln!("{} events/s", report.events_per_sec());
//! # Ok::<(), inflight::engine::job::JobError>(())
//! ```

pub use inflight_engine as engine;
pub use inflight_operators as operators;
pub use inflight_pipelines as pipelines;

pub use inflight_operators::Decision;

use inflight_engine::job::{JobConfig, JobError, JobReport, run};
use inflight_engine::runtime::RunContext;
use inflight_pipelines::trading::{MarketEvent, TradingConfig, trading};

/// Runs the trading pipeline with `config` over the job's input, to the end of the input.
pub fn run_trading(job: &JobConfig, config: &TradingConfig, ctx: &RunContext) -> Result<JobReport, JobError> {
    let config = config.clone();
    let source = job.input.name();
    run::<MarketEvent, _, _>(job, ctx, move |scope, events| trading(scope, events, &config, source.clone()))
}
