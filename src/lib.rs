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
//! use inflight::pipelines::trading::{TradingConfig, MarketTick, trading};
//!
//! let job = JobConfig {
//!     input: Input::File("data/market-sample.jsonl".into()),
//!     side_inputs: Vec::new(),
//!     source: SourceConfig::default(),
//!     output: Output::Stdout,
//!     dead_letter: Output::Stderr,
//!     cluster: Cluster { workers: 2, ..Cluster::default() },
//!     checkpoint: None,
//! };
//! let config = TradingConfig::default();
//! let source = job.input.name();
//! let report = run::<MarketTick, _, _>(&job, &RunContext::default(), move |scope, events| {
//!     trading(scope, events, &config, source.clone(), None)
//! })?;
//! eprintln!("{} events/s", report.events_per_sec());
//! # Ok::<(), inflight::engine::job::JobError>(())
//! ```

pub use inflight_engine as engine;
pub use inflight_operators as operators;
pub use inflight_pipelines as pipelines;

/// A file of the calling crate built into its binary, as a [`engine::source::Bundled`] input:
/// `bundled!("data/sample.jsonl")`, the path relative to the crate's `Cargo.toml`.
#[macro_export]
macro_rules! bundled {
    ($path:literal) => {
        $crate::engine::source::Bundled {
            name: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)),
        }
    };
}

pub mod app;
pub mod bundled;
pub mod live_load;

/// Differential Dataflow, for pipelines that join or aggregate with arrangements.
pub use differential_dataflow;
/// Timely Dataflow, for pipelines that build with its operators directly.
pub use timely;

pub use inflight_operators::Decision;

use inflight_engine::job::{JobConfig, JobError, JobReport};
use inflight_engine::runtime::RunContext;
use inflight_operators::LlmService;
use inflight_pipelines::flight::{FlightConfig, Reference};
use inflight_pipelines::trading::TradingConfig;
use std::sync::Arc;

/// Runs the trading pipeline with `config` over the job's input, to the end of the input. With
/// `config.llm.enabled`, an LLM service is started for the run (see [`run_trading_with`] to keep
/// hold of it, e.g. for its statistics).
pub fn run_trading(job: &JobConfig, config: &TradingConfig, ctx: &RunContext) -> Result<JobReport, JobError> {
    let llm = match config.llm.enabled {
        true => {
            let dir = job.checkpoint.as_ref().map(|c| c.dir.as_path());
            let llm = config.llm_config().for_process(job.cluster.process, job.cluster.processes, dir);
            Some(LlmService::start(&llm, ctx.pressure.clone()).map_err(JobError::Failed)?)
        }
        false => None,
    };
    run_trading_with(job, config, ctx, llm)
}

/// [`run_trading`] with the caller's LLM service (None: the rules decide alone).
pub fn run_trading_with(
    job: &JobConfig,
    config: &TradingConfig,
    ctx: &RunContext,
    llm: Option<Arc<LlmService>>,
) -> Result<JobReport, JobError> {
    app::run_job::<bundled::Trading>(job, config, Arc::new(()), ctx, llm)
}

/// Runs the flight pipeline: status events and reference changes from the job's inputs, against
/// `reference` (the schedule and bookings at start), with the caller's LLM service if any.
pub fn run_flight_with(
    job: &JobConfig,
    config: &FlightConfig,
    reference: Arc<Reference>,
    ctx: &RunContext,
    llm: Option<Arc<LlmService>>,
) -> Result<JobReport, JobError> {
    app::run_job::<bundled::Flight>(job, config, reference, ctx, llm)
}

/// Runs the code-fix pipeline over the job's input, with the caller's LLM service if any (start it
/// with [`inflight_pipelines::code::CodeConfig::check`] so proposals are parsed before they count).
pub fn run_code_with(job: &JobConfig, ctx: &RunContext, llm: Option<Arc<LlmService>>) -> Result<JobReport, JobError> {
    app::run_job::<bundled::Code>(job, &Default::default(), Arc::new(()), ctx, llm)
}
