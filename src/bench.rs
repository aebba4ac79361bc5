//! `inflight bench`: throughput and latency of whole pipelines, on generated data. Benchmarks print
//! figures and never judge them.

use anyhow::{Context, Result, bail};
use inflight::engine::job::{JobConfig, JobReport};
use inflight::engine::kafka::{KafkaConfig, send_when_room};
use inflight::engine::runtime::{Cluster, RunContext};
use inflight::engine::sink::{KafkaOutput, Output};
use inflight::engine::source::{Input, KAFKA_MAX_LAG, KafkaInput, SourceConfig, StartFrom};
use inflight::engine::stats::latency_histogram;
use inflight::engine::time::Millis;
use inflight::engine::time::wall_millis;
use inflight::operators::Emit;
use inflight::pipelines::code::synthetic::{self as code_gen, CodeGenConfig};
use inflight::pipelines::flight::synthetic::{self as flight_gen, FlightGenConfig, StatusMix};
use inflight::pipelines::flight::{self, FlightConfig};
use inflight::pipelines::trading::TradingConfig;
use inflight::pipelines::trading::synthetic::{GenConfig, Market, generate};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inflight::app::FileBench;
pub use inflight::app::percentiles;

/// File → decisions, `runs` times; prints each run and the median.
pub fn trading_file(
    events: u64,
    assets: usize,
    input: Option<PathBuf>,
    runs: usize,
    cluster: Cluster,
    checkpoint: Option<Millis>,
) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = match input {
        Some(p) => p,
        None => {
            let config = GenConfig { events, assets, rate: GenConfig::rate_for(assets), ..GenConfig::default() };
            generated(&dir, "market.jsonl", |out| generate(&config, out))?
        }
    };
    file_runs("trading", path, runs, cluster, checkpoint, 0, |job| {
        Ok(inflight::run_trading(job, &TradingConfig::default(), &RunContext::default())?)
    })
}

/// The flight job (rules only) over generated status events against `bookings` bookings.
pub fn flight_file(
    events: u64,
    bookings: usize,
    mix: StatusMix,
    input: Option<PathBuf>,
    runs: usize,
    cluster: Cluster,
    checkpoint: Option<Millis>,
) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let config = FlightGenConfig { events, mix, ..FlightGenConfig::sized_for(bookings) };
    let reference = Arc::new(flight_gen::reference(&config));
    eprintln!(
        "bench flight: {} flights, {} bookings, {mix:?} status mix",
        reference.flights.len(),
        reference.bookings.len()
    );
    let path = match input {
        Some(p) => p,
        None => generated(&dir, "flight.jsonl", |out| flight_gen::events(&config, &reference, out))?,
    };
    let flight = FlightConfig::default();
    file_runs("flight", path, runs, cluster, checkpoint, flight::FILE_MAX_LAG, |job| {
        Ok(inflight::run_flight_with(job, &flight, Arc::clone(&reference), &RunContext::default(), None)?)
    })
}

/// The code-fix job (rules only) over generated events of about 30 lines each.
pub fn code_file(
    events: u64,
    input: Option<PathBuf>,
    runs: usize,
    cluster: Cluster,
    checkpoint: Option<Millis>,
) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = match input {
        Some(p) => p,
        None => generated(&dir, "code.jsonl", |out| {
            code_gen::generate(&CodeGenConfig { events, ..CodeGenConfig::default() }, out)
        })?,
    };
    file_runs("code", path.clone(), runs, cluster, checkpoint, 0, |job| {
        Ok(inflight::run_code_with(job, &RunContext::default(), None)?)
    })?;
    code_precision(&path)
}

/// Prints, per language and kind, how many of the rules' FIXes gave back the injected original
/// exactly, next to the confidence they were given (inputs from `inflight gen code` only: others
/// carry no original).
fn code_precision(path: &std::path::Path) -> Result<()> {
    use inflight::pipelines::code::calibration::{Tally, name};
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut tally = Tally::default();
    let measured = text.lines().filter(|line| tally.measure(line)).count();
    if measured == 0 {
        eprintln!("bench code: the input carries no injected originals, so no precision");
        return Ok(());
    }
    println!("precision of the rules' FIXes on {measured} generated cases (exact = the original given back):");
    println!(
        "{:<11}{:<20}{:>7}{:>7}{:>11}{:>12}{:>10}",
        "language", "kind", "FIXes", "exact", "precision", "confidence", "SUGGEST"
    );
    for k in tally.by_kind() {
        println!(
            "{:<11}{:<20}{:>7}{:>7}{:>10.1}%{:>12.2}{:>10}",
            name(k.language),
            format!("{:?}", k.kind),
            k.fixes,
            k.exact,
            k.precision() * 100.0,
            k.confidence(),
            k.suggested
        );
    }
    Ok(())
}

