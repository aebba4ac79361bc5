//! What the live view holds: the recent decisions (numbered, for `Last-Event-ID`), a broadcast of
//! new ones to every connected client, each key's recent bars, and counters for `/api/stats`.
//! Worker 0 of process 0 feeds it from the dataflow; it never waits for a client: a publish is a
//! few pushes into bounded buffers, and a client that falls behind loses the oldest events.

use crate::runtime::RunContext;
use crate::source::SourceStats;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The live view's bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Decisions kept for `Last-Event-ID` and `?history=`.
    pub history: usize,
    /// Bars kept per key.
    pub bars_per_key: usize,
    /// Events a client may be behind before it loses the oldest (the broadcast ring's length).
    pub client_buffer: usize,
    /// A client behind for this long without reading is disconnected.
    pub slow_after: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig { history: 100_000, bars_per_key: 1_000, client_buffer: 4_096, slow_after: Duration::from_secs(10) }
    }
}

/// One decision as clients get it.
#[derive(Debug)]
pub struct Entry {
    /// Its number (the SSE id), from 1.
    pub seq: u64,
    /// Fields the stream can be filtered by.
    pub pipeline: Box<str>,
    /// The decision's key.
    pub key: Box<str>,
    /// BUY, SELL, …
    pub action: Box<str>,
    /// rules, llm, fallback or budget.
    pub decided_by: Box<str>,
    /// The whole SSE frame (`id:`, `event:`, `data:`), formatted once for every client.
    pub frame: axum::body::Bytes,
    /// The run's `event: end` (after every decision), not a decision: no filter applies.
    pub end: bool,
}

/// Decisions taken from the history for a new client.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Oldest first.
    pub entries: Vec<Arc<Entry>>,
    /// Decisions the client asked for that the history no longer holds.
    pub lost: u64,
    /// The newest decision the history held then: later ones come from the broadcast.
    pub upto: u64,
}

/// The filter fields read from a decision's JSON.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    pipeline: Cow<'a, str>,
    #[serde(borrow, default)]
    key: Cow<'a, str>,
    #[serde(borrow, default)]
    action: Cow<'a, str>,
    #[serde(borrow, default)]
    decided_by: Cow<'a, str>,
}

/// Counters, summed over the whole cluster (they arrive through the dataflow).
#[derive(Debug, Default)]
struct Counts {
    source: SourceStats,
    decisions: u64,
    dead: BTreeMap<String, u64>,
    bars: u64,
}

/// One key's recent bars: (time, JSON object).
type BarRing = VecDeque<(u64, Box<str>)>;

