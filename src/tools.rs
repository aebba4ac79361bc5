//! The bundled binary's own commands: `gen` (synthetic inputs of the bundled pipelines) and
//! `bench` (their throughput and latency). An app of one's own gets `run`, `produce` and `consume`
//! from [`inflight::app::App`] and adds commands like these the same way.

use crate::bench;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use inflight::app::{ClusterArgs, KafkaArgs, parse_speed};
use inflight::engine::time::parse_duration;
use inflight::pipelines::code::synthetic::{self as code_gen, CodeGenConfig};
use inflight::pipelines::flight::synthetic::{self as flight_gen, FlightGenConfig, StatusMix};
use inflight::pipelines::trading::synthetic::{GenConfig, generate};
use std::io::Write;
use std::path::PathBuf;

/// `gen` and `bench`.
#[derive(Subcommand)]
pub enum Tools {
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
    Backtest(crate::backtest::BacktestArgs),
    /// Measure a pipeline's throughput and latency on synthetic data (release builds only mean something).
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
        /// flight: how often each status occurs.
        #[arg(long, value_enum, default_value_t = Mix::Realistic)]
        mix: Mix,
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
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum BenchTarget {
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
pub(crate) enum GenKind {
    /// Market ticks for the trading pipeline.
    Market,
    /// Flight status events (-o), with the schedule and bookings they refer to (--schedule-out, --bookings-out).
    Flight,
    /// Code events with one known syntax error each.
    Code,
}

/// How often each flight status occurs in generated data.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Mix {
    /// An airline's day: 45 % on time, 10 % delayed, 1 % cancelled, 0.2 % diverted.
    Realistic,
    /// Many disruptions: 40 % on time, 15 % delayed, 3 % cancelled, 2 % diverted.
    Stress,
}

impl From<Mix> for StatusMix {
    fn from(mix: Mix) -> StatusMix {
        match mix {
            Mix::Realistic => StatusMix::Realistic,
            Mix::Stress => StatusMix::Stress,
        }
    }
}

#[derive(Args)]
pub(crate) struct GenArgs {
    /// Number of events.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Number of assets.
    #[arg(long, default_value_t = 10)]
    assets: usize,
    /// Random seed (same seed, same file).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Events per second of event time [default: market 10 per asset, so that every asset gets
    /// 10 ticks a second and the default 10,000 events give decisions; flight 10000].
    #[arg(long)]
    rate: Option<f64>,
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
    /// flight: fraction of lines that are live changes (new and deleted flights, deleted bookings).
    #[arg(long, default_value_t = 0.0)]
    changes: f64,
    /// flight: how often each status occurs.
    #[arg(long, value_enum, default_value_t = Mix::Realistic)]
    mix: Mix,
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

/// Runs `gen` and `bench`.
pub fn run(command: Tools) -> Result<()> {
    match command {
        Tools::Gen { kind: GenKind::Market, args, output } => gen_market(&args, &output),
        Tools::Gen { kind: GenKind::Flight, args, output } => gen_flight(&args, &output),
        Tools::Gen { kind: GenKind::Code, args, output } => gen_code(&args, &output),
        Tools::Backtest(args) => crate::backtest::run(args),
        Tools::Bench {
            target: BenchTarget::Flight,
            events,
            input,
            runs,
            cluster,
            bookings,
            mix,
            checkpoint_interval,
            ..
        } => bench::flight_file(events, bookings, mix.into(), input, runs, cluster.cluster(), checkpoint_interval),
        Tools::Bench { target: BenchTarget::Code, events, input, runs, cluster, checkpoint_interval, .. } => {
            bench::code_file(events, input, runs, cluster.cluster(), checkpoint_interval)
        }
        Tools::Bench {
            target: BenchTarget::Trading,
            events,
            assets,
            input,
            runs,
            cluster,
            checkpoint_interval,
            ..
        } => bench::trading_file(events, assets, input, runs, cluster.cluster(), checkpoint_interval),
        Tools::Bench { target: BenchTarget::Live, events, assets, runs, clients, replay_speed, cluster, .. } => {
            let cluster = cluster.cluster();
            bench::live(&bench::LiveBench { events, assets, clients, runs, replay_speed, cluster })
        }
        Tools::Bench { target: BenchTarget::Kafka, events, assets, rate, kafka, cluster, .. } => {
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
    }
}

fn fraction(name: &str, v: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&v) {
        bail!("--{name} {v} must be a fraction between 0 and 1");
    }
    Ok(v)
}

fn gen_market(args: &GenArgs, output: &str) -> Result<()> {
    let rate = args.rate.unwrap_or_else(|| GenConfig::rate_for(args.assets));
    let config = GenConfig {
        events: args.events,
        assets: args.assets,
        seed: args.seed,
        rate,
        out_of_order: fraction("out-of-order", args.out_of_order)?,
        max_delay_ms: args.max_delay,
        malformed: fraction("malformed", args.malformed)?,
        ..GenConfig::default()
    };
    if args.assets == 0 || rate.is_nan() || rate <= 0.0 {
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
    let rate = args.rate.unwrap_or(10_000.0);
    if args.bookings == 0 || rate.is_nan() || rate <= 0.0 {
        bail!("--bookings must be at least 1 and --rate positive");
    }
    let config = FlightGenConfig {
        events: args.events,
        seed: args.seed,
        rate,
        malformed: fraction("malformed", args.malformed)?,
        changes: fraction("changes", args.changes)?,
        mix: args.mix.into(),
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