/// Writes a generated benchmark input into `dir`.
fn generated(
    dir: &tempfile::TempDir,
    name: &str,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<PathBuf> {
    let path = dir.path().join(name);
    let file = std::fs::File::create(&path).context("creating the benchmark input")?;
    let mut out = std::io::BufWriter::new(file);
    write(&mut out).and_then(|_| std::io::Write::flush(&mut out)).context("writing the benchmark input")?;
    Ok(path)
}

/// Runs `run` over the file `runs` times, printing each run and the median; `max_lag` is the
/// pipeline's `--max-lag` default for files.
fn file_runs(
    name: &'static str,
    path: PathBuf,
    runs: usize,
    cluster: Cluster,
    checkpoint: Option<Millis>,
    max_lag: Millis,
    run: impl Fn(&JobConfig) -> Result<JobReport>,
) -> Result<()> {
    let source = SourceConfig { max_lag, ..SourceConfig::default() };
    let hint = (name == "trading").then(|| TradingConfig::default().no_decisions_hint());
    FileBench { name, input: Input::File(path), side_inputs: Vec::new(), runs, source, checkpoint, hint }
        .run(cluster, run)
}

/// Settings of `bench kafka`.
pub struct KafkaBench {
    /// Broker connection.
    pub kafka: KafkaConfig,
    /// Events to produce.
    pub events: u64,
    /// Assets.
    pub assets: usize,
    /// Fixed produce rate (latency mode); None = produce first, then read as fast as possible.
    pub rate: Option<f64>,
    /// Partitions of the input and output topics.
    pub partitions: i32,
    /// Workers and processes.
    pub cluster: Cluster,
}

fn producer(kafka: &KafkaConfig) -> Result<BaseProducer> {
    kafka.client_config(&KafkaOutput::DEFAULTS).create().context("creating a producer")
}

fn send(p: &BaseProducer, topic: &str, key: &str, payload: &str) -> Result<()> {
    send_when_room(p, BaseRecord::to(topic).key(key).payload(payload)).context("producing")
}

/// The Kafka round trip: input topic → trading pipeline → output topic.
pub fn trading_kafka(b: &KafkaBench) -> Result<()> {
    let stamp = wall_millis();
    let (input, output) = (format!("inflight-bench-in-{stamp}"), format!("inflight-bench-out-{stamp}"));
    b.kafka.ensure_topic(&input, b.partitions)?;
    b.kafka.ensure_topic(&output, b.partitions)?;
    let mut config = TradingConfig { emit: Emit::All, ..TradingConfig::default() };
    let job = JobConfig {
        input: Input::Kafka(KafkaInput {
            kafka: b.kafka.clone(),
            topic: input.clone(),
            group: format!("inflight-bench-{stamp}"),
            from: StartFrom::Earliest,
            bounded: b.rate.is_none(),
            idle_timeout: Duration::from_millis(500),
            create: false,
        }),
        side_inputs: Vec::new(),
        source: SourceConfig { settle: config.window_ms, max_lag: KAFKA_MAX_LAG, ..SourceConfig::default() },
        output: Output::Kafka(KafkaOutput { kafka: b.kafka.clone(), topic: output.clone(), partitions: b.partitions }),
        dead_letter: Output::Discard,
        cluster: b.cluster.clone(),
        checkpoint: None,
    };
    eprintln!(
        "bench kafka: {} events, {} assets, {} partitions, {} worker(s) x {} process(es), brokers {}",
        b.events, b.assets, b.partitions, b.cluster.workers, b.cluster.processes, b.kafka.brokers
    );
    match b.rate {
        None => {
            // Backfill: produce everything, then read it through the pipeline as fast as it goes.
            config.emit = Emit::Changes;
            let p = producer(&b.kafka)?;
            let mut market = Market::new(b.assets, 42);
            let start = Instant::now();
            for i in 0..b.events {
                let event = market.tick(1_704_621_600_000 + i / 10);
                let line = serde_json::to_string(&event)?;
                send(&p, &input, &event.asset, &line)?;
            }
            p.flush(Duration::from_secs(120)).context("flushing the producer")?;
            let secs = start.elapsed().as_secs_f64();
            println!("produced {} events in {secs:.3} s = {:.0} events/s", b.events, b.events as f64 / secs);
            let r = inflight::run_trading(&job, &config, &RunContext::default())?;
            println!(
                "pipeline: {} events in {:.3} s = {:.0} events/s through the broker, {} decisions",
                r.source.records(),
                r.elapsed.as_secs_f64(),
                r.events_per_sec(),
                r.outputs
            );
            Ok(())
        }
        Some(rate) => latency(b, &job, &config, &input, &output, rate),
    }
}

/// Live: produce at `rate` with event time = now while the pipeline runs; time each decision from
/// the produce of the bar's closing tick to its arrival in the output topic.
fn latency(
    b: &KafkaBench,
    job: &JobConfig,
    config: &TradingConfig,
    input: &str,
    output: &str,
    rate: f64,
) -> Result<()> {
    let ctx = RunContext::default();
    let pipeline = {
        let (job, config, ctx) = (job.clone(), config.clone(), ctx.clone());
        std::thread::spawn(move || inflight::run_trading(&job, &config, &ctx))
    };
    // Produce times by (partition, offset), filled from delivery reports.
    let sent: Arc<Mutex<HashMap<(i32, i64), Instant>>> = Arc::default();
    let end_to_end = Arc::new(Mutex::new(latency_histogram()));
    let consumer = {
        let (kafka, topic, sent, hist, stop) =
            (b.kafka.clone(), output.to_owned(), Arc::clone(&sent), Arc::clone(&end_to_end), ctx.stop.clone());
        let partitions = b.partitions;
        std::thread::spawn(move || -> Result<()> {
            let c: BaseConsumer =
                kafka.client_config(&[("group.id", "inflight-bench"), ("fetch.wait.max.ms", "1")]).create()?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
            }
            c.assign(&tpl)?;
            while !stop.requested() {
                let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else { continue };
                let now = Instant::now();
                let Ok(d) = serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or_default()) else {
                    continue;
                };
                let (Some(p), Some(o)) = (d["source"]["partition"].as_i64(), d["source"]["offset"].as_i64()) else {
                    continue;
                };
                let at = sent.lock().ok().and_then(|s| s.get(&(p as i32, o)).copied());
                if let (Some(at), Ok(mut h)) = (at, hist.lock()) {
                    let _ = h.record((now.duration_since(at).as_micros() as u64).max(1));
                }
            }
            Ok(())
        })
    };
    // Let the pipeline connect before the clock starts.
    std::thread::sleep(Duration::from_secs(2));
    let p: BaseProducer<TimedDelivery> =
        b.kafka.client_config(&KafkaOutput::DEFAULTS).create_with_context(TimedDelivery(Arc::clone(&sent)))?;
    let mut market = Market::new(b.assets, 42);
    let start = Instant::now();
    for i in 0..b.events {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            p.poll(Duration::ZERO);
            std::thread::sleep(due - now);
        }
        let event = market.tick(wall_millis());
        let line = serde_json::to_string(&event)?;
        let record =
            BaseRecord::with_opaque_to(input, Box::new(Instant::now())).key(event.asset.as_str()).payload(&line);
        send_when_room(&p, record).context("producing")?;
        if i % 256 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(60)).context("flushing the producer")?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "produced {} events in {secs:.3} s = {:.0} events/s (asked {rate:.0}/s)",
        b.events,
        b.events as f64 / secs
    );
    // Let the last decisions arrive, then stop (windows still open then are not timed).
    std::thread::sleep(Duration::from_secs(2));
    ctx.stop.request();
    let report = pipeline.join().map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))??;
    consumer.join().map_err(|_| anyhow::anyhow!("the consumer thread panicked"))??;
    println!("pipeline: {} events, {} decisions", report.source.records(), report.outputs);
    if let Ok(h) = end_to_end.lock() {
        println!("bar's last tick produced → decision read from the output topic: {}", percentiles(&h));
    }
    println!(
        "engine: record polled that closed the window → decision handed to the producer: {}",
        percentiles(&report.engine)
    );
    println!("window end (event time = produce time) → decision handed to the producer: {}", percentiles(&report.lag));
    println!("bar's last tick polled → decision handed to the producer: {}", percentiles(&report.latency));
    Ok(())
}

