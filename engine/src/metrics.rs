//! The operations endpoint: `--metrics-addr` serves Prometheus text at `/metrics` and a JSON
//! `/health`. Counters and histograms are recorded with the `metrics` crate where the work happens
//! (they cost nothing but a branch while no recorder is installed) and rendered by
//! `metrics-exporter-prometheus`; values that already live elsewhere (frontier lag, LLM counters)
//! are copied in by collectors just before each scrape.

use crate::runtime::RunContext;
use crate::time::Stamp;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// Names of the metrics inflight records (one place, so the README and tests agree).
pub mod names {
    /// Records parsed into events, by input (`source` label).
    pub const EVENTS_IN: &str = "inflight_events_in_total";
    /// Results handed to the output.
    pub const OUTPUTS: &str = "inflight_outputs_total";
    /// Dead letters, by `reason`.
    pub const DEAD_LETTERS: &str = "inflight_dead_letters_total";
    /// Read → result latency, seconds.
    pub const LATENCY: &str = "inflight_latency_seconds";
    /// Wall clock (during a replay: the replay clock) minus the slowest source's event time, seconds.
    pub const FRONTIER_LAG: &str = "inflight_frontier_lag_seconds";
    /// The event-time frontier of the slowest source, ms since the epoch.
    pub const FRONTIER: &str = "inflight_frontier_ms";
    /// 1 once the dataflow runs.
    pub const READY: &str = "inflight_ready";
    /// Checkpoints committed.
    pub const CHECKPOINTS: &str = "inflight_checkpoints_total";
    /// From a checkpoint's first part to its manifest, seconds.
    pub const CHECKPOINT_DURATION: &str = "inflight_checkpoint_duration_seconds";
    /// Size of the last checkpoint's parts, bytes.
    pub const CHECKPOINT_BYTES: &str = "inflight_checkpoint_bytes";
    /// Event time of the last checkpoint, ms since the epoch.
    pub const CHECKPOINT_TIME: &str = "inflight_checkpoint_time_ms";
}

/// Copies a value kept elsewhere into the recorder before a scrape.
pub type Collector = Box<dyn Fn() + Send + Sync>;

/// The running endpoint; it stops with the process.
pub struct MetricsServer {
    /// The address it listens on (the port is real even when 0 was asked for).
    pub addr: SocketAddr,
    collectors: Arc<Mutex<Vec<Collector>>>,
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr} for metrics: {error}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        error: String,
    },
    /// The recorder or its runtime cannot start.
    #[error("cannot start the metrics endpoint: {0}")]
    Start(String),
}

/// The process's Prometheus recorder (a process has one global recorder).
fn recorder() -> Result<PrometheusHandle, MetricsError> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(MetricsError::Start)
}

/// The `# HELP` lines.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::EVENTS_IN, "Records parsed into events");
    describe_counter!(names::OUTPUTS, "Results handed to the output");
    describe_counter!(names::DEAD_LETTERS, "Records sent to the dead-letter output, by reason");
    describe_histogram!(names::LATENCY, metrics::Unit::Seconds, "Read to result latency");
    describe_gauge!(
        names::FRONTIER_LAG,
        metrics::Unit::Seconds,
        "Wall clock (replay clock in a replay) minus the slowest source's event time"
    );
    describe_gauge!(names::FRONTIER, "Event time the slowest source has reached, ms since the epoch");
    describe_gauge!(names::READY, "1 once the dataflow runs");
    describe_counter!(names::CHECKPOINTS, "Checkpoints committed");
    describe_histogram!(
        names::CHECKPOINT_DURATION,
        metrics::Unit::Seconds,
        "From a checkpoint's first part to its manifest"
    );
    describe_gauge!(names::CHECKPOINT_BYTES, metrics::Unit::Bytes, "Size of the last checkpoint");
    describe_gauge!(names::CHECKPOINT_TIME, "Event time of the last checkpoint, ms since the epoch");
}

#[derive(Clone)]
struct Shared {
    handle: PrometheusHandle,
    ctx: RunContext,
    collectors: Arc<Mutex<Vec<Collector>>>,
}

impl MetricsServer {
    /// Binds `addr` (before the run starts, so a taken port fails the command at once) and serves
    /// the run of `ctx` from a thread of its own.
    pub fn start(addr: SocketAddr, ctx: &RunContext) -> Result<MetricsServer, MetricsError> {
        let handle = recorder()?;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| MetricsError::Bind { addr, error: e.to_string() })?;
        let bound = listener.local_addr().map_err(|e| MetricsError::Bind { addr, error: e.to_string() })?;
        let collectors: Arc<Mutex<Vec<Collector>>> = Arc::default();
        let shared = Shared { handle, ctx: ctx.clone(), collectors: Arc::clone(&collectors) };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MetricsError::Start(e.to_string()))?;
        std::thread::Builder::new()
            .name("inflight-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let app =
                        Router::new().route("/metrics", get(render)).route("/health", get(health)).with_state(shared);
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            if let Err(e) = axum::serve(listener, app).await {
                                tracing::error!(error = %e, "metrics endpoint stopped");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "metrics endpoint cannot listen"),
                    }
                });
            })
            .map_err(|e| MetricsError::Start(e.to_string()))?;
        tracing::info!(addr = %bound, "metrics endpoint listening");
        Ok(MetricsServer { addr: bound, collectors })
    }

    /// Adds a collector run before every scrape.
    pub fn collect(&self, collector: Collector) {
        if let Ok(mut all) = self.collectors.lock() {
            all.push(collector);
        }
    }
}

/// Sets the values the engine keeps outside the recorder.
fn refresh(shared: &Shared) {
    let frontier = shared.ctx.clock.low();
    if let Some(f) = frontier {
        metrics::gauge!(names::FRONTIER).set(f as f64);
        let lag = shared.ctx.lag_ms().unwrap_or_default();
        metrics::gauge!(names::FRONTIER_LAG).set(lag as f64 / 1000.0);
    }
    metrics::gauge!(names::READY).set(if shared.ctx.ready.get() { 1.0 } else { 0.0 });
    if let Ok(all) = shared.collectors.lock() {
        for collect in all.iter() {
            collect();
        }
    }
}

async fn render(State(shared): State<Shared>) -> String {
    refresh(&shared);
    shared.handle.render()
}

async fn health(State(shared): State<Shared>) -> axum::Json<serde_json::Value> {
    let ctx = &shared.ctx;
    let frontier = ctx.clock.low();
    axum::Json(serde_json::json!({
        "ready": ctx.ready.get(),
        "records_read": ctx.progress.get(),
        "frontier": frontier.map(|f| Stamp(f).to_string()),
        "lag_seconds": frontier.and(ctx.lag_ms()).map(|lag| lag as f64 / 1000.0),
        "last_checkpoint": ctx.checkpoints.get().and_then(|c| c.last()).map(|c| serde_json::json!({
            "time": Stamp(c.time).to_string(),
            "time_ms": c.time,
            "bytes": c.bytes,
            "duration_ms": c.duration_ms,
            "written_at_ms": c.written_at,
        })),
        "failures": ctx.failures.peek(),
    }))
}
