//! The runner library: a [`Pipeline`] is a Rust type that says how to parse its events, what it
//! may be configured with, and how to build its dataflow; an [`App`] turns a set of them into a
//! command line with every flag and behaviour of the bundled `inflight` binary: file, stdin and
//! Kafka in and out, dead letters, cluster flags, checkpoints and restore, the live view, metrics,
//! the LLM stage, TOML config with INFLIGHT_* / OPENAI_* environment and flags over it, Ctrl-C
//! handling, a progress line and the run summary.
//!
//! ```no_run
//! # use inflight::app::{App, BuildCx, NoFlags, Pipeline};
//! # use inflight::engine::{Sourced, Stream};
//! # use inflight::Decision;
//! # struct Vwap;
//! # impl Pipeline for Vwap {
//! #     const NAME: &'static str = "vwap";
//! #     const ABOUT: &'static str = "VWAP bands";
//! #     const ACTIONS: &'static [inflight::operators::Action] = &[];
//! #     type Event = inflight::pipelines::trading::MarketTick;
//! #     type Config = ();
//! #     type Flags = NoFlags;
//! #     type Shared = ();
//! #     fn prepare(_: &(), _: &NoFlags, _: usize) -> anyhow::Result<()> { Ok(()) }
//! #     fn build<'s>(_: BuildCx<'_, 's, Self>, _: Stream<'s, Sourced<Self::Event>>) -> Stream<'s, Decision> { todo!() }
//! # }
//! fn main() {
//!     App::new("vwap").about("VWAP bands on market ticks").pipeline::<Vwap>().main()
//! }
//! ```

mod bench;
mod cli;
mod run;

pub use bench::{BenchArgs, FileBench};
pub use cli::{ClusterArgs, EmitFlag, KafkaArgs, LlmArgs, NoFlags, RunArgs, ServeArgs, parse_speed};
pub use run::{SideInput, percentiles, print_summary, run_job};

use crate::engine::event::{Event, Sourced};
use crate::engine::serve::tap::Taps;
pub use crate::engine::source::Bundled;
use crate::engine::time::Millis;
use crate::engine::{Graph, Scope, SourceName, State, Stream};
use crate::operators::{Action, Decision, LlmConfig, LlmService, ReplyCheck};
use anyhow::Result;
use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};
use std::sync::Arc;

/// A pipeline: events of one type in, decisions out.
pub trait Pipeline: Sized + 'static {
    /// Its name: `run NAME` in an app with several, decisions' `pipeline`, the default consumer
    /// group (`inflight-NAME`), the checkpoint manifest, the live view's title.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Every action its decisions may carry (checked at start; the LLM stage may answer only
    /// these).
    const ACTIONS: &'static [Action];
    /// What one input record parses into.
    type Event: Event;
    /// Its settings: read from `--config FILE` (TOML), defaults where the file is silent.
    type Config: Clone + Default + serde::de::DeserializeOwned + Send + Sync + 'static;
    /// Its own flags (clap `Args`), after the runner's; [`NoFlags`] when it has none.
    type Flags: Args + FromArgMatches + Send + Sync + 'static;
    /// Data loaded once per process before the dataflow is built (reference tables), shared by
    /// its workers; `()` when there is none.
    type Shared: Send + Sync + 'static;

    /// The input read when neither `--input` nor `--input-topic` is given: records built into the
    /// binary with [`crate::bundled!`], so the default run works from any directory.
    fn sample() -> Option<Bundled> {
        None
    }

    /// `--max-lag` for file inputs when the flag is not given: 0 (no pacing) unless a stage of
    /// the pipeline holds records waiting for other workers (a lookup), see the README.
    fn file_max_lag() -> Millis {
        0
    }

    /// Event time a bounded source waits for stragglers before ending windows (a window's width).
    fn settle(_config: &Self::Config) -> Millis {
        1
    }

    /// Said after the summary of a run that read good events but decided nothing (e.g. an input
    /// shorter than the indicators' warm-up); None: nothing to say.
    fn no_decisions_hint(_config: &Self::Config) -> Option<String> {
        None
    }

    /// Applies the pipeline's flags to its config (flags override the file).
    fn configure(_config: &mut Self::Config, _flags: &Self::Flags) -> Result<()> {
        Ok(())
    }

    /// The config's LLM settings, which `--llm*` flags and `OPENAI_*` variables change; None when
    /// the pipeline has no LLM stage.
    fn llm_settings(_config: &mut Self::Config) -> Option<&mut LlmConfig> {
        None
    }

    /// The LLM service's settings for a run: the config's, with the pipeline's prompts and the
    /// actions the model may answer. None: no LLM stage.
    fn llm_config(_config: &Self::Config) -> Option<LlmConfig> {
        None
    }

    /// Checks a model's proposal before it counts (the code pipeline parses fixes).
    fn reply_check() -> Option<Arc<dyn ReplyCheck>> {
        None
    }

    /// Checks the config once flags and environment are applied.
    fn validate(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// More inputs of the event type, read beside the main one (live reference changes).
    fn side_inputs(_flags: &Self::Flags) -> Vec<SideInput> {
        Vec::new()
    }

    /// Loads what every worker of process `process` shares.
    fn prepare(config: &Self::Config, flags: &Self::Flags, process: usize) -> Result<Self::Shared>;

    /// Builds the dataflow on one worker.
    fn build<'s>(cx: BuildCx<'_, 's, Self>, events: Stream<'s, Sourced<Self::Event>>) -> Stream<'s, Decision>;
}