/// Records when each produced record was sent, by the partition and offset the broker gave it.
struct TimedDelivery(Arc<Mutex<HashMap<(i32, i64), Instant>>>);

impl rdkafka::ClientContext for TimedDelivery {}

impl rdkafka::producer::ProducerContext for TimedDelivery {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, sent_at: Box<Instant>) {
        if let (Ok(m), Ok(mut map)) = (result, self.0.lock()) {
            map.insert((m.partition(), m.offset()), *sent_at);
        }
    }
}

/// What `inflight bench live` measures.
pub struct LiveBench {
    /// Events to generate.
    pub events: u64,
    /// Assets (10 ticks per asset per second of event time).
    pub assets: usize,
    /// SSE clients per measured run (the runs without clients are the baseline).
    pub clients: Vec<usize>,
    /// Runs per client count.
    pub runs: usize,
    /// Pace the input (delivery delay at a steady rate) instead of reading it at full speed.
    pub replay_speed: Option<f64>,
    /// Workers (one process: the clients live in it too).
    pub cluster: Cluster,
}

/// The trading job with the live view on: events/s with no client and
/// with each client count, and how the clients fared (delivery delay, missed events, memory).
pub fn live(b: &LiveBench) -> Result<()> {
    use inflight::engine::serve::{Hub, HubConfig, LiveServer, ServeConfig};
    use inflight::live_load::{ClientPlan, many, percentile, rss_bytes};
    use std::sync::atomic::{AtomicU64, Ordering};
    if b.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let rate = b.assets as f64 * 10.0;
    let path = generated(&dir, "market.jsonl", |out| {
        generate(&GenConfig { events: b.events, assets: b.assets, rate, ..GenConfig::default() }, out)
    })?;
    // Paced: a decision per bar (a steady stream to time). Full speed: the default (changes
    // only), as a live deployment would emit; every bar at full speed would be tens of thousands
    // of decisions a second to each client.
    let emit = if b.replay_speed.is_some() { Emit::All } else { Emit::Changes };
    let config = TradingConfig { emit, ..TradingConfig::default() };
    let clients_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the clients' runtime")?;
    let mut counts = vec![0];
    counts.extend(b.clients.iter().copied());
    eprintln!(
        "bench live: {} events, {} assets, clients {:?}, {}",
        b.events,
        b.assets,
        b.clients,
        b.replay_speed.map_or("full speed".to_owned(), |s| format!("replayed at {s}x"))
    );
    let mut rates: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    for run in 0..b.runs {
        for &n in &counts {
            let ctx = RunContext::default();
            let hub = Hub::new("trading", HubConfig::default(), &ctx);
            let _ = ctx.live.set(hub.clone());
            let serve = ServeConfig { addr: "127.0.0.1:0".parse()?, token: None, hub: HubConfig::default() };
            let server = LiveServer::start(&serve, hub.clone())?;
            let rss_before = rss_bytes(None);
            let until = Arc::new(AtomicU64::new(0));
            let plan = ClientPlan {
                path: "/api/decisions".into(),
                until: until.clone(),
                sample: 10,
                measure_from_ms: 0,
                keep_data: false,
                token: None,
            };
            let addr = server.addr;
            // Connected before the run starts, so each gets every decision live.
            let clients = (n > 0).then(|| {
                let (tx, rx) = std::sync::mpsc::channel();
                let task = clients_rt.spawn(async move {
                    let opened = many(addr, n, plan);
                    let _ = tx.send(());
                    opened.await
                });
                (task, rx)
            });
            if n > 0 {
                while hub.stats()["clients"]["connected"].as_u64().unwrap_or(0) < n as u64 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let rss_clients = rss_bytes(None);
            let job = JobConfig {
                input: Input::File(path.clone()),
                side_inputs: Vec::new(),
                source: SourceConfig {
                    replay_speed: b.replay_speed,
                    batch_bytes: if b.replay_speed.is_some() { 1 } else { SourceConfig::default().batch_bytes },
                    ..SourceConfig::default()
                },
                output: Output::Discard,
                dead_letter: Output::Discard,
                cluster: b.cluster.clone(),
                checkpoint: None,
            };
            let report = inflight::run_trading_with(&job, &config, &ctx, None)?;
            until.store(hub.latest(), Ordering::Relaxed);
            let mut line = format!(
                "run {} clients {n:>5}: {:>9.0} events/s, {} decisions",
                run + 1,
                report.events_per_sec(),
                hub.latest()
            );
            rates.entry(n).or_default().push(report.events_per_sec());
            if let Some((task, _)) = clients {
                let reports = clients_rt.block_on(task)??;
                let mut delays: Vec<u64> = reports.iter().flat_map(|r| r.delays_ms.iter().copied()).collect();
                delays.sort_unstable();
                let missed: u64 = reports.iter().map(|r| r.missed).sum();
                let complete = reports.iter().filter(|r| r.received == hub.latest() && r.in_order).count();
                line.push_str(&format!(
                    "; delivery p50 {} ms p99 {} ms max {} ms; {complete}/{n} clients got every decision in order, \
                     {missed} missed in all; memory {:.1} KB per client (both ends)",
                    percentile(&delays, 0.5),
                    percentile(&delays, 0.99),
                    delays.last().copied().unwrap_or(0),
                    rss_clients.saturating_sub(rss_before) as f64 / 1e3 / n as f64
                ));
            }
            println!("{line}");
        }
    }
    let median = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    if let Some(base) = rates.get(&0).map(median) {
        for (n, v) in rates.iter().filter(|(n, _)| **n > 0) {
            let m = median(v);
            println!(
                "median: {m:.0} events/s with {n} clients, {base:.0} with none ({:+.1} %)",
                (m / base - 1.0) * 100.0
            );
        }
    }
    Ok(())
}
