//! `run`: from flags to a finished job, the same for every pipeline.

use super::cli::{ClusterArgs, RunArgs};
use super::{BuildCx, Pipeline};
use crate::engine::job::{JobConfig, JobError, JobReport};
use crate::engine::metrics::MetricsServer;
use crate::engine::recovery::CheckpointConfig;
use crate::engine::runtime::RunContext;
use crate::engine::serve::LiveServer;
use crate::engine::sink::{KafkaOutput, Output};
use crate::engine::source::{FileSkew, Input, KAFKA_MAX_LAG, KafkaInput, SourceConfig, StartFrom};
use crate::engine::time::Stamp;
use crate::operators::{LlmConfig, LlmService, ReplyCheck};
use anyhow::{Context, Result, bail};
use clap::{ArgMatches, FromArgMatches};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// A further input of a pipeline's event type, named by one of its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideInput {
    /// A JSONL file, or `-` for stdin.
    File(String),
    /// A Kafka topic (read with the run's brokers, group and start position).
    Topic(String),
}

/// Runs pipeline `P` with `config` over the job's inputs to the end of input (or a stop), with the
/// caller's LLM service if any; the service's call log is flushed before this returns.
pub fn run_job<P: Pipeline>(
    job: &JobConfig,
    config: &P::Config,
    shared: Arc<P::Shared>,
    ctx: &RunContext,
    llm: Option<Arc<LlmService>>,
) -> Result<JobReport, JobError> {
    let config = config.clone();
    let source = job.input.name();
    let service = llm.clone();
    let result = crate::engine::job::run::<P::Event, _, _>(job, ctx, move |graph, events| {
        let cx =
            BuildCx::<P> { graph, config: &config, shared: &shared, source: source.clone(), llm: service.as_ref() };
        P::build(cx, events)
    });
    if let Some(service) = &llm {
        service.flush();
    }
    result
}

/// `run` of pipeline `P` from parsed arguments.
pub(super) fn from_matches<P: Pipeline>(m: &ArgMatches) -> Result<()> {
    let args = RunArgs::from_arg_matches(m)?;
    let cluster = ClusterArgs::from_arg_matches(m)?;
    let flags = P::Flags::from_arg_matches(m)?;
    run::<P>(&args, &cluster, &flags)
}

/// Reads the config file (or the defaults), applies the pipeline's flags, then the environment
/// and flags of the LLM stage, and validates.
fn configure<P: Pipeline>(args: &RunArgs, flags: &P::Flags) -> Result<P::Config> {
    let mut config = read_config::<P>(args.config.as_deref())?;
    P::configure(&mut config, flags)?;
    match P::llm_settings(&mut config) {
        Some(llm) => {
            args.llm.apply_with_env(llm);
            if let Some(flag) = args.llm.setting_given().filter(|_| !llm.enabled) {
                bail!("{flag} sets up the LLM stage, which is off: add --llm (or enabled = true in [llm])");
            }
        }
        None if args.llm.llm || args.llm.llm_replay.is_some() => bail!("the {} pipeline has no LLM stage", P::NAME),
        None => {}
    }
    P::validate(&config).map_err(|e| anyhow::anyhow!("invalid {} config: {e}", P::NAME))?;
    check_actions::<P>(P::llm_config(&config).as_ref())?;
    Ok(config)
}

/// The pipeline's settings from a TOML file, or its defaults.
pub(super) fn read_config<P: Pipeline>(path: Option<&std::path::Path>) -> Result<P::Config> {
    let Some(path) = path else { return Ok(P::Config::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {path:?}"))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {path:?}: {}", e.message()))
}

