//! Self-test of the scriptable OpenAI-compatible test server in `tests/support/llm_server.rs`,
//! driven by a tiny raw HTTP/1.1 client over `std::net::TcpStream`.

#![allow(clippy::unwrap_used)] // tests and benches may panic on setup failures

#[path = "support/llm_server.rs"]
mod llm_server;

use llm_server::{LlmServer, Reply, Request, Script, answering, verdict_for};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A parsed HTTP response: status, lower-cased headers, de-chunked body.
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// `http://127.0.0.1:PORT/v1` → `127.0.0.1:PORT`.
fn host_port(base_url: &str) -> String {
    base_url.trim_start_matches("http://").trim_end_matches("/v1").to_string()
}

/// Sends one request and reads the raw response bytes until the server closes the connection.
fn send_raw(server: &LlmServer, method: &str, path: &str, body: &str) -> std::io::Result<Vec<u8>> {
    let host = host_port(&server.base_url());
    let mut conn = TcpStream::connect(&host)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer test-key\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").expect("complete response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    HttpResponse { status, headers, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").expect("CRLF after chunk");
    }
}

fn post(server: &LlmServer, body: &Value) -> HttpResponse {
    parse_response(&send_raw(server, "POST", "/v1/chat/completions", &body.to_string()).unwrap())
}

fn chat_body(user: &str) -> Value {
    json!({
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "You are a trading assistant."},
            {"role": "user", "content": user},
        ],
        "temperature": 0.0,
    })
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").expect("SSE data line").to_string())
        .collect()
}

#[test]
fn verdict_is_deterministic_and_in_bounds() {
    for i in 0..200 {
        let prompt = format!("prompt number {i}");
        let verdict = verdict_for(&prompt);
        assert_eq!(verdict, verdict_for(&prompt));
        let v: Value = serde_json::from_str(&verdict).unwrap();
        assert!(["BUY", "SELL", "HOLD"].contains(&v["action"].as_str().unwrap()), "{verdict}");
        let c = v["confidence"].as_f64().unwrap();
        assert!((0.5..=0.99).contains(&c), "{verdict}");
        assert!(v["reason"].as_str().unwrap().starts_with("test server verdict "), "{verdict}");
    }
    // FNV-1a 64 of "" is the offset basis 0xcbf29ce484222325 = 14695981039346656037.
    let h: u64 = 14_695_981_039_346_656_037;
    let expected = format!(
        r#"{{"action":"{}","reason":"test server verdict {}","confidence":{}}}"#,
        ["BUY", "SELL", "HOLD"][(h % 3) as usize],
        h % 1000,
        (50 + h % 50) as f64 / 100.0
    );
    assert_eq!(verdict_for(""), expected);
}

