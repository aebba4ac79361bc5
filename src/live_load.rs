//! A load client for the live view's decision stream: many SSE connections at once, each checking
//! that it gets every decision in order and timing delivery (receive time minus `decided_at`).
//! Used by `inflight bench live` and the tests. It speaks just enough HTTP/1.0 to read one stream
//! (the server then ends the body by closing, so no chunked decoding is needed); a general client
//! such as reqwest costs several times more CPU per byte, which the pipeline shares.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one client saw.
#[derive(Clone, Debug, Default)]
pub struct ClientReport {
    /// Decisions received.
    pub received: u64,
    /// The first and last SSE ids.
    pub first: u64,
    /// The last SSE id.
    pub last: u64,
    /// Every id was the one before plus one.
    pub in_order: bool,
    /// Decisions the server said this client missed.
    pub missed: u64,
    /// Delivery delays in ms of the sampled decisions decided after `measure_from_ms`.
    pub delays_ms: Vec<u64>,
    /// The `data:` lines, when asked to keep them.
    pub data: Vec<String>,
    /// The server closed the stream (rather than the client stopping at `until`).
    pub closed_by_server: bool,
    /// The `event: end` data (the run's final counts), and how many decisions came before it.
    pub end: Option<(serde_json::Value, u64)>,
}

/// How a client reads.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    /// Path and query, e.g. `/api/decisions?last_event_id=0`.
    pub path: String,
    /// Stop after the decision with this id (0: not known yet, read on; it may be set later,
    /// e.g. once the run has finished and its last id is known).
    pub until: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Time every `sample`-th decision (0: none).
    pub sample: u64,
    /// Only decisions decided at or after this wall-clock ms are timed (not the replayed ones).
    pub measure_from_ms: u64,
    /// Keep the data lines.
    pub keep_data: bool,
    /// A bearer token to send.
    pub token: Option<String>,
}

/// Connects and sends the request; returns once the response headers are in (the stream is
/// established), with the bytes read past them.
pub async fn connect(addr: SocketAddr, plan: &ClientPlan) -> std::io::Result<(tokio::net::TcpStream, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let auth = plan.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET {} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{auth}\r\n", plan.path);
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(8192);
    loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before the headers"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
                let status = head.lines().next().unwrap_or_default().to_owned();
                return Err(std::io::Error::other(format!("stream refused: {status}")));
            }
            return Ok((s, buf.split_off(end + 4)));
        }
    }
}

/// Reads the stream of `connect` as `plan` says.
pub async fn read(mut s: tokio::net::TcpStream, mut buf: Vec<u8>, plan: &ClientPlan) -> ClientReport {
    let mut r = ClientReport { in_order: true, ..ClientReport::default() };
    let mut chunk = vec![0u8; 64 << 10];
    let (mut event_missed, mut event_end) = (false, false);
    loop {
        // Whole lines only; the rest waits for more bytes.
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..]) {
            let line = &buf[start..start + nl];
            start += nl + 1;
            if let Some(id) = line.strip_prefix(b"id: ") {
                let id: u64 = std::str::from_utf8(id).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
                if r.received > 0 && id != r.last + 1 {
                    r.in_order = false;
                }
                if r.received == 0 {
                    r.first = id;
                }
                r.last = id;
                r.received += 1;
            } else if line == b"event: missed" {
                event_missed = true;
            } else if line == b"event: end" {
                event_end = true;
            } else if let Some(data) = line.strip_prefix(b"data: ") {
                if event_end {
                    event_end = false;
                    r.end = Some((serde_json::from_slice(data).unwrap_or_default(), r.received));
                    continue;
                }
                if event_missed {
                    event_missed = false;
                    let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
                    r.missed += v["missed"].as_u64().unwrap_or(0);
                    continue;
                }
                if plan.sample > 0 && r.received % plan.sample == 0 {
                    if let Some(ms) = decided_at(data).filter(|ms| *ms >= plan.measure_from_ms) {
                        r.delays_ms.push(crate::engine::time::wall_millis().saturating_sub(ms));
                    }
                }
                if plan.keep_data {
                    r.data.push(String::from_utf8_lossy(data).into_owned());
                }
            }
        }
        buf.drain(..start);
        let until = plan.until.load(std::sync::atomic::Ordering::Relaxed);
        if until > 0 && r.last >= until {
            return r;
        }
        // A timeout only to look at `until` again.
        match tokio::time::timeout(std::time::Duration::from_millis(200), s.read(&mut chunk)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => {
                r.closed_by_server = true;
                return r;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The `decided_at` of a decision's JSON, ms since the epoch.
fn decided_at(data: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"decided_at\":\"";
    let at = memchr::memmem::find(data, KEY)? + KEY.len();
    let end = memchr::memchr(b'"', &data[at..])? + at;
    crate::engine::time::parse_rfc3339(std::str::from_utf8(&data[at..end]).ok()?).ok()
}

/// Opens `n` clients at once (each waits for its response headers) and then reads them all;
/// returns their reports once every one has finished.
pub async fn many(addr: SocketAddr, n: usize, plan: ClientPlan) -> std::io::Result<Vec<ClientReport>> {
    let mut streams = Vec::with_capacity(n);
    // Connecting in waves keeps the listen backlog from overflowing.
    for wave in (0..n).collect::<Vec<_>>().chunks(100) {
        let opened = futures_util::future::join_all(wave.iter().map(|_| connect(addr, &plan))).await;
        for s in opened {
            streams.push(s?);
        }
    }
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(s, buf)| {
            let plan = plan.clone();
            tokio::spawn(async move { read(s, buf, &plan).await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.map_err(std::io::Error::other)?);
    }
    Ok(out)
}

/// Percentile `q` of sorted `v` (0 when empty).
pub fn percentile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}
