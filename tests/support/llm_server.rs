//! A scriptable, OpenAI-compatible chat-completions HTTP server for tests and benches only.
//!
//! [`LlmServer::start`] binds `127.0.0.1:0` (loopback only, a random free port) and serves
//! `POST /v1/chat/completions` from a background thread with its own tokio runtime, so plain
//! synchronous `#[test]`s can use it. Every request is answered by a [`Script`]: a closure from
//! the parsed [`Request`] to a [`Reply`] (a completion, an HTTP error, a malformed body, a
//! connection reset or a slow SSE stream). The server records request counts, bodies,
//! `Authorization` headers and how many requests were in flight at once.
//!
//! Include it with `#[path = "support/llm_server.rs"] mod llm_server;`.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::stream;
use serde_json::{Value, json};

/// Decides the reply to each chat-completion request.
pub type Script = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// One chat-completion request, as seen by a [`Script`].
#[derive(Debug, Clone)]
pub struct Request {
    /// 0-based arrival index among all chat-completion requests.
    pub n: u64,
    /// The parsed request body.
    pub body: Value,
    /// Content of the last message with role `"user"` (`""` if none).
    pub user: String,
    /// Whether the body has `"stream": true`.
    pub stream: bool,
}

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A normal completion whose assistant message content is `content`, after `delay`. If the request
    /// asked for `stream: true`, it is sent as SSE instead, with no delay between chunks.
    Content {
        /// The assistant message content.
        content: String,
        /// Wait before answering.
        delay: Duration,
    },
    /// An HTTP error status with an OpenAI-style JSON error body, an optional `Retry-After: <seconds>`
    /// header, after `delay`.
    Status {
        /// The HTTP status code.
        code: u16,
        /// Value of the `Retry-After` header, in seconds, if any.
        retry_after: Option<u64>,
        /// Wait before answering.
        delay: Duration,
    },
    /// HTTP 200 with this exact raw body and content-type `application/json`, after `delay`.
    Raw {
        /// The response body, sent verbatim.
        body: String,
        /// Wait before answering.
        delay: Duration,
    },
    /// Abort the connection without a complete response after `delay` (a 200 whose streaming body fails
    /// at once, so hyper aborts the connection and the client sees a connection or body error).
    Reset {
        /// Wait before aborting.
        delay: Duration,
    },
    /// A completion cut off at the token limit: `content` with `finish_reason: "length"` (plain or SSE).
    Cut {
        /// The partial assistant message content.
        content: String,
    },
    /// HTTP 400 with an OpenAI-style error body whose message is `message`.
    Rejected {
        /// The error message.
        message: String,
    },
    /// Like [`Reply::Content`] but always as SSE (whatever the request's stream flag), with `chunk_delay`
    /// between chunks.
    SlowStream {
        /// The assistant message content.
        content: String,
        /// Wait between SSE chunks.
        chunk_delay: Duration,
    },
}

