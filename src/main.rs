//! The `inflight` command line: run a pipeline, generate synthetic data, benchmark.

mod bench;

// Records, cases and decisions are small, short-lived allocations made on every worker at once;
// mimalloc's per-thread heaps serve them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use inflight::engine::job::{JobConfig, JobReport};
use inflight::engine::kafka::{KafkaConfig, consume_to, produce_lines};
use inflight::engine::metrics::MetricsServer;
use inflight::engine::recovery::CheckpointConfig;
use inflight::engine::runtime::{Cluster, RunContext, Stop};
use inflight::engine::sink::{KafkaOutput, Output};
use inflight::engine::source::{Input, KAFKA_MAX_LAG, KafkaInput, SourceConfig, StartFrom};
use inflight::engine::time::{parse_duration, parse_rfc3339};
use inflight::operators::{Emit, LlmConfig, LlmService, ReplyCheck};
use inflight::pipelines::code::CodeConfig;
use inflight::pipelines::code::synthetic::{self as code_gen, CodeGenConfig};
use inflight::pipelines::flight::synthetic::{self as flight_gen, FlightGenConfig};
use inflight::pipelines::flight::{FlightConfig, Reference};
use inflight::pipelines::trading::TradingConfig;
use inflight::pipelines::trading::synthetic::{GenConfig, generate};
use std::io::IsTerminal;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "inflight", version, about = "Turn live event streams into decisions in milliseconds")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr (the level comes from RUST_LOG, default warn).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline over a file or stdin until the input ends.
    #[command(disable_help_flag = true)]
    Run {
        /// The pipeline to run.
        pipeline: Pipeline,
        #[command(flatten)]
        args: Box<RunArgs>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Print help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
    },
    /// Generate synthetic input data.
    Gen {
        /// What to generate.
        kind: GenKind,
        #[command(flatten)]
        args: GenArgs,
        /// Output file, or `-` for stdout.
        #[arg(short, long, default_value = "-")]
        output: String,
    },
    /// Send JSON lines to a Kafka topic (the specification's producer).
    Produce {
        /// Topic to write (created if missing).
        #[arg(long)]
        topic: String,
        /// Input file, or `-` for stdin.
        #[arg(short, long, default_value = "-")]
        input: String,
        /// Records per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Key each record by this top-level JSON field (e.g. asset).
        #[arg(long)]
        key_field: Option<String>,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Print the records of a Kafka topic, one per line.
    Consume {
        /// Topic to read.
        #[arg(long)]
        topic: String,
        /// Keep reading after the end offsets found at start (until Ctrl-C).
        #[arg(long)]
        follow: bool,
        /// Print partition, offset, key and headers with each value.
        #[arg(long)]
        meta: bool,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Measure a pipeline's throughput and latency on synthetic data (release builds only mean something).
    #[command(disable_help_flag = true)]
    Bench {
        /// What to measure: the trading job from a file, or through Kafka topics.
        target: BenchTarget,
        /// Events to generate (ignored with --input).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Assets to spread them over.
        #[arg(long, default_value_t = 1_000)]
        assets: usize,
        /// flight: bookings in the reference data.
        #[arg(long, default_value_t = 100_000)]
        bookings: usize,
        /// Measure this file instead of generated data.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Number of measured runs (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// trading, flight, code: take checkpoints this often (event time) into a fresh temporary
        /// directory per run, and report their count, duration and size.
        #[arg(long, value_parser = parse_duration)]
        checkpoint_interval: Option<u64>,
        /// live: SSE clients per measured run, e.g. 1000 or 1000,5000.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        clients: Vec<usize>,
        /// live: replay the generated ticks at this pace (10 ticks per asset per second of event
        /// time) and report delivery delays only.
        #[arg(long, value_parser = parse_speed)]
        replay_speed: Option<f64>,
        /// kafka: produce at this many events/s while the pipeline runs and report latencies
        /// (default: produce first, then measure throughput).
        #[arg(long)]
        rate: Option<f64>,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Print help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pipeline {
    /// Market ticks → bars → RSI/MACD → BUY/SELL/HOLD.
    Trading,
    /// Flight status + schedule + bookings → REBOOK/PROTECT/ESCALATE/NONE per affected booking.
    Flight,
    /// Code + error context → a validated fix (FIX) or a suggestion (SUGGEST) with its diff.
    Code,
}

impl Pipeline {
    fn name(self) -> &'static str {
        match self {
            Pipeline::Trading => "trading",
            Pipeline::Flight => "flight",
            Pipeline::Code => "code",
        }
    }

    /// The `--max-lag` default for file inputs: only the flight lookups need one (see
    /// `flight::FILE_MAX_LAG`); the trading and code stages hold nothing waiting on another worker,
    /// so pacing their file reads would only cost time (2.5-3x at -w 2 on a one-hour file).
    fn file_max_lag(self) -> u64 {
        match self {
            Pipeline::Flight => inflight::pipelines::flight::FILE_MAX_LAG,
            Pipeline::Trading | Pipeline::Code => 0,
        }
    }

    fn sample(self) -> &'static str {
        match self {
            Pipeline::Trading => "data/market-sample.jsonl",
            Pipeline::Flight => "data/flight-sample.jsonl",
            Pipeline::Code => "data/code-sample.jsonl",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchTarget {
    /// The trading job, file → decisions.
    Trading,
    /// The flight job, file → decisions (rules only), against --bookings bookings.
    Flight,
    /// The code-fix job, file → decisions (rules only).
    Code,
    /// The trading job, Kafka topic → decisions topic (needs --brokers or KAFKA_BROKERS).
    Kafka,
    /// The trading job with the live view: events/s with no SSE client and with --clients, and
    /// the clients' delivery delay (with --replay-speed: at a steady pace).
    Live,
}

#[derive(Clone, Copy, ValueEnum)]
enum GenKind {
    /// Market ticks for the trading pipeline.
    Market,
    /// Flight status events (-o), with the schedule and bookings they refer to (--schedule, --bookings).
    Flight,
    /// Code events with one known syntax error each.
    Code,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmitArg {
    /// Only when an asset's action changes.
    Changes,
    /// One decision per bar.
    All,
}

#[derive(Args)]
struct RunArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics and a JSON health report at /health while
    /// the run goes on (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR", env = "INFLIGHT_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Input JSONL file, or `-` for stdin [default: the pipeline's sample in data/].
    #[arg(short, long, env = "INFLIGHT_INPUT")]
    input: Option<String>,
    /// Where decisions go: a file, or `-` for stdout.
    #[arg(short, long, default_value = "-", env = "INFLIGHT_OUTPUT")]
    output: String,
    /// Where malformed, invalid and late records go (default: stderr).
    #[arg(long, env = "INFLIGHT_DEAD_LETTER")]
    dead_letter: Option<String>,
    /// Pipeline settings (TOML); flags and INFLIGHT_* variables override it.
    #[arg(long, env = "INFLIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// trading: bar width, e.g. 1s or 500ms [default: 1s].
    #[arg(long, env = "INFLIGHT_WINDOW", value_parser = parse_duration)]
    window: Option<u64>,
    /// Allowed out-of-orderness; older records are late [default: 0s].
    #[arg(long, env = "INFLIGHT_LATENESS", value_parser = parse_duration, default_value = "0")]
    lateness: u64,
    /// trading: a decision only when the action changes, or for every bar; flight: only bookings
    /// that need an action, or also NONE [default: changes].
    #[arg(long, env = "INFLIGHT_EMIT")]
    emit: Option<EmitArg>,
    /// File chunk size in bytes: the unit of parallel reading (does not change results).
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Read events from this Kafka topic instead of --input.
    #[arg(long, env = "INFLIGHT_INPUT_TOPIC")]
    input_topic: Option<String>,
    /// Write decisions to this Kafka topic instead of --output.
    #[arg(long, env = "INFLIGHT_OUTPUT_TOPIC")]
    output_topic: Option<String>,
    /// Write dead letters to this Kafka topic instead of --dead-letter.
    #[arg(long, env = "INFLIGHT_DEAD_LETTER_TOPIC")]
    dead_letter_topic: Option<String>,
    /// Consumer group whose committed offsets --from committed uses and the run commits
    /// [default: inflight-PIPELINE].
    #[arg(long, env = "INFLIGHT_GROUP")]
    group: Option<String>,
    /// Where to start reading the input topic: earliest, latest, committed or an RFC 3339 time.
    #[arg(long, default_value = "committed", value_parser = parse_start)]
    from: StartFrom,
    /// Read up to the end offsets found at start, then finish like a file run.
    #[arg(long)]
    bounded: bool,
    /// A partition silent this long stops holding windows back.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    idle_timeout: u64,
    /// Pause reading while outputs lag this far (event time) behind the input [default: 60s for
    /// Kafka inputs; for files 5s in flight, off in trading and code]; 0 turns it off.
    #[arg(long, value_parser = parse_duration)]
    max_lag: Option<u64>,
    /// Take checkpoints in this directory (local or shared by all processes), and restore from
    /// the newest whole one found there at start.
    #[arg(long, value_name = "DIR", env = "INFLIGHT_CHECKPOINT_DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Event time between checkpoints.
    #[arg(long, value_parser = parse_duration, default_value = "10s", env = "INFLIGHT_CHECKPOINT_INTERVAL")]
    checkpoint_interval: u64,
    /// Complete checkpoints to keep.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_keep: u64,
    #[command(flatten)]
    flight: FlightArgs,
    #[command(flatten)]
    llm: LlmArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

/// The live view (`--serve`) and replays.
#[derive(Args)]
struct ServeArgs {
    /// Serve the live view (web page, decision stream, bars, statistics) at http://ADDR/ while
    /// the run goes on, and after it until Ctrl-C (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR", env = "INFLIGHT_SERVE")]
    serve: Option<std::net::SocketAddr>,
    /// A token every request to the live view must carry (`Authorization: Bearer TOKEN`, or
    /// `?token=TOKEN` when opening the page); required when ADDR is not a loopback address.
    #[arg(long, value_name = "TOKEN", env = "INFLIGHT_SERVE_TOKEN", hide_env_values = true)]
    serve_token: Option<String>,
    /// Decisions the live view keeps for clients that resume (`Last-Event-ID`).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    serve_history: u64,
    /// Decisions a client may fall behind before it loses the oldest (it is told how many).
    #[arg(long, default_value_t = 4_096, value_parser = clap::value_parser!(u64).range(1..))]
    serve_client_buffer: u64,
    /// A client behind for this long without reading is disconnected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    serve_slow_after: u64,
    /// Bars kept per key for the charts.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    serve_bars: u64,
    /// Replay a file input at this multiple of its event-time pace (e.g. 1x, 10x, 0.5x), to
    /// watch a backtest.
    #[arg(long, value_name = "SPEED", value_parser = parse_speed)]
    replay_speed: Option<f64>,
}

/// `10x`, `10` or `0.5x`: a positive, finite multiple.
fn parse_speed(s: &str) -> std::result::Result<f64, String> {
    let n = s.strip_suffix(['x', 'X']).unwrap_or(s);
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a speed (a positive multiple such as 10x)")),
    }
}

/// The flight pipeline's reference data.
#[derive(Args)]
struct FlightArgs {
    /// flight: the schedule at start, JSONL [default: data/flight-schedule.jsonl].
    #[arg(long, env = "INFLIGHT_SCHEDULE")]
    schedule: Option<PathBuf>,
    /// flight: the bookings at start, JSONL [default: data/flight-bookings.jsonl].
    #[arg(long, env = "INFLIGHT_BOOKINGS")]
    bookings: Option<PathBuf>,
    /// flight: a second input of live schedule/booking changes (upserts and deletes), a file or `-`.
    #[arg(long)]
    updates: Option<String>,
    /// flight: read live changes from this Kafka topic.
    #[arg(long)]
    updates_topic: Option<String>,
    /// flight: minimum connection time where the config names none for the airport [default: 45m].
    #[arg(long, value_parser = parse_duration)]
    mct: Option<u64>,
}

/// The LLM stage's flags (the config file's `[llm]` table holds the rest).
#[derive(Args)]
struct LlmArgs {
    /// Send decisions the rules are unsure about to an OpenAI-compatible LLM endpoint.
    #[arg(long)]
    llm: bool,
    /// Endpoint base URL [default: https://api.openai.com/v1; env OPENAI_BASE_URL].
    #[arg(long)]
    llm_base_url: Option<String>,
    /// Model name.
    #[arg(long)]
    llm_model: Option<String>,
    /// Decisions below this rule confidence go to the LLM (0 = never, 1 = always) [default: 0.7].
    #[arg(long)]
    llm_min_confidence: Option<f64>,
    /// Most requests in flight per worker [default: 32].
    #[arg(long)]
    llm_concurrency: Option<usize>,
    /// Timeout of one request, e.g. 20s.
    #[arg(long, value_parser = parse_duration)]
    llm_timeout: Option<u64>,
    /// Fall back to the rules when a case is still unanswered this long after its input was read.
    #[arg(long, value_parser = parse_duration)]
    llm_deadline: Option<u64>,
    /// Ask for streamed (SSE) replies.
    #[arg(long)]
    llm_stream: bool,
    /// Append every LLM call and its outcome to this JSONL file.
    #[arg(long)]
    llm_log: Option<PathBuf>,
    /// Answer LLM calls from this call log instead of the network (implies --llm).
    #[arg(long)]
    llm_replay: Option<PathBuf>,
}

impl LlmArgs {
    /// The environment (`OPENAI_*`) over the config file, then the flags over both.
    fn apply_with_env(&self, config: &mut LlmConfig) {
        *config = std::mem::take(config).with_env();
        self.apply(config);
    }

    fn apply(&self, config: &mut LlmConfig) {
        let c = config;
        c.enabled |= self.llm || self.llm_replay.is_some();
        if let Some(v) = &self.llm_base_url {
            c.base_url = v.clone();
        }
        if let Some(v) = &self.llm_model {
            c.model = v.clone();
        }
        if let Some(v) = self.llm_min_confidence {
            c.min_confidence = v;
        }
        if let Some(v) = self.llm_concurrency {
            c.concurrency = v;
        }
        if let Some(v) = self.llm_timeout {
            c.timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.llm_deadline {
            c.deadline = Duration::from_millis(v);
        }
        c.stream |= self.llm_stream;
        c.log = self.llm_log.clone();
        c.replay = self.llm_replay.clone();
    }
}

#[derive(Args, Clone)]
struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Partitions for topics inflight creates.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// Any librdkafka property, e.g. -X security.protocol=SASL_SSL (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = KafkaConfig::parse_property)]
    property: Vec<(String, String)>,
}

impl KafkaArgs {
    fn config(&self, what: &str) -> Result<KafkaConfig> {
        let Some(brokers) = self.brokers.clone() else {
            bail!("{what} needs --brokers HOST:PORT (or KAFKA_BROKERS)");
        };
        Ok(KafkaConfig { brokers, properties: self.property.clone() })
    }
}

fn parse_start(text: &str) -> Result<StartFrom, String> {
    match text {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        "committed" => Ok(StartFrom::Committed),
        other => parse_rfc3339(other)
            .map(StartFrom::Timestamp)
            .map_err(|_| format!("{other:?} is not earliest, latest, committed or an RFC 3339 time")),
    }
}

#[derive(Args)]
struct ClusterArgs {
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1, env = "INFLIGHT_WORKERS")]
    workers: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// Index of this process (0-based).
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// File with one host:port line per process.
    #[arg(short = 'h', long = "hostfile")]
    hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    fn cluster(&self) -> Cluster {
        Cluster {
            workers: self.workers,
            processes: self.processes,
            process: self.process,
            hostfile: self.hostfile.clone(),
        }
    }
}

#[derive(Args)]
struct GenArgs {
    /// Number of events.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Number of assets.
    #[arg(long, default_value_t = 10)]
    assets: usize,
    /// Random seed (same seed, same file).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Events per second of event time.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Fraction of events moved back in time (out of order).
    #[arg(long, default_value_t = 0.0)]
    out_of_order: f64,
    /// Largest backwards move of an out-of-order event.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    max_delay: u64,
    /// Fraction of malformed or invalid lines.
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    /// flight: number of bookings.
    #[arg(long, default_value_t = 1_000)]
    bookings: usize,
    /// flight: fraction of lines that are live schedule changes.
    #[arg(long, default_value_t = 0.0)]
    changes: f64,
    /// flight: where to write the schedule (JSONL).
    #[arg(long)]
    schedule_out: Option<PathBuf>,
    /// flight: where to write the bookings (JSONL).
    #[arg(long)]
    bookings_out: Option<PathBuf>,
    /// code: fraction of JavaScript events (the rest are Python).
    #[arg(long, default_value_t = 0.2)]
    javascript: f64,
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if let Err(e) = dispatch(cli) {
        eprintln!("inflight: error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { pipeline, args, cluster, .. } => run_pipeline(pipeline, &args, &cluster),
        Command::Gen { kind: GenKind::Market, args, output } => gen_market(&args, &output),
        Command::Gen { kind: GenKind::Flight, args, output } => gen_flight(&args, &output),
        Command::Gen { kind: GenKind::Code, args, output } => gen_code(&args, &output),
        Command::Bench {
            target: BenchTarget::Flight,
            events,
            input,
            runs,
            cluster,
            bookings,
            checkpoint_interval,
            ..
        } => bench::flight_file(events, bookings, input, runs, cluster.cluster(), checkpoint_interval),
        Command::Bench { target: BenchTarget::Code, events, input, runs, cluster, checkpoint_interval, .. } => {
            bench::code_file(events, input, runs, cluster.cluster(), checkpoint_interval)
        }
        Command::Bench {
            target: BenchTarget::Trading,
            events,
            assets,
            input,
            runs,
            cluster,
            checkpoint_interval,
            ..
        } => bench::trading_file(events, assets, input, runs, cluster.cluster(), checkpoint_interval),
        Command::Bench { target: BenchTarget::Live, events, assets, runs, clients, replay_speed, cluster, .. } => {
            let cluster = cluster.cluster();
            bench::live(&bench::LiveBench { events, assets, clients, runs, replay_speed, cluster })
        }
        Command::Bench { target: BenchTarget::Kafka, events, assets, rate, kafka, cluster, .. } => {
            if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
                bail!("--rate must be a positive number of events per second");
            }
            bench::trading_kafka(&bench::KafkaBench {
                kafka: kafka.config("bench kafka")?,
                events,
                assets,
                rate,
                partitions: kafka.partitions,
                cluster: cluster.cluster(),
            })
        }
        Command::Produce { topic, input, rate, key_field, kafka } => {
            if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
                bail!("--rate must be a positive number of records per second");
            }
            let config = kafka.config("produce")?;
            let reader: Box<dyn std::io::BufRead> = if input == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(&input).with_context(|| format!("cannot read input {input:?}"))?;
                Box::new(std::io::BufReader::new(f))
            };
            let r = produce_lines(&config, &topic, kafka.partitions, reader, key_field.as_deref(), rate)?;
            eprintln!(
                "inflight: produced {} records to {topic} in {:.3} s ({:.0}/s)",
                r.records,
                r.seconds,
                r.records as f64 / r.seconds.max(1e-9)
            );
            Ok(())
        }
        Command::Consume { topic, follow, meta, kafka } => {
            let config = kafka.config("consume")?;
            let stop = Stop::default();
            let handler = stop.clone();
            ctrlc::set_handler(move || handler.request()).context("installing the Ctrl-C handler")?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            consume_to(&config, &topic, follow, meta, &stop, &mut out)?;
            Ok(())
        }
    }
}

