//! `--metrics-addr`: a live run serves Prometheus text and a JSON health report whose counters
//! agree with the run's own summary.

#![allow(clippy::unwrap_used)]

#[path = "support/cli.rs"]
mod cli;

use cli::{BIN, free_port, inflight, summary_value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// GET `path` from `port` on 127.0.0.1 (HTTP/1.0, so the server closes after the body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The samples of a Prometheus text page by name and labels (`name{a="b"}`), checking the
/// format with an independent parser.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the page is Prometheus text");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let name = if labels.is_empty() { s.metric } else { format!("{}{{{}}}", s.metric, labels.join(",")) };
        out.insert(name, value);
    }
    out
}

#[test]
fn a_live_run_serves_metrics_that_agree_with_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("decisions.jsonl");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["run", "trading", "-i", "-", "-o", out.to_str().unwrap(), "--metrics-addr", &addr])
        .args(["--dead-letter", dir.path().join("dead.jsonl").to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The sample (which has bad lines of its own), then three malformed lines and an invalid one
    // (negative price); stdin stays open.
    let sample = std::fs::read_to_string("data/market-sample.jsonl").unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(sample.as_bytes()).unwrap();
    stdin.write_all(b"{not json\n[]\n{\"asset\":\"X\"}\n").unwrap();
    stdin
        .write_all(b"{\"asset\":\"BTC/USD\",\"price\":-1,\"volume\":1,\"timestamp\":\"2024-01-07T12:00:00Z\"}\n")
        .unwrap();
    stdin.flush().unwrap();
    let read = (sample.lines().count() + 4) as u64;

    // Wait until the run has read everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        if let Some((200, body)) = get(port, "/health") {
            let h: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
            if h["records_read"].as_u64() == Some(read) {
                break h;
            }
        }
        assert!(Instant::now() < deadline, "the run never reported {read} records read");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health["ready"], true);
    assert!(health["frontier"].as_str().unwrap().starts_with("2024-01-07T"), "{health}");
    assert!(health["lag_seconds"].as_f64().unwrap() > 0.0, "{health}");
    assert_eq!(health["failures"], serde_json::json!([]));

    let (status, page) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    let live = samples(&page);
    assert_eq!(live["inflight_ready"], 1.0);
    let dead = |reason: &str| live.get(&format!("inflight_dead_letters_total{{reason=\"{reason}\"}}")).copied();
    let (malformed, invalid) = (dead("malformed").unwrap_or(0.0), dead("invalid").unwrap_or(0.0));
    assert_eq!(live["inflight_events_in_total"] + malformed + invalid, read as f64, "{page}");
    assert!(live["inflight_frontier_lag_seconds"] > 0.0);
    assert!(page.contains("inflight_latency_seconds"), "latency histogram: {page}");
    assert_eq!(get(port, "/nothing").unwrap().0, 404);

    // End the input: the summary's counts match what was scraped (outputs can only have grown,
    // as the last windows close at the end of input).
    drop(stdin);
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    // The summary's "events in" counts every record read, good or bad.
    assert_eq!(summary_value(&stderr, "events in"), live["inflight_events_in_total"] + malformed + invalid);
    assert_eq!(summary_value(&stderr, "dead-lettered"), malformed + invalid);
    // And the dead letters written agree, reason by reason.
    let written = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    let count = |reason: &str| written.lines().filter(|l| l.contains(&format!("\"reason\":\"{reason}\""))).count();
    assert_eq!((count("malformed") as f64, count("invalid") as f64), (malformed, invalid));
    assert!(malformed >= 3.0 && invalid >= 1.0, "the lines sent are counted: {malformed} {invalid}");
    let outputs = summary_value(&stderr, "decisions out");
    let scraped = live.get("inflight_outputs_total").copied().unwrap_or(0.0);
    assert!(scraped <= outputs && outputs > 0.0, "scraped {scraped}, summary {outputs}");
    assert!(!stderr.contains("OPENAI") && !stderr.contains("sk-"), "no keys in logs");
}

#[test]
fn a_taken_or_malformed_metrics_address_exits_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = inflight(&["run", "trading", "-o", "/dev/null", "--metrics-addr", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("cannot listen on {addr} for metrics")), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let out = inflight(&["run", "trading", "--metrics-addr", "localhost"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-addr"));
}

#[test]
fn logs_can_be_json_lines() {
    let out = Command::new(BIN)
        .args(["--log-format", "json", "run", "trading", "-o", "/dev/null", "--dead-letter", "/dev/null"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logged: Vec<serde_json::Value> =
        stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!logged.is_empty(), "info logs as JSON: {stderr}");
    assert!(logged.iter().all(|l| l["level"].is_string() && l["fields"].is_object()), "{stderr}");
}
