//! The runner's flags: every `run` has these, then its pipeline's own.

use crate::engine::kafka::{KafkaConfig, consume_to, produce_lines};
use crate::engine::runtime::{Cluster, Stop};
use crate::engine::source::StartFrom;
use crate::engine::time::{parse_duration, parse_rfc3339};
use crate::operators::{Emit, LlmConfig};
use anyhow::{Context, Result, bail};
use clap::{Args, Command, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Flags of every command.
#[derive(Args)]
pub(crate) struct Global {
    /// Log format on stderr (the level comes from RUST_LOG, default warn).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

impl Global {
    pub(crate) fn init_logs(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
        // Colour codes only for a terminal: in a file or a log shipper they are noise.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
        match self.log_format {
            LogFormat::Text => logs.init(),
            LogFormat::Json => logs.json().init(),
        }
    }
}

/// The flags of a pipeline without flags of its own.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct NoFlags {}

/// `--emit`, for pipelines that offer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmitFlag {
    /// Only when a key's action changes (or only what needs an action).
    Changes,
    /// One decision per input.
    All,
}

impl From<EmitFlag> for Emit {
    fn from(e: EmitFlag) -> Emit {
        match e {
            EmitFlag::Changes => Emit::Changes,
            EmitFlag::All => Emit::All,
        }
    }
}

/// `run`'s command with the runner's flags.
pub(crate) fn run_command(cmd: Command) -> Command {
    ClusterArgs::augment_args(RunArgs::augment_args(cmd))
}

/// `bench`'s command with its flags and the cluster flags.
pub(crate) fn bench_command(cmd: Command) -> Command {
    ClusterArgs::augment_args(super::bench::BenchArgs::augment_args(cmd))
}

/// Commands every app has besides `run`.
#[derive(Subcommand)]
pub(crate) enum Tools {
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
}

impl Tools {
    pub(crate) fn run(self) -> Result<()> {
        match self {
            Tools::Produce { topic, input, rate, key_field, kafka } => {
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
            Tools::Consume { topic, follow, meta, kafka } => {
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
}

/// The runner's flags of `run`, for every pipeline.
#[derive(Args)]
pub struct RunArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics and a JSON health report at /health while
    /// the run goes on (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR", env = "INFLIGHT_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Input JSONL file, or `-` for stdin [default: the pipeline's bundled sample].
    #[arg(short, long, env = "INFLIGHT_INPUT")]
    pub input: Option<String>,
    /// Where decisions go: a file, or `-` for stdout.
    #[arg(short, long, default_value = "-", env = "INFLIGHT_OUTPUT")]
    pub output: String,
    /// Where malformed, invalid and late records go (default: stderr).
    #[arg(long, env = "INFLIGHT_DEAD_LETTER")]
    pub dead_letter: Option<String>,
    /// Pipeline settings (TOML); flags and INFLIGHT_* variables override it.
    #[arg(long, env = "INFLIGHT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Allowed out-of-orderness; older records are late [default: 0s].
    #[arg(long, env = "INFLIGHT_LATENESS", value_parser = parse_duration, default_value = "0")]
    pub lateness: u64,
    /// File chunk size in bytes: the unit of parallel reading (does not change results).
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,
    /// Kafka brokers and client settings.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Read events from this Kafka topic instead of --input.
    #[arg(long, env = "INFLIGHT_INPUT_TOPIC")]
    pub input_topic: Option<String>,
    /// Write decisions to this Kafka topic instead of --output.
    #[arg(long, env = "INFLIGHT_OUTPUT_TOPIC")]
    pub output_topic: Option<String>,
    /// Write dead letters to this Kafka topic instead of --dead-letter.
    #[arg(long, env = "INFLIGHT_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Consumer group whose committed offsets --from committed uses and the run commits
    /// [default: inflight-PIPELINE].
    #[arg(long, env = "INFLIGHT_GROUP")]
    pub group: Option<String>,
    /// Where to start reading the input topic: earliest, latest, committed or an RFC 3339 time.
    #[arg(long, default_value = "committed", value_parser = parse_start)]
    pub from: StartFrom,
    /// Read up to the end offsets found at start, then finish like a file run.
    #[arg(long)]
    pub bounded: bool,
    /// Create input topics that do not exist (without it a missing input topic is an error;
    /// output topics are always created).
    #[arg(long)]
    pub create_topics: bool,
    /// A partition silent this long stops holding windows back.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub idle_timeout: u64,
    /// Pause reading while outputs lag this far (event time) behind the input [default: 60s for
    /// Kafka inputs; for files 5s in flight, off in trading and code]; 0 turns it off.
    #[arg(long, value_parser = parse_duration)]
    pub max_lag: Option<u64>,
    /// Take checkpoints in this directory (local or shared by all processes), and restore from
    /// the newest whole one found there at start.
    #[arg(long, value_name = "DIR", env = "INFLIGHT_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Event time between checkpoints.
    #[arg(long, value_parser = parse_duration, default_value = "10s", env = "INFLIGHT_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: u64,
    /// Complete checkpoints to keep.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_keep: u64,
    /// The LLM stage.
    #[command(flatten)]
    pub llm: LlmArgs,
    /// The live view.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The live view (`--serve`) and replays.
#[derive(Args)]
pub struct ServeArgs {
    /// Serve the live view (web page, decision stream, bars, statistics) at http://ADDR/ while
    /// the run goes on, and after it until Ctrl-C (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR", env = "INFLIGHT_SERVE")]
    pub serve: Option<std::net::SocketAddr>,
    /// A token every request to the live view must carry (`Authorization: Bearer TOKEN`, or
    /// `?token=TOKEN` when opening the page); required when ADDR is not a loopback address.
    #[arg(long, value_name = "TOKEN", env = "INFLIGHT_SERVE_TOKEN", hide_env_values = true)]
    pub serve_token: Option<String>,
    /// Decisions the live view keeps for clients that resume (`Last-Event-ID`).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub serve_history: u64,
    /// Decisions a client may fall behind before it loses the oldest (it is told how many).
    #[arg(long, default_value_t = 4_096, value_parser = clap::value_parser!(u64).range(1..))]
    pub serve_client_buffer: u64,
    /// A client behind for this long without reading is disconnected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub serve_slow_after: u64,
    /// Bars kept per key for the charts.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub serve_bars: u64,
    /// Replay a file input at this multiple of its event-time pace (e.g. 1x, 10x, 0.5x), to
    /// watch a backtest.
    #[arg(long, value_name = "SPEED", value_parser = parse_speed)]
    pub replay_speed: Option<f64>,
}

/// `10x`, `10` or `0.5x`: a positive, finite multiple.
pub fn parse_speed(s: &str) -> std::result::Result<f64, String> {
    let n = s.strip_suffix(['x', 'X']).unwrap_or(s);
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a speed (a positive multiple such as 10x)")),
    }
}

/// The LLM stage's flags (the config file's `[llm]` table holds the rest).
#[derive(Args)]
pub struct LlmArgs {
    /// Send decisions the rules are unsure about to an OpenAI-compatible LLM endpoint.
    #[arg(long)]
    pub llm: bool,
    /// Endpoint base URL [default: https://api.openai.com/v1; env OPENAI_BASE_URL].
    #[arg(long)]
    pub llm_base_url: Option<String>,
    /// Model name.
    #[arg(long)]
    pub llm_model: Option<String>,
    /// Decisions below this rule confidence go to the LLM (0 = never, 1 = always) [default: 0.7].
    #[arg(long)]
    pub llm_min_confidence: Option<f64>,
    /// Most requests in flight per worker [default: 32].
    #[arg(long)]
    pub llm_concurrency: Option<usize>,
    /// Timeout of one request, e.g. 20s.
    #[arg(long, value_parser = parse_duration)]
    pub llm_timeout: Option<u64>,
    /// Fall back to the rules when a case is still unanswered this long after its input was read.
    #[arg(long, value_parser = parse_duration)]
    pub llm_deadline: Option<u64>,
    /// Ask for streamed (SSE) replies.
    #[arg(long)]
    pub llm_stream: bool,
    /// Append every LLM call and its outcome to this JSONL file.
    #[arg(long)]
    pub llm_log: Option<PathBuf>,
    /// Answer LLM calls from this call log instead of the network (implies --llm).
    #[arg(long)]
    pub llm_replay: Option<PathBuf>,
}

impl LlmArgs {
    /// The first flag given that configures the LLM stage without turning it on.
    pub fn setting_given(&self) -> Option<&'static str> {
        [
            (self.llm_base_url.is_some(), "--llm-base-url"),
            (self.llm_model.is_some(), "--llm-model"),
            (self.llm_min_confidence.is_some(), "--llm-min-confidence"),
            (self.llm_concurrency.is_some(), "--llm-concurrency"),
            (self.llm_timeout.is_some(), "--llm-timeout"),
            (self.llm_deadline.is_some(), "--llm-deadline"),
            (self.llm_stream, "--llm-stream"),
            (self.llm_log.is_some(), "--llm-log"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// The environment (`OPENAI_*`) over the config file, then the flags over both.
    pub fn apply_with_env(&self, config: &mut LlmConfig) {
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

/// Kafka connection flags.
#[derive(Args, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Partitions for topics inflight creates.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Any librdkafka property, e.g. -X security.protocol=SASL_SSL (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = KafkaConfig::parse_property)]
    pub property: Vec<(String, String)>,
}

impl KafkaArgs {
    /// The client settings; `what` names the flag that needs them in the error.
    pub fn config(&self, what: &str) -> Result<KafkaConfig> {
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

/// Workers and processes (timely's cluster).
#[derive(Args)]
pub struct ClusterArgs {
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1, env = "INFLIGHT_WORKERS")]
    pub workers: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1, env = "INFLIGHT_PROCESSES")]
    pub processes: usize,
    /// Index of this process (0-based).
    #[arg(short = 'p', long = "process", default_value_t = 0, env = "INFLIGHT_PROCESS")]
    pub process: usize,
    /// File with one host:port line per process (long form only: `-h` is help, as everywhere).
    #[arg(long = "hostfile", env = "INFLIGHT_HOSTFILE")]
    pub hostfile: Option<PathBuf>,
    /// How long a process waits at start for every other process of the cluster.
    #[arg(long = "connect-timeout", default_value = "60s", env = "INFLIGHT_CONNECT_TIMEOUT", value_parser = parse_duration)]
    pub connect_timeout: u64,
}

impl ClusterArgs {
    /// The cluster shape.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            workers: self.workers,
            processes: self.processes,
            process: self.process,
            hostfile: self.hostfile.clone(),
            connect_timeout: std::time::Duration::from_millis(self.connect_timeout),
        }
    }
}