fn fraction(name: &str, v: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&v) {
        bail!("--{name} {v} must be a fraction between 0 and 1");
    }
    Ok(v)
}

fn gen_market(args: &GenArgs, output: &str) -> Result<()> {
    let config = GenConfig {
        events: args.events,
        assets: args.assets,
        seed: args.seed,
        rate: args.rate,
        out_of_order: fraction("out-of-order", args.out_of_order)?,
        max_delay_ms: args.max_delay,
        malformed: fraction("malformed", args.malformed)?,
        ..GenConfig::default()
    };
    if args.assets == 0 || args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--assets must be at least 1 and --rate positive");
    }
    if output == "-" {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        generate(&config, &mut out).context("writing to stdout")?;
    } else {
        let file = std::fs::File::create(output).with_context(|| format!("cannot create {output}"))?;
        generate(&config, &mut std::io::BufWriter::new(file)).with_context(|| format!("writing {output}"))?;
    }
    Ok(())
}

/// Opens `-` (stdout) or a file for writing.
fn writer(output: &str) -> Result<Box<dyn std::io::Write>> {
    Ok(if output == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        let file = std::fs::File::create(output).with_context(|| format!("cannot create {output}"))?;
        Box::new(std::io::BufWriter::new(file))
    })
}

fn gen_flight(args: &GenArgs, output: &str) -> Result<()> {
    let (Some(schedule), Some(bookings)) = (&args.schedule_out, &args.bookings_out) else {
        bail!("gen flight needs --schedule-out FILE and --bookings-out FILE for the reference data");
    };
    if args.bookings == 0 || args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--bookings must be at least 1 and --rate positive");
    }
    let config = FlightGenConfig {
        events: args.events,
        seed: args.seed,
        rate: args.rate,
        malformed: fraction("malformed", args.malformed)?,
        changes: fraction("changes", args.changes)?,
        ..FlightGenConfig::sized_for(args.bookings)
    };
    let reference = flight_gen::reference(&config);
    let write = |path: &PathBuf, f: &dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()>| -> Result<()> {
        let mut out = writer(&path.display().to_string())?;
        f(&mut out).and_then(|_| out.flush()).with_context(|| format!("writing {}", path.display()))
    };
    write(schedule, &|out| flight_gen::write_schedule(&reference, &mut &mut *out))?;
    write(bookings, &|out| flight_gen::write_bookings(&reference, &mut &mut *out))?;
    let mut out = writer(output)?;
    flight_gen::events(&config, &reference, &mut out).and_then(|_| out.flush()).context("writing the events")
}