/// The declared actions are usable names, each once, and the LLM stage answers only with them.
fn check_actions<P: Pipeline>(llm: Option<&LlmConfig>) -> Result<()> {
    if P::ACTIONS.is_empty() {
        bail!("the {} pipeline declares no actions", P::NAME);
    }
    for (i, a) in P::ACTIONS.iter().enumerate() {
        a.check().map_err(|e| anyhow::anyhow!("the {} pipeline: {e}", P::NAME))?;
        if P::ACTIONS[..i].contains(a) {
            bail!("the {} pipeline declares the action {a} twice", P::NAME);
        }
    }
    if let Some(extra) = llm.into_iter().flat_map(|c| &c.actions).find(|a| !P::ACTIONS.contains(a)) {
        bail!("the {} pipeline's LLM stage may answer {extra}, which it does not declare", P::NAME);
    }
    Ok(())
}

fn run<P: Pipeline>(args: &RunArgs, cluster: &ClusterArgs, flags: &P::Flags) -> Result<()> {
    let side = P::side_inputs(flags);
    check_flags(args, &side)?;
    let config = configure::<P>(args, flags)?;
    let ctx = RunContext::default();
    let stop = ctx.stop.clone();
    let checkpoints = args.checkpoint_dir.is_some();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::clone(&finished);
    ctrlc::set_handler(move || {
        if stop.requested() {
            std::process::exit(130);
        }
        if done.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("inflight: closing the live view");
        } else if checkpoints {
            eprintln!("inflight: stopping at the next checkpoint (Ctrl-C again to abort)");
        } else {
            eprintln!("inflight: stopping (closing windows, flushing outputs; Ctrl-C again to abort)");
        }
        stop.request();
    })
    .context("installing the Ctrl-C handler")?;
    let metrics = args.metrics_addr.map(|addr| MetricsServer::start(addr, &ctx)).transpose()?;
    if let Some(m) = &metrics {
        eprintln!("inflight: metrics at http://{}/metrics, health at http://{}/health", m.addr, m.addr);
    }
    let live = start_live(P::NAME, args, cluster, &ctx)?;
    let job = job_config::<P>(args, cluster, &side, P::settle(&config))?;
    let resumes = matches!(job.input, Input::Kafka(_)) && args.from == StartFrom::Committed;
    if resumes && args.checkpoint_dir.is_none() && cluster.process == 0 {
        eprintln!(
            "inflight: note: without --checkpoint-dir the pipeline's state (windows, indicators, \
             last actions) does not survive a restart: a run resumes at the committed offsets with empty \
             state, so its first decisions differ from an uninterrupted run's"
        );
    }
    let shared = Arc::new(P::prepare(&config, flags, cluster.process)?);
    let llm = match P::llm_config(&config) {
        Some(c) => {
            let c = c.for_process(cluster.process, cluster.processes, args.checkpoint_dir.as_deref());
            start_llm(&c, P::reply_check(), &ctx)?
        }
        None => None,
    };
    // The LLM stage's counters join the scrape and the live view once the stage exists.
    if let (Some(m), Some(service)) = (&metrics, &llm) {
        let stats = Arc::clone(&service.stats);
        m.collect(Box::new(move || stats.record_metrics()));
    }
    if let (Some(hub), Some(service)) = (ctx.live.get(), &llm) {
        let stats = Arc::clone(&service.stats);
        hub.add_section("llm", Box::new(move || stats.live_json()));
    }
    let progress = Progress::start(&ctx);
    let report = run_job::<P>(&job, &config, shared, &ctx, llm.clone());
    progress.stop();
    let report = report?;
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    if cluster.process == 0 {
        print_summary(P::NAME, &report);
        for line in llm.iter().flat_map(|s| s.summary()) {
            eprintln!("  {line}");
        }
        if let Some(hint) = no_decisions(&report).then(|| P::no_decisions_hint(&config)).flatten() {
            eprintln!("inflight: note: {hint}");
        }
    } else {
        eprintln!("inflight: process {} finished in {:.2} s", cluster.process, report.elapsed.as_secs_f64());
    }
    if let (Some(server), Some(hub)) = (&live, ctx.live.get()) {
        hub.finish();
        // A finished run's view stays up to be looked at (unless Ctrl-C already stopped the run).
        if !ctx.stop.requested() {
            eprintln!("inflight: the live view stays up at http://{}/ until Ctrl-C", server.addr);
            while !ctx.stop.requested() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

fn start_llm(
    config: &LlmConfig,
    check: Option<Arc<dyn ReplyCheck>>,
    ctx: &RunContext,
) -> Result<Option<Arc<LlmService>>> {
    if !config.enabled {
        return Ok(None);
    }
    let service = LlmService::start_checked(config, ctx.pressure.clone(), check);
    Ok(Some(service.map_err(|e| anyhow::anyhow!("llm: {e}"))?))
}

/// Combinations of flags that cannot work are refused rather than half-honoured.
fn check_flags(args: &RunArgs, side: &[SideInput]) -> Result<()> {
    if args.serve.replay_speed.is_some() && (args.input_topic.is_some() || args.input.as_deref() == Some("-")) {
        bail!("--replay-speed paces a file input; a Kafka topic or stdin comes at its own pace");
    }
    if args.serve.serve.is_none() && args.serve.serve_token.is_some() {
        bail!("--serve-token is for --serve");
    }
    let stdin = |s: &SideInput| *s == SideInput::File("-".into());
    if side.iter().any(stdin) && args.input.as_deref() == Some("-") {
        bail!("only one input can be stdin");
    }
    if args.checkpoint_dir.is_some() && side.iter().any(stdin) {
        bail!("--checkpoint-dir needs side inputs from files or Kafka topics, not stdin");
    }
    Ok(())
}

/// The job around a pipeline: inputs, outputs, flow control, cluster.
fn job_config<P: Pipeline>(
    args: &RunArgs,
    cluster: &ClusterArgs,
    side: &[SideInput],
    settle: u64,
) -> Result<JobConfig> {
    let group = args.group.clone().unwrap_or_else(|| format!("inflight-{}", P::NAME));
    let kafka_input = |topic: &String, what: &str| -> Result<Input> {
        Ok(Input::Kafka(KafkaInput {
            kafka: args.kafka.config(what)?,
            topic: topic.clone(),
            group: group.clone(),
            from: args.from,
            bounded: args.bounded,
            idle_timeout: Duration::from_millis(args.idle_timeout),
            create: args.create_topics,
        }))
    };
    let kafka_output = |topic: &String| -> Result<Output> {
        Ok(Output::Kafka(KafkaOutput {
            kafka: args.kafka.config("a Kafka output topic")?,
            topic: topic.clone(),
            partitions: args.kafka.partitions,
        }))
    };
    if let (Some(_), Some(_)) = (&args.input_topic, &args.input) {
        bail!(
            "both --input and --input-topic are given (flags or INFLIGHT_INPUT / INFLIGHT_INPUT_TOPIC): a run reads one input"
        );
    }
    let input = match (&args.input_topic, &args.input, P::sample()) {
        (Some(topic), _, _) => kafka_input(topic, "--input-topic")?,
        (None, Some(path), _) => Input::from_arg(path),
        (None, None, Some(sample)) => Input::Bundled(sample),
        (None, None, None) => bail!("the {} pipeline needs --input FILE (or -) or --input-topic", P::NAME),
    };
    let side_inputs = side
        .iter()
        .map(|s| match s {
            SideInput::File(path) => Ok(Input::from_arg(path)),
            SideInput::Topic(topic) => kafka_input(topic, "a side input topic"),
        })
        .collect::<Result<Vec<_>>>()?;
    let output = match &args.output_topic {
        Some(topic) => kafka_output(topic)?,
        None => Output::from_arg(&args.output),
    };
    let dead_letter = match (&args.dead_letter_topic, &args.dead_letter) {
        (Some(topic), _) => kafka_output(topic)?,
        (None, Some(path)) => Output::from_arg(path),
        (None, None) => Output::Stderr,
    };
    refuse_overwriting_inputs(
        std::iter::once(&input).chain(&side_inputs),
        [("--output", &output), ("--dead-letter", &dead_letter)],
    )?;
    let live = matches!(input, Input::Kafka(_)) || side_inputs.iter().any(|i| matches!(i, Input::Kafka(_)));
    let max_lag = args.max_lag.unwrap_or(if live { KAFKA_MAX_LAG } else { P::file_max_lag() });
    Ok(JobConfig {
        input,
        side_inputs,
        source: SourceConfig {
            lateness: args.lateness,
            chunk_size: args.chunk_size,
            max_lag,
            // A --max-lag given, 0 included, is the whole flow control.
            file_skew: if args.max_lag.is_some() { FileSkew::Free } else { FileSkew::Bounded },
            settle,
            replay_speed: args.serve.replay_speed,
            // A replay reads one line at a time (a batch is rounded up to a whole line), so each
            // record waits for its own event time.
            batch_bytes: if args.serve.replay_speed.is_some() { 1 } else { SourceConfig::default().batch_bytes },
        },
        output,
        dead_letter,
        cluster: cluster.cluster(),
        checkpoint: checkpoint_config(P::NAME, args)?,
    })
}

/// An output file that is an input file would be truncated while it is read (and a mapped input
/// that shrinks ends the process with SIGBUS); two outputs in one file would overwrite each other.
fn refuse_overwriting_inputs<'a>(inputs: impl Iterator<Item = &'a Input>, outputs: [(&str, &Output); 2]) -> Result<()> {
    // A file not yet created resolves through its directory.
    let resolved = |p: &std::path::Path| {
        p.canonicalize().ok().or_else(|| {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            Some(dir.canonicalize().ok()?.join(p.file_name()?))
        })
    };
    let same = |a: &std::path::Path, b: &std::path::Path| match (resolved(a), resolved(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    };
    let files: Vec<&std::path::Path> =
        inputs.filter_map(|i| if let Input::File(p) = i { Some(p.as_path()) } else { None }).collect();
    // Only regular files (or files still to be created): `/dev/null` twice is fine.
    let regular = |p: &std::path::Path| p.metadata().map_or(true, |m| m.is_file());
    let outputs = outputs.map(|(flag, o)| match o {
        Output::File(p) if regular(p) => (flag, Some(p)),
        _ => (flag, None),
    });
    for (flag, output) in outputs {
        let Some(out) = output else { continue };
        if let Some(input) = files.iter().find(|i| same(i, out)) {
            bail!("{flag} {} is an input file: writing it would destroy what is being read", input.display());
        }
    }
    if let [(_, Some(a)), (_, Some(b))] = outputs
        && same(a, b)
    {
        bail!("--output and --dead-letter are the same file ({}): give them different files", a.display());
    }
    Ok(())
}

/// `--checkpoint-*`: checkpoints are opt-in.
fn checkpoint_config(pipeline: &str, args: &RunArgs) -> Result<Option<CheckpointConfig>> {
    let Some(dir) = &args.checkpoint_dir else { return Ok(None) };
    if args.checkpoint_interval == 0 {
        bail!("--checkpoint-interval must be longer than 0");
    }
    if args.input.as_deref() == Some("-") {
        bail!("--checkpoint-dir needs an input that can be read again (a file or --input-topic), not stdin");
    }
    Ok(Some(CheckpointConfig {
        pipeline: pipeline.to_owned(),
        dir: dir.clone(),
        interval: args.checkpoint_interval,
        keep: usize::try_from(args.checkpoint_keep).unwrap_or(usize::MAX),
    }))
}

/// `--serve`: the hub on every process (the dataflow's taps are the same everywhere), the server
/// on process 0.
fn start_live(name: &str, args: &RunArgs, cluster: &ClusterArgs, ctx: &RunContext) -> Result<Option<LiveServer>> {
    use crate::engine::serve::{Hub, HubConfig, ServeConfig};
    let a = &args.serve;
    let Some(addr) = a.serve else { return Ok(None) };
    let config = ServeConfig {
        addr,
        token: a.serve_token.clone(),
        hub: HubConfig {
            history: a.serve_history as usize,
            bars_per_key: a.serve_bars as usize,
            client_buffer: a.serve_client_buffer as usize,
            slow_after: Duration::from_millis(a.serve_slow_after.max(1)),
        },
    };
    config.validate()?;
    let hub = Hub::new(name, config.hub.clone(), ctx);
    if let Some(speed) = a.replay_speed {
        hub.set_replay(speed);
    }
    let _ = ctx.live.set(hub.clone());
    if cluster.process != 0 {
        return Ok(None);
    }
    let server = LiveServer::start(&config, hub)?;
    eprintln!("inflight: live view at http://{}/", server.addr);
    Ok(Some(server))
}

/// Whether a run read good events and decided nothing.
pub(super) fn no_decisions(r: &JobReport) -> bool {
    r.outputs == 0 && r.source.events > 0 && r.stopped_at.is_none() && r.restored_from.is_none()
}

/// The run's totals on stderr.
pub fn print_summary(pipeline: &str, r: &JobReport) {
    let s = &r.source;
    if let Some(t) = r.restored_from {
        eprintln!("inflight: restored from the checkpoint at {}", Stamp(t));
    }
    if r.skipped > 0 {
        eprintln!("inflight: {} records were already in the output topics and not sent again", r.skipped);
    }
    if let (Some(t), Some(first)) = (r.restored_from, r.first_output) {
        eprintln!(
            "inflight: first decision {:.1} ms after the start (restore from {} included)",
            first.as_secs_f64() * 1e3,
            Stamp(t)
        );
    }
    if let Some(t) = r.stopped_at {
        eprintln!("inflight: {pipeline} stopped at the checkpoint at {} (a restart continues from there)", Stamp(t));
        eprintln!("  decisions out  {:>12}", r.outputs);
        eprintln!("  elapsed        {:>12.3} s", r.elapsed.as_secs_f64());
        return;
    }
    eprintln!("inflight: {pipeline} finished");
    let since = if r.restored_from.is_some() { "  (since the restore)" } else { "" };
    eprintln!("  events in      {:>12}{since}", s.records());
    eprintln!("  decisions out  {:>12}{since}", r.outputs);
    if r.restored_from.is_some() {
        let all = r.outputs_before + r.outputs;
        eprintln!("  in the output  {all:>12}  ({} written before the restore)", r.outputs_before);
    }
    eprintln!("  dead-lettered  {:>12}  (malformed or invalid {}, late {})", s.bad + s.late, s.bad, s.late);
    eprintln!("  late           {:>12}", s.late);
    eprintln!("  elapsed        {:>12.3} s", r.elapsed.as_secs_f64());
    eprintln!("  throughput     {:>12.0} events/s", r.events_per_sec());
    if !r.latency.is_empty() {
        eprintln!("  latency        {}  (read → decision)", percentiles(&r.latency));
    }
}

/// A progress line on stderr for runs longer than a second, only when stderr is a terminal.
struct Progress {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(ctx: &RunContext) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { stop: None, thread: None };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let counter = ctx.progress.clone();
        let thread = std::thread::spawn(move || {
            if rx.recv_timeout(Duration::from_secs(1)).is_ok() {
                return;
            }
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {human_pos} events read ({per_sec}) {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            while rx.recv_timeout(Duration::from_millis(100)).is_err() {
                bar.set_position(counter.get());
            }
            bar.finish_and_clear();
        });
        Progress { stop: Some(tx), thread: Some(thread) }
    }

    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// p50/p95/p99/max of a histogram in microseconds, printed in ms.
pub fn percentiles(h: &hdrhistogram::Histogram<u64>) -> String {
    if h.is_empty() {
        return "none (no decisions)".into();
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
        ms(0.5),
        ms(0.95),
        ms(0.99),
        h.max() as f64 / 1000.0,
        h.len()
    )
}