/// What [`Pipeline::build`] gets besides its events.
pub struct BuildCx<'a, 's, P: Pipeline> {
    /// The worker's graph: its scope, its declared state, its live-view taps.
    pub graph: &'a Graph<'s>,
    /// The run's settings.
    pub config: &'a P::Config,
    /// What [`Pipeline::prepare`] loaded.
    pub shared: &'a Arc<P::Shared>,
    /// The main input's name, which decisions carry in their `source`.
    pub source: SourceName,
    /// The LLM service, when the run has one.
    pub llm: Option<&'a Arc<LlmService>>,
}

impl<'s, P: Pipeline> BuildCx<'_, 's, P> {
    /// The worker's dataflow scope.
    pub fn scope(&self) -> Scope<'s> {
        self.graph.scope()
    }

    /// Declares operator state `name` (unique in the graph) at `version`, for the stateful
    /// operator that keeps it (`bars`, `keyed_state`, `decide`, `lookup`): checkpoints save it
    /// under that name, and a restore into a graph with other state fails at start.
    pub fn state(&self, name: &str, version: u32) -> State {
        self.graph.state(name, version)
    }

    /// The live view's taps (charts of per-key series).
    pub fn taps(&self) -> &Taps {
        self.graph.taps()
    }
}

/// Help and version as clap prints them; a usage error (an unknown flag, a bad value) as one line
/// (clap's first) and exit 2. A bad value that came from an environment variable names it.
fn exit_on_bad_args(app: &str, command: &Command, e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: bad arguments");
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.split([' ', '=']).next().and_then(|f| f.strip_prefix("--")),
        _ => None,
    };
    let given = |flag: &str| std::env::args().any(|a| a == format!("--{flag}") || a.starts_with(&format!("--{flag}=")));
    match flag.filter(|f| !given(f)).and_then(|f| env_of(command, f)) {
        Some(var) => eprintln!("{app}: {first} (from the environment variable {var}; see --help)"),
        None => eprintln!("{app}: {first} (see --help)"),
    }
    std::process::exit(2)
}

/// The environment variable of flag `--long` in `command` or its subcommands, when it has one.
fn env_of(command: &Command, long: &str) -> Option<String> {
    let own = command.get_arguments().find(|a| a.get_long() == Some(long)).and_then(|a| a.get_env());
    own.map(|v| v.to_string_lossy().into_owned()).or_else(|| command.get_subcommands().find_map(|c| env_of(c, long)))
}

/// Fails when an `INFLIGHT_*` variable is set that another pipeline's `run` reads but `run
/// PIPELINE` has no flag for (`INFLIGHT_WINDOW` for flight): set for one pipeline, it would
/// silently not apply to this one.
fn refuse_foreign_env(run: &Command, pipeline: &str) -> Result<()> {
    let envs = |c: &Command| -> Vec<(String, String)> {
        let named = c.get_arguments().filter_map(|a| Some((a.get_env()?, a.get_long()?)));
        named.map(|(env, long)| (env.to_string_lossy().into_owned(), long.to_owned())).collect()
    };
    let Some(own) = run.find_subcommand(pipeline).map(envs) else { return Ok(()) };
    for other in run.get_subcommands().filter(|c| c.get_name() != pipeline) {
        for (var, long) in envs(other) {
            let set = std::env::var_os(&var).is_some_and(|v| !v.is_empty());
            if set && var.starts_with("INFLIGHT_") && !own.iter().any(|(v, _)| *v == var) {
                anyhow::bail!(
                    "{var} is set, but `run {pipeline}` has no flag for it (`run {}` reads it as --{long}): unset it",
                    other.get_name()
                );
            }
        }
    }
    Ok(())
}

/// One registered pipeline, type-erased: how to add its `run` flags and how to run it.
struct Entry {
    name: &'static str,
    about: &'static str,
    args: fn(Command) -> Command,
    run: RunCommand,
    bench_args: fn(Command) -> Command,
    bench: RunCommand,
}

/// How one command of a pipeline runs from its parsed arguments.
type RunCommand = fn(&ArgMatches) -> Result<()>;

/// Runs an extra command if `matches` names one of its subcommands (None: not one of them).
type RunExtra = Box<dyn Fn(&ArgMatches) -> Option<Result<()>>>;

/// Extra commands of an app (the bundled binary's `gen` and `bench`).
struct Extra {
    augment: fn(Command) -> Command,
    run: RunExtra,
}

/// A command-line program running one or more pipelines.
pub struct App {
    name: &'static str,
    about: &'static str,
    version: &'static str,
    pipelines: Vec<Entry>,
    extra: Vec<Extra>,
}