fn gen_code(args: &GenArgs, output: &str) -> Result<()> {
    let config = CodeGenConfig {
        events: args.events,
        seed: args.seed,
        javascript: fraction("javascript", args.javascript)?,
        malformed: fraction("malformed", args.malformed)?,
        ..CodeGenConfig::default()
    };
    let mut out = writer(output)?;
    code_gen::generate(&config, &mut out).and_then(|_| out.flush()).context("writing the events")
}

/// Reads a pipeline's TOML config, or its defaults.
fn load_config<T: serde::de::DeserializeOwned + Default>(path: Option<&PathBuf>) -> Result<T> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {path:?}"))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {path:?}: {}", e.message()))
        }
        None => Ok(T::default()),
    }
}

fn emit_arg(e: EmitArg) -> Emit {
    match e {
        EmitArg::Changes => Emit::Changes,
        EmitArg::All => Emit::All,
    }
}

fn trading_config(args: &RunArgs) -> Result<TradingConfig> {
    let mut config: TradingConfig = load_config(args.config.as_ref())?;
    if let Some(w) = args.window {
        config.window_ms = w;
    }
    if let Some(e) = args.emit {
        config.emit = emit_arg(e);
    }
    args.llm.apply_with_env(&mut config.llm);
    config.validate().map_err(|e| anyhow::anyhow!("invalid trading config: {e}"))?;
    Ok(config)
}

