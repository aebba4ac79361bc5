//! The live page in a real browser: `inflight run <pipeline> --serve` replays a sample while
//! headless Chromium (driven by tests/browser/view.mjs through playwright-core) opens the page and
//! waits until it shows decisions (and, for trading, candles, RSI and MACD on canvases), with no
//! console or page errors; it leaves a full-page screenshot in the target directory
//! (live-view-<pipeline>.png).
//!
//! Needs /usr/bin/chromium (or $INFLIGHT_CHROMIUM), Node and `npm ci --prefix tests/browser`.
//! Without them the tests say "skipped" and pass, unless INFLIGHT_REQUIRE_BROWSER is set (as CI
//! does), which makes them fail instead.

#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "support/cli.rs"]
mod cli;

use cli::{BIN, free_port};
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One browser and one pipeline at a time: the tests share few cores, and the page's 30 s waits
/// should not be spent waiting for CPU.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the screenshots go: the target directory.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir), // an absolute path replaces the root
        None => root().join("target"),
    }
}

/// Why the browser test cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    let chromium =
        std::env::var_os("INFLIGHT_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.is_file() {
        return Some(format!(
            "no Chromium at {} (apt-get install chromium, or set INFLIGHT_CHROMIUM)",
            chromium.display()
        ));
    }
    if !root().join("tests/browser/node_modules/playwright-core").is_dir() {
        return Some(
            "tests/browser/node_modules/playwright-core is missing (run `npm ci --prefix tests/browser`)".into(),
        );
    }
    if !Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some("no `node` on PATH".into());
    }
    None
}

/// True when the test can run; otherwise says loudly why not (or fails, when
/// INFLIGHT_REQUIRE_BROWSER is set).
fn browser_available() -> bool {
    let Some(why) = missing_tools() else { return true };
    if std::env::var_os("INFLIGHT_REQUIRE_BROWSER").is_some() {
        panic!("INFLIGHT_REQUIRE_BROWSER is set but the browser test cannot run: {why}");
    }
    eprintln!(
        "\n*** live_browser skipped: {why} ***\n*** (set INFLIGHT_REQUIRE_BROWSER=1 to make this a failure) ***\n"
    );
    false
}

/// GET `path` from `port` on 127.0.0.1 (HTTP/1.0, so the server closes after the body): the status.
fn status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    let head = String::from_utf8_lossy(&reply);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A running `inflight run … --serve`, killed when dropped (also when the test panics).
struct Served {
    child: Child,
    port: u16,
    stderr: PathBuf,
}

impl Served {
    /// Starts `inflight run <args> --serve 127.0.0.1:<free port>` and waits until
    /// /api/info answers 200. A port taken between our probe and the server's bind is retried.
    fn start(dir: &Path, args: &[&str]) -> Served {
        for attempt in 0..3 {
            let port = free_port();
            let stderr = dir.join(format!("inflight-{attempt}.stderr"));
            let child = Command::new(BIN)
                .current_dir(root())
                .arg("run")
                .args(args)
                .args(["--serve", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&stderr).unwrap())
                .spawn()
                .unwrap();
            let mut served = Served { child, port, stderr };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if status(port, "/api/info") == Some(200) {
                    return served;
                }
                if let Some(exit) = served.child.try_wait().unwrap() {
                    let log = served.log();
                    if log.contains("in use") {
                        break; // next port
                    }
                    panic!("inflight run {args:?} --serve exited ({exit}) before serving /api/info:\n{log}");
                }
                assert!(Instant::now() < deadline, "/api/info never answered 200 in 60 s:\n{}", served.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("no free loopback port for --serve in 3 tries");
    }

    /// What the run wrote to stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `pipeline` (with `run_args`), has view.mjs check the page (with `view_args`), and
/// returns view.mjs's JSON summary. The screenshot is target/live-view-<pipeline>.png.
fn view(pipeline: &str, run_args: &[&str], view_args: &[&str]) -> serde_json::Value {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let mut args = vec![pipeline];
    args.extend_from_slice(run_args);
    args.extend_from_slice(&["--replay-speed", "20x", "-o", out.to_str().unwrap()]);
    let mut served = Served::start(dir.path(), &args);

    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    let png = target.join(format!("live-view-{pipeline}.png"));
    let _ = std::fs::remove_file(&png);
    let url = format!("http://127.0.0.1:{}/", served.port);
    let (stdout_path, stderr_path) = (dir.path().join("view.stdout"), dir.path().join("view.stderr"));
    let mut node = Command::new("node")
        .current_dir(root())
        .arg("tests/browser/view.mjs")
        .args([url.as_str(), png.to_str().unwrap(), pipeline])
        .args(view_args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // view.mjs has its own 30 s waits; this only guards against a hung browser.
    let deadline = Instant::now() + Duration::from_secs(180);
    let exit = loop {
        if let Some(exit) = node.try_wait().unwrap() {
            break Some(exit);
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let inflight_log = served.stderr.clone();
    let report = || {
        let log = std::fs::read_to_string(&inflight_log).unwrap_or_default();
        format!("view.mjs stdout:\n{stdout}\nview.mjs stderr:\n{stderr}\ninflight stderr:\n{log}")
    };
    let exit = exit.unwrap_or_else(|| panic!("view.mjs did not finish in 180 s\n{}", report()));
    assert!(exit.success(), "view.mjs failed ({exit}) on {url}\n{}", report());
    eprint!("{stderr}");

    // The run is still serving, or ended well.
    if let Some(exit) = served.child.try_wait().unwrap() {
        assert!(exit.success(), "inflight failed ({exit}) while the page was open:\n{}", served.log());
    }
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10 * 1024, "the screenshot {} is {size} bytes (want > 10 KB)", png.display());
    eprintln!("{pipeline}: {} ({} KB)", png.display(), size / 1024);

    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_else(|| panic!("{}", report()));
    let summary: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {line}\n{}", report()));
    eprintln!("{pipeline}: {summary}");
    drop(served); // killed here
    summary
}

fn count(summary: &serde_json::Value, key: &str) -> f64 {
    summary[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {summary}"))
}

#[test]
fn the_page_shows_live_decisions_and_charts_in_chromium() {
    if !browser_available() {
        return;
    }
    let summary = view("trading", &["--emit", "all"], &[]);
    assert!(count(&summary, "rows") >= 5.0, "{summary}");
    for key in ["candles", "rsiPoints", "macdPoints"] {
        assert!(count(&summary, key) > 0.0, "{key}: {summary}");
    }
}

#[test]
fn the_page_shows_live_flight_decisions_in_chromium() {
    if !browser_available() {
        return;
    }
    let summary = view("flight", &[], &["--min-rows", "1"]);
    assert!(count(&summary, "rows") >= 1.0, "{summary}");
}

#[test]
fn the_page_shows_live_code_decisions_in_chromium() {
    if !browser_available() {
        return;
    }
    let summary = view("code", &[], &["--min-rows", "1"]);
    assert!(count(&summary, "rows") >= 1.0, "{summary}");
}
