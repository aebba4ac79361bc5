//! `--serve`: the live view's API against real runs of the binary: 1,000 clients each get every
//! decision in order, a client that stops reading is told what it missed and then dropped
//! without holding the pipeline back, `Last-Event-ID` resumes, bars and stats agree with the
//! output file, and the token rules hold (no secret in any response).

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;
#[path = "support/llm_server.rs"]
mod llm_server;

use cli::{BIN, free_port, summary_value};
use inflight::live_load::{ClientPlan, connect, many, percentile, read, rss_bytes};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A served run, killed when dropped (it keeps serving after its input ends).
struct Served {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `inflight run …` with `--serve` on a free port and waits until it answers.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let stderr = dir.join(format!("stderr-{}", addr.port()));
            let child = Command::new(BIN)
                .args(args)
                .args(["--serve", &addr.to_string()])
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .unwrap();
            let mut served = Served { child, addr, stderr };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Some(status) = served.child.try_wait().unwrap() {
                    let err = std::fs::read_to_string(&served.stderr).unwrap_or_default();
                    // The probed port was taken meanwhile: try another.
                    if err.contains("Address already in use") {
                        break;
                    }
                    panic!("inflight exited ({status}): {err}");
                }
                if get(addr, "/api/info", None).is_some_and(|(s, _, _)| s == 200 || s == 401) {
                    return served;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("the live view did not come up");
    }