/// A section `/api/stats` adds from elsewhere (the LLM stage's counters).
pub type StatsSection = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The live view's state, shared by the dataflow (writer) and the HTTP server (readers).
pub struct Hub {
    pipeline: String,
    config: HubConfig,
    started: Instant,
    ctx: RunContext,
    seq: AtomicU64,
    history: Mutex<VecDeque<Arc<Entry>>>,
    tx: broadcast::Sender<Arc<Entry>>,
    /// Decisions for the server's forwarder to broadcast: waking a thousand clients is its work,
    /// not the worker's (set once a server runs; without one, publish sends itself).
    outbox: Mutex<Vec<Arc<Entry>>>,
    forwarding: AtomicBool,
    wake: tokio::sync::Notify,
    bars: Mutex<FxHashMap<Box<str>, BarRing>>,
    counts: Mutex<Counts>,
    /// (when, events in, decisions) a second apart, for the rates.
    samples: Mutex<VecDeque<(Instant, u64, u64)>>,
    sections: Mutex<Vec<(String, StatsSection)>>,
    done: AtomicBool,
    /// The `event: end` frame, once the run has finished.
    end: Mutex<Option<axum::body::Bytes>>,
    /// The replay's pace (lag to the wall clock means nothing then).
    replay: std::sync::OnceLock<f64>,
    /// Clients connected now, disconnected for being slow, and events clients missed.
    pub(crate) clients: AtomicU64,
    pub(crate) dropped_slow: AtomicU64,
    pub(crate) missed: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("pipeline", &self.pipeline).field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub for `pipeline`'s run.
    pub fn new(pipeline: &str, config: HubConfig, ctx: &RunContext) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(config.client_buffer.max(1));
        Arc::new(Hub {
            pipeline: pipeline.to_owned(),
            started: Instant::now(),
            ctx: ctx.clone(),
            seq: AtomicU64::new(0),
            history: Mutex::new(VecDeque::new()),
            tx,
            outbox: Mutex::default(),
            forwarding: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            bars: Mutex::default(),
            counts: Mutex::default(),
            samples: Mutex::default(),
            sections: Mutex::default(),
            done: AtomicBool::new(false),
            end: Mutex::new(None),
            replay: std::sync::OnceLock::new(),
            clients: AtomicU64::new(0),
            dropped_slow: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            config,
        })
    }

    /// The bounds it was made with.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The pipeline's name.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// Adds one decision (its JSON line) and hands it to every client.
    pub fn publish(&self, line: &str) {
        let fields: Fields<'_> = serde_json::from_str(line).unwrap_or(Fields {
            pipeline: Cow::Borrowed(""),
            key: Cow::Borrowed(""),
            action: Cow::Borrowed(""),
            decided_by: Cow::Borrowed(""),
        });
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        let mut frame = Vec::with_capacity(line.len() + 48);
        // Writing into a Vec cannot fail.
        let _ = write!(frame, "id: {seq}\nevent: decision\ndata: {line}\n\n");
        let entry = Arc::new(Entry {
            seq,
            pipeline: fields.pipeline.into(),
            key: fields.key.into(),
            action: fields.action.into(),
            decided_by: fields.decided_by.into(),
            frame: frame.into(),
            end: false,
        });
        if let Ok(mut h) = self.history.lock() {
            if h.len() >= self.config.history.max(1) {
                h.pop_front();
            }
            h.push_back(Arc::clone(&entry));
        }
        if let Ok(mut c) = self.counts.lock() {
            c.decisions += 1;
        }
        self.send(entry);
    }

    /// Broadcasts what `publish` queued, until the process ends (run by the server).
    pub(crate) async fn forward(self: Arc<Self>) {
        self.forwarding.store(true, Ordering::Release);
        let mut batch = Vec::new();
        loop {
            self.wake.notified().await;
            if let Ok(mut o) = self.outbox.lock() {
                std::mem::swap(&mut *o, &mut batch);
            }
            for entry in batch.drain(..) {
                let _ = self.tx.send(entry);
            }
        }
    }

    /// Adds one bar of `key` (its JSON object), ending at `time`.
    pub fn bar(&self, key: &str, time: u64, json: String) {
        let Ok(mut bars) = self.bars.lock() else { return };
        let ring = match bars.get_mut(key) {
            Some(r) => r,
            None => bars.entry(key.into()).or_default(),
        };
        if ring.len() >= self.config.bars_per_key.max(1) {
            ring.pop_front();
        }
        ring.push_back((time, json.into_boxed_str()));
        drop(bars);
        if let Ok(mut c) = self.counts.lock() {
            c.bars += 1;
        }
    }

    /// Counts one dead letter.
    pub fn dead_letter(&self, reason: &str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.dead.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// Adds a source's counters (sources report as they read).
    pub fn source(&self, stats: &SourceStats) {
        if let Ok(mut c) = self.counts.lock() {
            c.source.add(stats);
        }
    }

    /// The input is replayed at `speed` times its event-time pace.
    pub fn set_replay(&self, speed: f64) {
        let _ = self.replay.set(speed);
    }

    /// The run has finished: no more decisions come. Every client gets `event: end` with the final
    /// counts after the last decision, and its stream closes (so does a later client's, after its
    /// replay).
    pub fn finish(&self) {
        let (source, decisions, dead) = match self.counts.lock() {
            Ok(c) => (c.source, c.decisions, c.dead.values().sum::<u64>()),
            Err(_) => (SourceStats::default(), 0, 0),
        };
        let latest = self.latest();
        let data = serde_json::json!({
            "events_in": source.records(),
            "decisions": decisions,
            "dead_letters": dead,
            "latest": latest,
        });
        let frame = axum::body::Bytes::from(format!("event: end\ndata: {data}\n\n"));
        if let Ok(mut e) = self.end.lock() {
            *e = Some(frame.clone());
        }
        self.done.store(true, Ordering::Release);
        // Through the same path as the decisions, so it reaches each client after the last one.
        let entry = Arc::new(Entry {
            seq: latest,
            pipeline: "".into(),
            key: "".into(),
            action: "".into(),
            decided_by: "".into(),
            frame,
            end: true,
        });
        self.send(entry);
    }

    /// Hands `entry` to every client: through the server's forwarder once one runs, else directly.
    fn send(&self, entry: Arc<Entry>) {
        if self.forwarding.load(Ordering::Acquire) {
            if let Ok(mut o) = self.outbox.lock() {
                o.push(entry);
            }
            self.wake.notify_one();
        } else {
            // No receivers is not an error: nobody is watching.
            let _ = self.tx.send(entry);
        }
    }

    /// The `event: end` frame, once the run has finished.
    pub fn end_frame(&self) -> Option<axum::body::Bytes> {
        self.end.lock().ok().and_then(|e| e.clone())
    }

    /// Adds a section to `/api/stats`.
    pub fn add_section(&self, name: &str, section: StatsSection) {
        if let Ok(mut s) = self.sections.lock() {
            s.push((name.to_owned(), section));
        }
    }

    /// A receiver of every decision published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.tx.subscribe()
    }

    /// The number of the newest decision (0: none yet).
    pub fn latest(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Decisions after `after` still in the history, and how many after it are gone from it.
    pub fn since(&self, after: u64) -> Snapshot {
        let Ok(h) = self.history.lock() else { return Snapshot::default() };
        let oldest = h.front().map_or(self.latest() + 1, |e| e.seq);
        let skip = (after + 1).saturating_sub(oldest) as usize;
        Snapshot {
            entries: h.iter().skip(skip).cloned().collect(),
            lost: oldest.saturating_sub(after + 1),
            upto: h.back().map_or(after, |e| e.seq.max(after)),
        }
    }

    /// The number of the oldest decision the history holds (latest + 1 when it holds none).
    pub fn oldest(&self) -> u64 {
        let held = self.history.lock().ok().and_then(|h| h.front().map(|e| e.seq));
        held.unwrap_or_else(|| self.latest() + 1)
    }

    /// The last `n` decisions that pass `keep`, oldest first.
    pub fn recent(&self, n: usize, keep: impl Fn(&Entry) -> bool) -> Snapshot {
        let Ok(h) = self.history.lock() else { return Snapshot::default() };
        let mut entries: Vec<Arc<Entry>> = h.iter().rev().filter(|e| keep(e)).take(n).cloned().collect();
        entries.reverse();
        Snapshot { entries, lost: 0, upto: h.back().map_or(0, |e| e.seq) }
    }

    /// The keys with bars, sorted.
    pub fn keys(&self) -> Vec<String> {
        let Ok(bars) = self.bars.lock() else { return Vec::new() };
        let mut keys: Vec<String> = bars.keys().map(|k| k.to_string()).collect();
        keys.sort_unstable();
        keys
    }

    /// The last `limit` bars of `key` as a JSON array, oldest first (None: no such key).
    pub fn bars_json(&self, key: &str, limit: usize) -> Option<String> {
        let bars = self.bars.lock().ok()?;
        let ring = bars.get(key)?;
        let mut out = String::from("[");
        for (i, (_, json)) in ring.iter().skip(ring.len().saturating_sub(limit)).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(json);
        }
        out.push(']');
        Some(out)
    }

    /// Records a sample for the rates (called about once a second).
    pub(crate) fn sample(&self) {
        let (events, decisions) = self.counts.lock().map(|c| (c.source.records(), c.decisions)).unwrap_or_default();
        if let Ok(mut s) = self.samples.lock() {
            s.push_back((Instant::now(), events, decisions));
            while s.len() > 6 {
                s.pop_front();
            }
        }
    }

    /// Everything `/api/stats` shows.
    pub fn stats(&self) -> serde_json::Value {
        use serde_json::json;
        let counts = self.counts.lock();
        let (source, decisions, dead, bars) = match &counts {
            Ok(c) => (c.source, c.decisions, c.dead.clone(), c.bars),
            Err(_) => (SourceStats::default(), 0, BTreeMap::new(), 0),
        };
        drop(counts);
        let (events_per_s, decisions_per_s) = self
            .samples
            .lock()
            .ok()
            .and_then(|s| {
                let (first, last) = (s.front()?, s.back()?);
                let secs = last.0.duration_since(first.0).as_secs_f64();
                (secs > 0.0).then(|| ((last.1 - first.1) as f64 / secs, (last.2 - first.2) as f64 / secs))
            })
            .unwrap_or((0.0, 0.0));
        let frontier = self.ctx.clock.low();
        let dead_total: u64 = dead.values().sum();
        let checkpoint = self.ctx.checkpoints.get().and_then(|c| c.last()).map(|c| {
            json!({
                "time": crate::time::Stamp(c.time).to_string(),
                "bytes": c.bytes,
                "duration_ms": c.duration_ms,
                "written_at_ms": c.written_at,
            })
        });
        let mut out = json!({
            "pipeline": self.pipeline,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "events_in": source.records(),
            "events_per_s": events_per_s,
            "decisions": decisions,
            "decisions_per_s": decisions_per_s,
            "frontier": frontier.map(|f| crate::time::Stamp(f).to_string()),
            "lag_seconds": frontier.and(self.ctx.lag_ms()).map(|lag| lag as f64 / 1000.0),
            "operators": [
                {"name": "source", "in": source.records(), "out": source.events, "bytes": source.bytes},
                {"name": "bars", "in": source.events, "out": bars},
                {"name": "decide", "out": decisions},
                {"name": "dead-letter", "in": dead_total},
            ],
            "dead_letters": {"total": dead_total, "by_reason": dead},
            "llm": null,
            "checkpoint": checkpoint,
            "clients": {
                "connected": self.clients.load(Ordering::Relaxed),
                "disconnected_slow": self.dropped_slow.load(Ordering::Relaxed),
                "missed": self.missed.load(Ordering::Relaxed),
            },
            "history": {"first": self.oldest(), "latest": self.latest()},
            "replay_speed": self.replay.get(),
            "done": self.done.load(Ordering::Acquire),
        });
        if let (Ok(sections), Some(obj)) = (self.sections.lock(), out.as_object_mut()) {
            for (name, section) in sections.iter() {
                obj.insert(name.clone(), section());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(history: usize) -> Arc<Hub> {
        Hub::new("trading", HubConfig { history, ..HubConfig::default() }, &RunContext::default())
    }

    #[test]
    fn history_is_bounded_and_resumes_after_an_id() {
        let h = hub(3);
        for i in 0..5 {
            h.publish(&format!(r#"{{"pipeline":"trading","key":"K{i}","action":"BUY","decided_by":"rules"}}"#));
        }
        assert_eq!(h.latest(), 5);
        // 1 and 2 fell out of the history: resuming after 1 loses 2.
        let s = h.since(1);
        assert_eq!((s.lost, s.upto), (1, 5));
        assert_eq!(s.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        let s = h.since(4);
        assert_eq!((s.entries.len(), s.entries[0].seq, s.lost), (1, 5, 0));
        assert_eq!(&*s.entries[0].key, "K4");
        assert!(h.since(5).entries.is_empty());
        assert_eq!(h.oldest(), 3);
        let recent = h.recent(2, |e| &*e.key != "K4");
        assert_eq!(recent.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn a_frame_is_one_sse_event_with_the_line_as_data() {
        let h = hub(10);
        let mut rx = h.subscribe();
        h.publish(r#"{"pipeline":"flight","key":"B1","action":"REBOOK","decided_by":"llm","x":"a\"b"}"#);
        let e = rx.try_recv().unwrap();
        assert_eq!((&*e.pipeline, &*e.key, &*e.action, &*e.decided_by), ("flight", "B1", "REBOOK", "llm"));
        let text = std::str::from_utf8(&e.frame).unwrap();
        assert!(text.starts_with("id: 1\nevent: decision\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 4);
    }

    #[test]
    fn with_a_forwarder_decisions_reach_subscribers_in_order() {
        let h = hub(100);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(async {
            let mut rx = h.subscribe();
            tokio::spawn(h.clone().forward());
            tokio::task::yield_now().await;
            for i in 0..50 {
                h.publish(&format!(r#"{{"key":"K{i}"}}"#));
            }
            let mut got = Vec::new();
            while got.len() < 50 {
                got.push(rx.recv().await.unwrap().seq);
            }
            got
        });
        assert_eq!(got, (1..=50).collect::<Vec<u64>>());
    }

    #[test]
    fn bars_are_a_bounded_ring_per_key() {
        let h = Hub::new("trading", HubConfig { bars_per_key: 2, ..HubConfig::default() }, &RunContext::default());
        for t in 1..=3 {
            h.bar("A/B", t, format!(r#"{{"time":{t}}}"#));
        }
        assert_eq!(h.bars_json("A/B", 10).unwrap(), r#"[{"time":2},{"time":3}]"#);
        assert_eq!(h.bars_json("A/B", 1).unwrap(), r#"[{"time":3}]"#);
        assert!(h.bars_json("C", 10).is_none());
        assert_eq!(h.keys(), vec!["A/B"]);
    }
}