fn flight_config(args: &RunArgs) -> Result<FlightConfig> {
    let mut config: FlightConfig = load_config(args.config.as_ref())?;
    if let Some(e) = args.emit {
        config.emit = emit_arg(e);
    }
    if let Some(mct) = args.flight.mct {
        config.mct.default_minutes = u32::try_from(mct / 60_000).unwrap_or(u32::MAX);
        if mct % 60_000 != 0 {
            bail!("--mct must be whole minutes, e.g. 45m");
        }
    }
    args.llm.apply_with_env(&mut config.llm);
    config.validate().map_err(|e| anyhow::anyhow!("invalid flight config: {e}"))?;
    Ok(config)
}

fn code_config(args: &RunArgs) -> Result<CodeConfig> {
    let mut config: CodeConfig = load_config(args.config.as_ref())?;
    args.llm.apply_with_env(&mut config.llm);
    config.validate().map_err(|e| anyhow::anyhow!("invalid code config: {e}"))?;
    Ok(config)
}

/// Flags that only one pipeline understands are refused elsewhere, rather than ignored.
fn check_flags(pipeline: Pipeline, args: &RunArgs) -> Result<()> {
    let f = &args.flight;
    let flight_only = f.schedule.is_some() || f.bookings.is_some() || f.updates.is_some() || f.updates_topic.is_some();
    if pipeline != Pipeline::Flight && (flight_only || f.mct.is_some()) {
        bail!("--schedule, --bookings, --updates, --updates-topic and --mct are for the flight pipeline");
    }
    if pipeline != Pipeline::Trading && args.window.is_some() {
        bail!("--window is for the trading pipeline");
    }
    if pipeline == Pipeline::Code && args.emit.is_some() {
        bail!("--emit is for the trading and flight pipelines (code emits one decision per event)");
    }
    if f.updates.is_some() && f.updates_topic.is_some() {
        bail!("give --updates or --updates-topic, not both");
    }
    if args.serve.replay_speed.is_some() && (args.input_topic.is_some() || args.input.as_deref() == Some("-")) {
        bail!("--replay-speed paces a file input; a Kafka topic or stdin comes at its own pace");
    }
    if args.serve.serve.is_none() && args.serve.serve_token.is_some() {
        bail!("--serve-token is for --serve");
    }
    Ok(())
}