    /// `/api/stats`, waiting until the run is done.
    fn done(&self, token: Option<&str>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, _, body) = get(self.addr, "/api/stats", token).unwrap();
            assert_eq!(status, 200, "{body}");
            let stats: Value = serde_json::from_str(&body).unwrap();
            if stats["done"] == true {
                return stats;
            }
            assert!(Instant::now() < deadline, "the run did not finish: {stats}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// GET `path` (HTTP/1.0, the server closes after the body): (status, head, body).
fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").ok()?;
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

/// Market ticks: `assets` assets, 10 ticks per asset per second of event time, `seconds` long.
fn market(dir: &Path, assets: u64, seconds: u64) -> PathBuf {
    let path = dir.join("market.jsonl");
    let (events, rate) = ((assets * 10 * seconds).to_string(), (assets * 10).to_string());
    let out = Command::new(BIN)
        .args(["gen", "market", "--events", &events, "--assets", &assets.to_string(), "--rate", &rate])
        .args(["-o", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn plan(path: &str) -> ClientPlan {
    ClientPlan {
        path: path.to_owned(),
        until: Arc::new(AtomicU64::new(0)),
        sample: 0,
        measure_from_ms: 0,
        keep_data: false,
        token: None,
    }
}

/// 1,000 clients connect while the trading job replays 100 assets at 10x (1,000 decisions/s);
/// each gets every decision, in order, once; one client's data equals the output file.
#[test]
fn a_thousand_clients_each_get_every_decision_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), 100, 60);
    let out = dir.path().join("out.jsonl");
    let args = ["run", "trading", "--emit", "all", "--input", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let served = Served::start(dir.path(), &[&args[..], &["--replay-speed", "10x"]].concat(), &[]);
    let rss_idle = rss_bytes(Some(served.child.id()));
    let rt = runtime();
    // From id 0: decisions made before a client got connected come from the history.
    let mut p = plan("/api/decisions?last_event_id=0");
    p.sample = 5;
    p.measure_from_ms = inflight::engine::time::wall_millis() + 2_000;
    let until = p.until.clone();
    let clients = rt.spawn(many(served.addr, 1_000, p));
    let mut keep = plan("/api/decisions?last_event_id=0");
    keep.keep_data = true;
    keep.until = until.clone();
    let addr = served.addr;
    let kept = rt.spawn(async move {
        let (s, buf) = connect(addr, &keep).await.unwrap();
        read(s, buf, &keep).await
    });
    // With the clients connected, the process holds their connections.
    std::thread::sleep(Duration::from_secs(3));
    let stats_during: Value = serde_json::from_str(&get(served.addr, "/api/stats", None).unwrap().2).unwrap();
    let rss_clients = rss_bytes(Some(served.child.id()));
    let stats = served.done(None);
    let want = lines(&out);
    assert!(want.len() > 2_000, "the run made decisions: {}", want.len());
    assert_eq!(stats["decisions"].as_u64().unwrap() as usize, want.len(), "{stats}");
    until.store(want.len() as u64, Ordering::Relaxed);
    let reports = rt.block_on(clients).unwrap().unwrap();
    let kept = rt.block_on(kept).unwrap();
    assert_eq!(reports.len(), 1_000);
    for (i, r) in reports.iter().enumerate() {
        assert!(r.in_order, "client {i} got decisions out of order");
        assert_eq!((r.first, r.last, r.received, r.missed), (1, want.len() as u64, want.len() as u64, 0), "client {i}");
    }
    let mut got = kept.data.clone();
    let mut want_sorted = want.clone();
    got.sort();
    want_sorted.sort();
    assert!(got == want_sorted, "the stream carries exactly the lines written to the output");
    let mut delays: Vec<u64> = reports.iter().flat_map(|r| r.delays_ms.iter().copied()).collect();
    delays.sort_unstable();
    assert!(!delays.is_empty(), "some decisions were delivered live");
    eprintln!(
        "1,000 clients: {} decisions each; delivery delay p50 {} ms, p99 {} ms, max {} ms ({} samples); \
         clients connected {}; memory {:.1} MB idle, {:.1} MB with clients ({:.1} KB per client)",
        want.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().unwrap(),
        delays.len(),
        stats_during["clients"]["connected"],
        rss_idle as f64 / 1e6,
        rss_clients as f64 / 1e6,
        rss_clients.saturating_sub(rss_idle) as f64 / 1e3 / 1_001.0
    );
    assert_eq!(stats_during["clients"]["connected"], 1_001, "{stats_during}");
    // The lag of a replay is against the replay clock, not the wall clock (the data is from 2024).
    let lag = stats_during["lag_seconds"].as_f64().unwrap();
    assert!((0.0..30.0).contains(&lag), "lag during a 10x replay: {lag} s");
    assert_eq!(stats_during["replay_speed"], 10.0, "{stats_during}");
    // Paced: 60 s of event time at 10x cannot be read in much less than 6 s.
    let elapsed = summary_value(&served.stderr(), "elapsed");
    assert!(elapsed >= 5.0, "the replay took {elapsed} s");
}

/// A client that stops reading: the pipeline goes on (another client gets everything), the slow
/// one is told how many it missed when it reads again, and once it stays behind it is dropped.
#[test]
fn a_client_that_stops_reading_is_told_and_dropped_and_holds_nothing_up() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), 100, 70);
    let out = dir.path().join("out.jsonl");
    let args = ["run", "trading", "--emit", "all", "--input", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let tuning = ["--replay-speed", "10x", "--serve-client-buffer", "200", "--serve-slow-after", "2s"];
    let served = Served::start(dir.path(), &[&args[..], &tuning[..]].concat(), &[]);
    let addr = served.addr;
    let rt = runtime();
    let fast_plan = plan("/api/decisions?last_event_id=0");
    let until = fast_plan.until.clone();
    let fast = rt.spawn(async move {
        let (s, buf) = connect(addr, &fast_plan).await.unwrap();
        read(s, buf, &fast_plan).await
    });
    // The slow client: a small receive window, so its socket fills after a few decisions.
    let mut slow = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        use tokio::io::AsyncWriteExt;
        s.write_all(format!("GET /api/decisions HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
        s
    });
    // Wait for decisions to flow, then stop reading for longer than the buffer holds.
    let deadline = Instant::now() + Duration::from_secs(60);
    while served_latest(&served) < 100 {
        assert!(Instant::now() < deadline, "no decisions: {}", served.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    // Read again for a while: the missed-events notice comes.
    let (mut slow, seen) = rt.block_on(async move {
        use tokio::io::AsyncReadExt;
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        let end = tokio::time::Instant::now() + Duration::from_millis(1_000);
        while let Ok(Ok(n)) = tokio::time::timeout_at(end, slow.read(&mut chunk)).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&chunk[..n]);
        }
        (slow, seen)
    });
    let text = String::from_utf8_lossy(&seen);
    let notice = text.split("event: missed\ndata: ").nth(1).expect("a missed-events notice");
    let missed: Value = serde_json::from_str(notice.lines().next().unwrap()).unwrap();
    assert!(missed["missed"].as_u64().unwrap() > 0, "{missed}");
    // Now it stops for good: within a few seconds it is disconnected.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats: Value = serde_json::from_str(&get(addr, "/api/stats", None).unwrap().2).unwrap();
        if stats["clients"]["disconnected_slow"].as_u64().unwrap() >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the slow client was not disconnected: {stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // What was in flight drains, then the connection is closed by the server.
    let closed = rt.block_on(async move {
        use tokio::io::AsyncReadExt;
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), slow.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    });
    assert!(closed, "the server closed the slow client's connection");
    // The pipeline was never held up: the fast client got every decision.
    let stats = served.done(None);
    let want = lines(&out).len() as u64;
    assert_eq!(stats["decisions"].as_u64().unwrap(), want);
    until.store(want, Ordering::Relaxed);
    let fast = rt.block_on(fast).unwrap();
    assert!(fast.in_order);
    assert_eq!((fast.first, fast.last, fast.received, fast.missed), (1, want, want, 0));
}

fn served_latest(served: &Served) -> u64 {
    get(served.addr, "/api/stats", None)
        .and_then(|(_, _, b)| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| v["history"]["latest"].as_u64())
        .unwrap_or(0)
}

/// After the run: `Last-Event-ID` resumes after an id, a history too short says what is lost,
/// filters apply, and bars and stats agree with the output file.
#[test]
fn resume_filters_bars_and_stats_agree_with_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let args = ["run", "trading", "--emit", "all", "-o", out.to_str().unwrap(), "--serve-history", "50"];
    let served = Served::start(dir.path(), &args, &[]);
    let stats = served.done(None);
    let want = lines(&out);
    let n = want.len() as u64;
    assert!(n > 100);
    assert_eq!(stats["decisions"].as_u64().unwrap(), n);
    // The counters came through the dataflow; the run's own summary is the reference.
    let summary = served.stderr();
    assert_eq!(stats["dead_letters"]["total"].as_u64(), Some(summary_count(&summary, "dead-lettered")), "{stats}");
    assert_eq!(stats["events_in"].as_u64(), Some(summary_count(&summary, "events in")), "{stats}");
    let rt = runtime();
    let read_all = |path: String, header: Option<String>| {
        let addr = served.addr;
        rt.block_on(async move {
            let mut p = plan(&path);
            p.keep_data = true;
            p.until.store(n, Ordering::Relaxed);
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::AsyncWriteExt;
            let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{extra}\r\n").as_bytes()).await.unwrap();
            // Headers and stream are read together; the report starts at the first id.
            read(s, Vec::new(), &p).await
        })
    };
    // The last 10 by Last-Event-ID.
    let r = read_all("/api/decisions".into(), Some(format!("Last-Event-ID: {}", n - 10)));
    assert_eq!((r.first, r.last, r.received, r.missed), (n - 9, n, 10, 0));
    // The same lines as the output file (within one event time the file sink orders them its own
    // way).
    let (mut got, mut tail) = (r.data.clone(), want[want.len() - 10..].to_vec());
    got.sort();
    tail.sort();
    assert_eq!(got, tail, "the same lines as the output file");
    // From the start: only 50 are kept, the rest is reported missed.
    let r = read_all("/api/decisions?last_event_id=0".into(), None);
    assert_eq!((r.first, r.received, r.missed), (n - 49, 50, n - 50));
    // A filter and a replay of recent history. The reader stops at decision n, so the filter is
    // the newest decision's action and key (publication order within an event time is the workers'
    // own, the newest is known from the stream above).
    let newest: Value = serde_json::from_str(r.data.last().unwrap()).unwrap();
    let (action, key) = (newest["action"].as_str().unwrap(), newest["key"].as_str().unwrap());
    let r = read_all(format!("/api/decisions?action={action}&key={key}&history=5"), None);
    assert!(r.received >= 1 && r.received <= 5);
    for d in &r.data {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!((v["action"].as_str(), v["key"].as_str()), (Some(action), Some(key)));
    }
    // The same filter in lower case finds the same decisions; a misspelt parameter is a 400.
    let lower = read_all(format!("/api/decisions?action={}&key={key}&history=5", action.to_lowercase()), None);
    assert_eq!(lower.data, r.data, "?action= matches in any case");
    for bad in ["/api/decisions?actoin=BUY", "/api/keys/BTC%2FUSD/bars?limt=3"] {
        let (status, _, body) = get(served.addr, bad, None).unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("unknown field"), "{bad}: {body}");
    }
    // Bars: the closes of the last bars agree with the decisions' evidence.
    let (status, _, keys) = get(served.addr, "/api/keys", None).unwrap();
    assert_eq!(status, 200);
    let keys: Vec<String> = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys, ["ADA/USD", "BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD"]);
    let (status, _, bars) = get(served.addr, "/api/keys/BTC%2FUSD/bars?limit=20", None).unwrap();
    assert_eq!(status, 200);
    let bars: Vec<Value> = serde_json::from_str(&bars).unwrap();
    assert_eq!(bars.len(), 20);
    let btc: Vec<Value> =
        want.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|d| d["key"] == "BTC/USD").collect();
    let last = btc.last().unwrap();
    let bar = bars.last().unwrap();
    assert_eq!(bar["close"], last["evidence"]["bar"]["close"]);
    assert_eq!(bar["rsi"], last["evidence"]["rsi"]);
    assert_eq!(bar["macd"]["histogram"], last["evidence"]["macd"]["histogram"]);
    assert!(bars.windows(2).all(|w| w[0]["time"].as_u64() < w[1]["time"].as_u64()), "bars in time order");
    assert_eq!(get(served.addr, "/api/keys/NOPE/bars", None).unwrap().0, 404);
    // Ctrl-C on the finished run's view closes it, without claiming to close windows.
    let mut served = served;
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while served.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the view did not close on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = served.stderr();
    assert!(err.contains("inflight: closing the live view") && !err.contains("closing windows"), "{err}");
}