#[test]
fn content_reply_is_a_chat_completion() {
    let server = LlmServer::start(answering(Duration::ZERO));
    let response = post(&server, &chat_body("BTC is pumping"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let v = response.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-0");
    assert_eq!(v["model"], "test-model");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], verdict_for("BTC is pumping"));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let prompt_chars = "You are a trading assistant.".len() + "BTC is pumping".len();
    assert_eq!(v["usage"]["prompt_tokens"], prompt_chars as u64 / 4);
    assert_eq!(
        v["usage"]["total_tokens"].as_u64().unwrap(),
        v["usage"]["prompt_tokens"].as_u64().unwrap() + v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(server.bodies(), vec![chat_body("BTC is pumping")]);
    assert_eq!(server.auth_headers(), vec![Some("Bearer test-key".to_string())]);
    assert_eq!(server.in_flight(), 0);
}

#[test]
fn stream_reply_is_sse() {
    let script: Script = Arc::new(|_req: &Request| Reply::Content {
        content: "héllo wörld, ünïcode 🚀!".to_string(),
        delay: Duration::ZERO,
    });
    let server = LlmServer::start(script);
    let mut body = chat_body("stream me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post(&server, &body);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let data = sse_data(&response.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String =
        chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str().map(str::to_string)).collect();
    assert_eq!(text, "héllo wörld, ünïcode 🚀!");
    assert_eq!(chunks.len(), 4 + 2, "4 content pieces, the finish chunk and the usage chunk");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-0"));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let usage_chunk = &chunks[chunks.len() - 1];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert!(usage_chunk["usage"]["total_tokens"].as_u64().unwrap() >= 2);
    assert_eq!(server.in_flight(), 0);
}

#[test]
fn scripted_status_raw_reset_and_slow_stream() {
    let script: Script = Arc::new(|req: &Request| match req.user.as_str() {
        "429" => Reply::Status { code: 429, retry_after: Some(1), delay: Duration::ZERO },
        "500" => Reply::Status { code: 500, retry_after: None, delay: Duration::ZERO },
        "raw" => Reply::Raw { body: "{not json".to_string(), delay: Duration::ZERO },
        "reset" => Reply::Reset { delay: Duration::from_millis(10) },
        _ => Reply::SlowStream { content: "slow stream".to_string(), chunk_delay: Duration::from_millis(30) },
    });
    let server = LlmServer::start(script);

    let limited = post(&server, &chat_body("429"));
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.json()["error"]["type"], "rate_limit_error");
    assert!(limited.json()["error"]["message"].is_string());

    let failed = post(&server, &chat_body("500"));
    assert_eq!(failed.status, 500);
    assert_eq!(failed.header("retry-after"), None);

    let raw = post(&server, &chat_body("raw"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, "{not json");

    // A reset never yields a complete response: either no bytes, or a chunked body without its terminator.
    // (An Err from send_raw is a connection reset, which is fine too.)
    if let Ok(bytes) = send_raw(&server, "POST", "/v1/chat/completions", &chat_body("reset").to_string()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("\r\n0\r\n\r\n"), "reset produced a complete response: {text:?}");
    }

    let start = Instant::now();
    let mut body = chat_body("slow");
    body["stream"] = json!(false); // SlowStream streams regardless
    let slow = post(&server, &body);
    assert!(start.elapsed() >= Duration::from_millis(5 * 30), "{:?}", start.elapsed());
    let data = sse_data(&slow.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));

    assert_eq!(server.requests(), 5);
    assert_eq!(server.in_flight(), 0);
    assert_eq!(server.bodies().len(), 5);

    let not_found = parse_response(&send_raw(&server, "POST", "/v1/other", "{}").unwrap());
    assert_eq!(not_found.status, 404);
    let wrong_method = parse_response(&send_raw(&server, "GET", "/v1/chat/completions", "").unwrap());
    assert_eq!(wrong_method.status, 404);
    assert_eq!(server.requests(), 5, "non-chat requests are not counted");
}

#[test]
fn counts_concurrent_requests() {
    let server = Arc::new(LlmServer::start(answering(Duration::from_millis(200))));
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                let response = post(&server, &chat_body(&format!("user {i}")));
                assert_eq!(response.status, 200);
                assert_eq!(response.json()["choices"][0]["message"]["content"], verdict_for(&format!("user {i}")));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(start.elapsed() < Duration::from_millis(700), "requests were not concurrent: {:?}", start.elapsed());
    assert_eq!(server.requests(), 4);
    assert_eq!(server.max_in_flight(), 4);
    assert_eq!(server.in_flight(), 0);
    let mut users: Vec<String> =
        server.bodies().iter().map(|b| b["messages"][1]["content"].as_str().unwrap().to_string()).collect();
    users.sort();
    assert_eq!(users, ["user 0", "user 1", "user 2", "user 3"]);
}

#[test]
fn in_flight_tracks_open_streams_and_drop_does_not_hang() {
    let script: Script = Arc::new(|_req: &Request| Reply::SlowStream {
        content: "x".repeat(40),
        chunk_delay: Duration::from_millis(100),
    });
    let server = LlmServer::start(script);
    let host = host_port(&server.base_url());
    let mut conn = TcpStream::connect(&host).unwrap();
    let body = chat_body("hold the stream open").to_string();
    write!(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.in_flight() == 0 {
        assert!(Instant::now() < deadline, "request never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.in_flight(), 1, "the stream is still open");
    // Drop the server while the stream (and a keep-alive connection) is still open: must not hang.
    let start = Instant::now();
    drop(server);
    assert!(start.elapsed() < Duration::from_secs(2), "drop took {:?}", start.elapsed());
    drop(conn);
}

#[test]
fn in_flight_drops_when_client_disconnects_mid_stream() {
    let script: Script = Arc::new(|_req: &Request| Reply::SlowStream {
        content: "y".repeat(40),
        chunk_delay: Duration::from_millis(50),
    });
    let server = LlmServer::start(script);
    let host = host_port(&server.base_url());
    let mut conn = TcpStream::connect(&host).unwrap();
    let body = chat_body("hang up").to_string();
    write!(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let mut first = [0u8; 16];
    conn.read_exact(&mut first).unwrap();
    assert_eq!(server.in_flight(), 1);
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.in_flight() != 0 {
        assert!(Instant::now() < deadline, "in_flight stayed at {}", server.in_flight());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.max_in_flight(), 1);
}