/// The job around a pipeline: inputs, outputs, flow control, cluster.
fn job_config(pipeline: Pipeline, args: &RunArgs, cluster: &ClusterArgs, settle: u64) -> Result<JobConfig> {
    let group = args.group.clone().unwrap_or_else(|| format!("inflight-{}", pipeline.name()));
    let kafka_input = |topic: &String, what: &str| -> Result<Input> {
        Ok(Input::Kafka(KafkaInput {
            kafka: args.kafka.config(what)?,
            topic: topic.clone(),
            group: group.clone(),
            from: args.from,
            bounded: args.bounded,
            idle_timeout: Duration::from_millis(args.idle_timeout),
        }))
    };
    let kafka_output = |topic: &String| -> Result<Output> {
        Ok(Output::Kafka(KafkaOutput {
            kafka: args.kafka.config("a Kafka output topic")?,
            topic: topic.clone(),
            partitions: args.kafka.partitions,
        }))
    };
    let input = match &args.input_topic {
        Some(topic) => kafka_input(topic, "--input-topic")?,
        None => Input::from_arg(args.input.as_deref().unwrap_or(pipeline.sample())),
    };
    let side_inputs = match (&args.flight.updates, &args.flight.updates_topic) {
        (Some(path), _) => vec![Input::from_arg(path)],
        (None, Some(topic)) => vec![kafka_input(topic, "--updates-topic")?],
        (None, None) => Vec::new(),
    };
    if matches!(input, Input::Stdin) && side_inputs.contains(&Input::Stdin) {
        bail!("only one input can be stdin");
    }
    let output = match &args.output_topic {
        Some(topic) => kafka_output(topic)?,
        None => Output::from_arg(&args.output),
    };
    let dead_letter = match (&args.dead_letter_topic, &args.dead_letter) {
        (Some(topic), _) => kafka_output(topic)?,
        (None, Some(path)) => Output::from_arg(path),
        (None, None) => Output::Stderr,
    };
    let live = matches!(input, Input::Kafka(_)) || side_inputs.iter().any(|i| matches!(i, Input::Kafka(_)));
    let max_lag = args.max_lag.unwrap_or(if live { KAFKA_MAX_LAG } else { pipeline.file_max_lag() });
    Ok(JobConfig {
        input,
        side_inputs,
        source: SourceConfig {
            lateness: args.lateness,
            chunk_size: args.chunk_size,
            max_lag,
            settle,
            replay_speed: args.serve.replay_speed,
            // A replay reads one line at a time (a batch is rounded up to a whole line), so each
            // record waits for its own event time.
            batch_bytes: if args.serve.replay_speed.is_some() { 1 } else { SourceConfig::default().batch_bytes },
        },
        output,
        dead_letter,
        cluster: cluster.cluster(),
        checkpoint: checkpoint_config(pipeline, args)?,
    })
}