/// A non-loopback address needs a token; with one, every request needs it; no response carries
/// the token or the LLM API key.
#[test]
fn the_token_guards_every_request_and_no_secret_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    // Refused before anything starts, with one line.
    for (extra, want) in [
        (vec!["--serve", "0.0.0.0:0"], "needs --serve-token"),
        (vec!["--serve", "127.0.0.1:0", "--serve-token", ""], "must not be empty"),
        (vec!["--serve-token", "x"], "--serve-token is for --serve"),
        (vec!["--serve", "127.0.0.1:0", "--replay-speed", "0x"], "not a speed"),
        (vec!["--serve", "127.0.0.1:0", "--input", "-", "--replay-speed", "2x"], "paces a file input"),
    ] {
        let o = Command::new(BIN).args(["run", "trading", "-o", out.to_str().unwrap()]).args(&extra).output().unwrap();
        assert!(!o.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        // One line (clap adds its "For more information" hint to flag errors).
        let lines: Vec<&str> =
            err.lines().filter(|l| !l.is_empty() && !l.starts_with("For more information")).collect();
        assert!(lines.len() == 1 && lines[0].contains(want), "{extra:?}: {err}");
    }
    let token = "tok-3f9a1c-very-secret";
    let key = "sk-live-KEY-must-never-show";
    // The LLM stage on, against a local OpenAI-compatible server, with an API key to keep secret.
    let llm = llm_server::LlmServer::start(llm_server::answering(Duration::ZERO));
    let base = llm.base_url();
    let llm_args = ["--llm", "--llm-base-url", &base, "--llm-min-confidence", "1"];
    let args = ["run", "trading", "-o", out.to_str().unwrap(), "--serve-token", token];
    let served = Served::start(dir.path(), &[&args[..], &llm_args[..]].concat(), &[("OPENAI_API_KEY", key)]);
    let addr = served.addr;
    let paths = ["/", "/assets/app.js", "/api/info", "/api/stats", "/api/keys", "/api/decisions?history=5"];
    for path in paths {
        assert_eq!(get(addr, path, None).unwrap().0, 401, "{path} without a token");
        assert_eq!(get(addr, path, Some("wrong")).unwrap().0, 401, "{path} with a wrong token");
    }
    assert_eq!(get(addr, &format!("/api/info?token={token}x"), None).unwrap().0, 401);
    let stats = served.done(Some(token));
    assert!(stats["llm"]["calls"].as_u64().unwrap() > 0, "the LLM stage was called: {stats}");
    assert!(llm.auth_headers().iter().any(|h| h.as_deref() == Some(&format!("Bearer {key}"))), "the key was used");
    let mut everything = String::new();
    for path in ["/", "/assets/app.js", "/api/info", "/api/stats", "/api/keys", "/api/keys/BTC%2FUSD/bars"] {
        let (status, head, body) = get(addr, path, Some(token)).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        everything.push_str(&head);
        everything.push_str(&body);
    }
    // The page opened with ?token= gets a session cookie (not the token) that then works alone.
    let (status, head, body) = get(addr, &format!("/?token={token}"), None).unwrap();
    assert_eq!(status, 200);
    everything.push_str(&head);
    everything.push_str(&body);
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let with_cookie = |path: &str| -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n").unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        (reply.split_whitespace().nth(1).unwrap().parse().unwrap(), reply)
    };
    let (status, reply) = with_cookie("/api/stats");
    assert_eq!(status, 200, "{reply}");
    everything.push_str(&reply);
    // The stream, with the token as a bearer.
    let rt = runtime();
    let mut p = plan("/api/decisions?history=20");
    p.token = Some(token.to_owned());
    p.keep_data = true;
    let latest = served_latest_with(addr, token);
    p.until.store(latest, Ordering::Relaxed);
    let r = rt.block_on(async move {
        let (s, buf) = connect(addr, &p).await.unwrap();
        read(s, buf, &p).await
    });
    assert_eq!(r.received, 20);
    everything.push_str(&r.data.join("\n"));
    assert!(!everything.contains(token), "a response carries the token");
    assert!(!everything.contains(key), "a response carries the API key");
    assert!(!served.stderr().contains(token) && !served.stderr().contains(key), "the log carries a secret");
}