/// Default deterministic verdict for a prompt: a JSON object string
/// `{"action": A, "reason": R, "confidence": C}` where `A` is `"BUY"`, `"SELL"` or `"HOLD"` chosen by the
/// FNV-1a 64 hash of `prompt`, `C = 0.5 + (hash % 50) / 100` and `R = "test server verdict <hash % 1000>"`.
pub fn verdict_for(prompt: &str) -> String {
    let hash = fnv1a64(prompt.as_bytes());
    let action = ["BUY", "SELL", "HOLD"][(hash % 3) as usize];
    // (50 + k) / 100 rather than 0.5 + k / 100 so the value prints as e.g. 0.57, not 0.5700000000000001.
    let confidence = (50 + hash % 50) as f64 / 100.0;
    format!(r#"{{"action":"{action}","reason":"test server verdict {}","confidence":{confidence}}}"#, hash % 1000)
}

/// The script most tests start from: every request gets
/// `Reply::Content { content: verdict_for(&req.user), delay }`.
pub fn answering(delay: Duration) -> Script {
    Arc::new(move |req: &Request| Reply::Content { content: verdict_for(&req.user), delay })
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A running test server; dropping it shuts the server down.
pub struct LlmServer {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl LlmServer {
    /// Binds `127.0.0.1:0` and starts serving `script` on a background thread; returns once listening.
    pub fn start(script: Script) -> LlmServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for the test LLM server");
        listener.set_nonblocking(true).expect("set test LLM server listener non-blocking");
        let addr = listener.local_addr().expect("test LLM server local address");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("llm-test-server")
            .enable_all()
            .build()
            .expect("build the test LLM server runtime");
        let shared = Arc::new(Shared {
            script,
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let app = Router::new()
            .route("/v1/chat/completions", post(chat).fallback(|| async { StatusCode::NOT_FOUND }))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("llm-test-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("register test LLM server listener");
                    let mut graceful_rx = stop_rx.clone();
                    let mut deadline_rx = stop_rx;
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = graceful_rx.wait_for(|stop| *stop).await;
                    });
                    // Graceful shutdown waits for open responses (e.g. slow streams); cap that wait.
                    let deadline = async move {
                        let _ = deadline_rx.wait_for(|stop| *stop).await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    };
                    tokio::select! {
                        _ = serve => {}
                        () = deadline => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn the test LLM server thread");
        LlmServer { addr, shared, stop, thread: Some(thread) }
    }

    /// The OpenAI base URL, `http://127.0.0.1:PORT/v1`; clients POST to `{base_url}/chat/completions`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Total chat-completion requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.log().bodies.len() as u64
    }

    /// Requests currently being handled (streaming ones until their body stream ends or is dropped).
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// High-water mark of [`LlmServer::in_flight`].
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request body received, in arrival order (a body that is not JSON is recorded as a JSON string).
    pub fn bodies(&self) -> Vec<Value> {
        self.shared.log().bodies.clone()
    }

    /// The `Authorization` header of each request, in arrival order.
    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.shared.log().auth.clone()
    }
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Shared {
    script: Script,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    bodies: Vec<Value>,
    auth: Vec<Option<String>>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        // A panicking script cannot leave the log half-written, so a poisoned lock is still usable.
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts one request as in flight for as long as it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, raw: Bytes) -> Response {
    let guard = InFlight::enter(&shared);
    let auth = headers.get(header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let parsed = serde_json::from_slice::<Value>(&raw);
    let recorded = match &parsed {
        Ok(body) => body.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&raw).into_owned()),
    };
    let n = {
        let mut log = shared.log();
        log.bodies.push(recorded);
        log.auth.push(auth);
        log.bodies.len() as u64 - 1
    };
    let body = match parsed {
        Ok(body) => body,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, None, &format!("request body is not JSON: {e}")),
    };
    let request =
        Request { n, user: last_user_message(&body), stream: body.get("stream") == Some(&Value::Bool(true)), body };
    let reply = (shared.script)(&request);
    match reply {
        Reply::Content { content, delay } => {
            sleep(delay).await;
            if request.stream {
                sse_response(&request, &content, Duration::ZERO, guard)
            } else {
                completion_response(&request, &content)
            }
        }
        Reply::SlowStream { content, chunk_delay } => sse_response(&request, &content, chunk_delay, guard),
        Reply::Cut { content } => {
            if request.stream {
                sse_finished(&request, &content, Duration::ZERO, "length", guard)
            } else {
                completion_finished(&request, &content, "length")
            }
        }
        Reply::Rejected { message } => error_response(StatusCode::BAD_REQUEST, None, &message),
        Reply::Status { code, retry_after, delay } => {
            sleep(delay).await;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_response(status, retry_after, &format!("test server scripted status {code}"))
        }
        Reply::Raw { body, delay } => {
            sleep(delay).await;
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Reply::Reset { delay } => {
            sleep(delay).await;
            let failing = stream::once(async move {
                drop(guard);
                Err::<Bytes, std::io::Error>(std::io::Error::other("test server scripted connection reset"))
            });
            ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(failing)).into_response()
        }
    }
}

async fn sleep(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn message_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        // Content parts: [{"type": "text", "text": ".."}, ..]
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

fn messages(body: &Value) -> &[Value] {
    body.get("messages").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn last_user_message(body: &Value) -> String {
    messages(body)
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(message_text)
        .unwrap_or_default()
}

fn usage(request: &Request, content: &str) -> Value {
    let prompt_chars: usize =
        messages(&request.body).iter().map(|m| m.get("content").map_or(0, |c| message_text(c).chars().count())).sum();
    let prompt_tokens = (prompt_chars / 4).max(1);
    let completion_tokens = (content.chars().count() / 4).max(1);
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

fn model(request: &Request) -> Value {
    request.body.get("model").cloned().unwrap_or_else(|| Value::String("test-model".into()))
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn completion_response(request: &Request, content: &str) -> Response {
    completion_finished(request, content, "stop")
}

fn completion_finished(request: &Request, content: &str, finish_reason: &str) -> Response {
    let body = json!({
        "id": format!("chatcmpl-{}", request.n),
        "object": "chat.completion",
        "created": unix_secs(),
        "model": model(request),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish_reason,
        }],
        "usage": usage(request, content),
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error_response(status: StatusCode, retry_after: Option<u64>, message: &str) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Splits `content` into up to 4 roughly equal pieces on char boundaries (one empty piece if it is empty).
fn pieces(content: &str) -> Vec<String> {
    let chars: Vec<char> = content.chars().collect();
    let k = chars.len().min(4);
    if k == 0 {
        return vec![String::new()];
    }
    (0..k).map(|i| chars[i * chars.len() / k..(i + 1) * chars.len() / k].iter().collect()).collect()
}

fn sse_response(request: &Request, content: &str, chunk_delay: Duration, guard: InFlight) -> Response {
    sse_finished(request, content, chunk_delay, "stop", guard)
}

fn sse_finished(
    request: &Request,
    content: &str,
    chunk_delay: Duration,
    finish_reason: &str,
    guard: InFlight,
) -> Response {
    let id = format!("chatcmpl-{}", request.n);
    let created = unix_secs();
    let model = model(request);
    let chunk = |choices: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices});
    let mut events: VecDeque<String> = VecDeque::new();
    for (i, piece) in pieces(content).into_iter().enumerate() {
        let delta = if i == 0 { json!({"role": "assistant", "content": piece}) } else { json!({"content": piece}) };
        events.push_back(chunk(json!([{"index": 0, "delta": delta, "finish_reason": null}])).to_string());
    }
    events.push_back(chunk(json!([{"index": 0, "delta": {}, "finish_reason": finish_reason}])).to_string());
    let include_usage = request.body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
    if include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage(request, content);
        events.push_back(last.to_string());
    }
    events.push_back("[DONE]".to_string());

    struct Sse {
        events: VecDeque<String>,
        chunk_delay: Duration,
        first: bool,
        _guard: InFlight,
    }
    let state = Sse { events, chunk_delay, first: true, _guard: guard };
    // The guard lives in the stream state, so the request stays in flight until the stream ends or is dropped.
    let body = stream::unfold(state, |mut st| async move {
        let event = st.events.pop_front()?;
        if !st.first {
            sleep(st.chunk_delay).await;
        }
        st.first = false;
        Some((Ok::<_, Infallible>(Bytes::from(format!("data: {event}\n\n"))), st))
    });
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(body))
        .into_response()
}