/// `--checkpoint-*`: checkpoints are opt-in.
fn checkpoint_config(pipeline: Pipeline, args: &RunArgs) -> Result<Option<CheckpointConfig>> {
    let Some(dir) = &args.checkpoint_dir else { return Ok(None) };
    if args.checkpoint_interval == 0 {
        bail!("--checkpoint-interval must be longer than 0");
    }
    if args.input.as_deref() == Some("-") {
        bail!("--checkpoint-dir needs an input that can be read again (a file or --input-topic), not stdin");
    }
    if args.flight.updates.as_deref() == Some("-") {
        bail!("--checkpoint-dir needs --updates from a file or --updates-topic, not stdin");
    }
    Ok(Some(CheckpointConfig {
        pipeline: pipeline.name().to_owned(),
        dir: dir.clone(),
        interval: args.checkpoint_interval,
        keep: usize::try_from(args.checkpoint_keep).unwrap_or(usize::MAX),
    }))
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

fn run_pipeline(pipeline: Pipeline, args: &RunArgs, cluster: &ClusterArgs) -> Result<()> {
    check_flags(pipeline, args)?;
    let ctx = RunContext::default();
    let stop = ctx.stop.clone();
    let checkpoints = args.checkpoint_dir.is_some();
    ctrlc::set_handler(move || {
        if stop.requested() {
            std::process::exit(130);
        }
        if checkpoints {
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
    let live = start_live(pipeline, args, cluster, &ctx)?;
    // The LLM stage's counters join the scrape and the live view once the stage exists.
    let with_llm = |llm: &Option<Arc<LlmService>>| {
        if let (Some(m), Some(service)) = (&metrics, llm) {
            let stats = Arc::clone(&service.stats);
            m.collect(Box::new(move || stats.record_metrics()));
        }
        if let (Some(hub), Some(service)) = (ctx.live.get(), llm) {
            let stats = Arc::clone(&service.stats);
            hub.add_section("llm", Box::new(move || stats.live_json()));
        }
    };
    let (report, llm) = match pipeline {
        Pipeline::Trading => {
            let config = trading_config(args)?;
            let job = job_config(pipeline, args, cluster, config.window_ms)?;
            let llm = start_llm(&config.llm_config(), None, &ctx)?;
            with_llm(&llm);
            let progress = Progress::start(&ctx);
            let report = inflight::run_trading_with(&job, &config, &ctx, llm.clone());
            progress.stop();
            (report?, llm)
        }
        Pipeline::Flight => {
            let config = flight_config(args)?;
            let job = job_config(pipeline, args, cluster, 1)?;
            let f = &args.flight;
            let default = |given: &Option<PathBuf>, sample: &str| given.clone().unwrap_or_else(|| sample.into());
            let schedule = default(&f.schedule, "data/flight-schedule.jsonl");
            let bookings = default(&f.bookings, "data/flight-bookings.jsonl");
            let reference = Reference::load(Some(&schedule), Some(&bookings))?;
            if job.cluster.process == 0 {
                eprintln!(
                    "inflight: flight reference: {} flights, {} bookings",
                    reference.flights.len(),
                    reference.bookings.len()
                );
            }
            let llm = start_llm(&config.llm_config(), None, &ctx)?;
            with_llm(&llm);
            let progress = Progress::start(&ctx);
            let report = inflight::run_flight_with(&job, &config, Arc::new(reference), &ctx, llm.clone());
            progress.stop();
            (report?, llm)
        }
        Pipeline::Code => {
            let config = code_config(args)?;
            let job = job_config(pipeline, args, cluster, 1)?;
            let llm = start_llm(&config.llm_config(), Some(CodeConfig::check()), &ctx)?;
            with_llm(&llm);
            let progress = Progress::start(&ctx);
            let report = inflight::run_code_with(&job, &ctx, llm.clone());
            progress.stop();
            (report?, llm)
        }
    };
    if cluster.process == 0 {
        print_summary(pipeline.name(), &report);
        for line in llm.iter().flat_map(|s| s.summary()) {
            eprintln!("  {line}");
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

/// `--serve`: the hub on every process (the dataflow's taps are the same everywhere), the server
/// on process 0.
fn start_live(
    pipeline: Pipeline,
    args: &RunArgs,
    cluster: &ClusterArgs,
    ctx: &RunContext,
) -> Result<Option<inflight::engine::serve::LiveServer>> {
    use inflight::engine::serve::{Hub, HubConfig, LiveServer, ServeConfig};
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
    let hub = Hub::new(pipeline.name(), config.hub.clone(), ctx);
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

fn print_summary(pipeline: &str, r: &JobReport) {
    let s = &r.source;
    if let Some(t) = r.restored_from {
        eprintln!("inflight: restored from the checkpoint at {}", inflight::engine::time::Stamp(t));
    }
    if r.skipped > 0 {
        eprintln!("inflight: {} records were already in the output topics and not sent again", r.skipped);
    }
    if let (Some(t), Some(first)) = (r.restored_from, r.first_output) {
        eprintln!(
            "inflight: first decision {:.1} ms after the start (restore from {} included)",
            first.as_secs_f64() * 1e3,
            inflight::engine::time::Stamp(t)
        );
    }
    if let Some(t) = r.stopped_at {
        eprintln!(
            "inflight: {pipeline} stopped at the checkpoint at {} (a restart continues from there)",
            inflight::engine::time::Stamp(t)
        );
        eprintln!("  decisions out  {:>12}", r.outputs);
        eprintln!("  elapsed        {:>12.3} s", r.elapsed.as_secs_f64());
        return;
    }
    eprintln!("inflight: {pipeline} finished");
    eprintln!("  events in      {:>12}", s.records());
    eprintln!("  decisions out  {:>12}", r.outputs);
    eprintln!("  dead-lettered  {:>12}  (malformed or invalid {}, late {})", s.bad + s.late, s.bad, s.late);
    eprintln!("  late           {:>12}", s.late);
    eprintln!("  elapsed        {:>12.3} s", r.elapsed.as_secs_f64());
    eprintln!("  throughput     {:>12.0} events/s", r.events_per_sec());
    if !r.latency.is_empty() {
        eprintln!("  latency        {}  (read → decision)", bench::percentiles(&r.latency));
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