fn served_latest_with(addr: SocketAddr, token: &str) -> u64 {
    let (_, _, body) = get(addr, "/api/stats", Some(token)).unwrap();
    serde_json::from_str::<Value>(&body).unwrap()["history"]["latest"].as_u64().unwrap()
}

fn summary_count(stderr: &str, label: &str) -> u64 {
    summary_value(stderr, label) as u64
}

/// A client connected during the run gets every decision, then `event: end` with the final
/// counts, and the stream closes; a client connecting after the run gets the replay, the same
/// end, and a closed stream too.
#[test]
fn a_finished_run_ends_every_stream_with_its_final_counts() {
    let dir = tempfile::tempdir().unwrap();
    let input = market(dir.path(), 20, 60);
    let out = dir.path().join("out.jsonl");
    let args = ["run", "trading", "--emit", "all", "--input", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let served = Served::start(dir.path(), &[&args[..], &["--replay-speed", "10x"]].concat(), &[]);
    let rt = runtime();
    let mut p = plan("/api/decisions?last_event_id=0");
    p.keep_data = true;
    let addr = served.addr;
    let during = rt.spawn(async move {
        let (s, buf) = connect(addr, &p).await.unwrap();
        read(s, buf, &p).await
    });
    let stats = served.done(None);
    let want = lines(&out);
    assert!(want.len() > 100, "the run made decisions: {}", want.len());
    let check = |what: &str, r: &inflight::live_load::ClientReport| {
        let (end, before) = r.end.clone().unwrap_or_else(|| panic!("{what}: no event: end ({} decisions)", r.received));
        assert!(r.closed_by_server, "{what}: the stream stays open after the end");
        assert_eq!(before, want.len() as u64, "{what}: every decision comes before the end");
        let (mut got, mut lines) = (r.data.clone(), want.clone());
        got.sort();
        lines.sort();
        assert!(got == lines, "{what}: the decisions are the output file's");
        assert_eq!(end["decisions"].as_u64(), Some(want.len() as u64), "{what}: {end}");
        assert_eq!(end["latest"].as_u64(), Some(want.len() as u64), "{what}: {end}");
        assert_eq!(end["events_in"], stats["events_in"], "{what}: {end}");
        assert_eq!(end["dead_letters"], stats["dead_letters"]["total"], "{what}: {end}");
    };
    let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), during).await }).unwrap().unwrap();
    check("connected during the run", &r);
    let mut p = plan("/api/decisions?last_event_id=0");
    p.keep_data = true;
    let after = rt.block_on(async move {
        let (s, buf) = connect(addr, &p).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), read(s, buf, &p)).await.unwrap()
    });
    check("connected after the run", &after);
}