impl App {
    /// An app called `name` (the binary's name in `--help`).
    pub fn new(name: &'static str) -> Self {
        App { name, about: "", version: env!("CARGO_PKG_VERSION"), pipelines: Vec::new(), extra: Vec::new() }
    }

    /// Its one-line description.
    pub fn about(mut self, about: &'static str) -> Self {
        self.about = about;
        self
    }

    /// Its version for `--version` (default: inflight's).
    pub fn version(mut self, version: &'static str) -> Self {
        self.version = version;
        self
    }

    /// Registers a pipeline: `run NAME` (or just `run` when it is the only one).
    pub fn pipeline<P: Pipeline>(mut self) -> Self {
        self.pipelines.push(Entry {
            name: P::NAME,
            about: P::ABOUT,
            args: |cmd| P::Flags::augment_args(cli::run_command(cmd)),
            run: run::from_matches::<P>,
            bench_args: |cmd| P::Flags::augment_args(cli::bench_command(cmd)),
            bench: bench::from_matches::<P>,
        });
        self
    }

    /// Adds the subcommands of `C` (a clap `Subcommand` enum), run by `run`.
    pub fn commands<C: Subcommand + 'static>(mut self, run: fn(C) -> Result<()>) -> Self {
        self.extra.push(Extra {
            augment: C::augment_subcommands,
            run: Box::new(move |m| C::has_subcommand(m.subcommand_name()?).then(|| run(C::from_arg_matches(m)?))),
        });
        self
    }

    /// The clap command of the whole app.
    pub fn command(&self) -> Command {
        let mut root = Command::new(self.name).version(self.version).subcommand_required(true);
        root = cli::Global::augment_args(root);
        // Derived args and subcommands bring their doc comments as `about`: the app's and the
        // pipelines' own descriptions are set after them.
        let run = self.per_pipeline("run", |p| p.args, "Run a pipeline over a file, stdin or a Kafka topic");
        root = cli::Tools::augment_subcommands(root.subcommand(run));
        for extra in &self.extra {
            root = (extra.augment)(root);
        }
        // Every app can bench its pipelines over a file, unless it brings a `bench` of its own.
        if root.find_subcommand("bench").is_none() {
            let about = "Measure a pipeline over a file: events/s and latency percentiles per run";
            root = root.subcommand(self.per_pipeline("bench", |p| p.bench_args, about));
        }
        root.about(self.about)
    }

    /// The command `name` with each pipeline's arguments (`args`): the arguments themselves when
    /// there is one pipeline, one subcommand per pipeline when there are several.
    fn per_pipeline(
        &self,
        name: &'static str,
        args: fn(&Entry) -> fn(Command) -> Command,
        about: &'static str,
    ) -> Command {
        let cmd = Command::new(name);
        match self.pipelines.as_slice() {
            [one] => args(one)(cmd).about(one.about),
            many => many
                .iter()
                .fold(cmd.subcommand_required(true), |cmd, p| {
                    cmd.subcommand(args(p)(Command::new(p.name)).about(p.about))
                })
                .about(about),
        }
    }

    /// Runs `name` (`run` or `bench`) of the pipeline `sub` names.
    fn dispatch_pipeline(&self, name: &str, sub: &ArgMatches, command: fn(&Entry) -> RunCommand) -> Result<()> {
        match self.pipelines.as_slice() {
            [one] => command(one)(sub),
            many => {
                let Some((pipeline, args)) = sub.subcommand() else { anyhow::bail!("{name}: no pipeline given") };
                let entry = many.iter().find(|p| p.name == pipeline);
                entry.map_or_else(|| anyhow::bail!("no pipeline {pipeline:?}"), |p| command(p)(args))
            }
        }
    }

    /// Parses the process's arguments and runs; exits 1 with a one-line error on failure (2 for
    /// bad arguments, from clap).
    pub fn main(self) -> ! {
        let command = self.command();
        let matches = command.clone().try_get_matches().unwrap_or_else(|e| exit_on_bad_args(self.name, &command, e));
        let global = cli::Global::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        global.init_logs();
        match self.dispatch(&matches) {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("{}: error: {e:#}", self.name);
                std::process::exit(1);
            }
        }
    }

    /// Runs what `matches` (of [`App::command`]) asks for.
    pub fn dispatch(&self, matches: &ArgMatches) -> Result<()> {
        let Some((name, sub)) = matches.subcommand() else { anyhow::bail!("no command given") };
        if name == "run" {
            if let (Some(run), Some((pipeline, _))) = (self.command().find_subcommand("run"), sub.subcommand()) {
                refuse_foreign_env(run, pipeline)?;
            }
            return self.dispatch_pipeline(name, sub, |p| p.run);
        }
        if cli::Tools::has_subcommand(name) {
            return cli::Tools::from_arg_matches(matches)?.run();
        }
        for extra in &self.extra {
            if let Some(result) = (extra.run)(matches) {
                return result;
            }
        }
        if name == "bench" {
            return self.dispatch_pipeline(name, sub, |p| p.bench);
        }
        anyhow::bail!("unknown command {name:?}")
    }
}
