//! The HTTP API: `/api/decisions` (Server-Sent Events), `/api/keys`, `/api/keys/{key}/bars`,
//! `/api/stats`, `/api/info`, and the page. Every request passes the token check when a token is
//! set.

use super::hub::{Entry, Hub};
use super::page;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast};

/// Closes the connection a request came on (a client too slow to keep).
#[derive(Clone, Debug, Default)]
pub struct Kill(pub Arc<Notify>);

/// The bytes one write to a client gathers at most (many decisions in one write: a burst of a
/// thousand costs each client a few writes, not a thousand).
const CHUNK: usize = 64 << 10;

/// An idle stream sends a comment this often (proxies and clients see it is alive).
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The cookie a page opened with `?token=` gets (its scripts, styles and streams need it). It
/// holds a random session value, not the token: the token never appears in a response.
const COOKIE: &str = "inflight_session";

/// What a request must show when a token is set.
#[derive(Clone)]
pub struct Access {
    token: Arc<str>,
    session: Arc<str>,
}

impl Access {
    /// Access with `token`, and a fresh random session value for the page's cookie.
    pub fn new(token: &str) -> Result<Access, String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers for the session cookie: {e}"))?;
        let session: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Access { token: token.into(), session: session.into() })
    }
}

/// The routes, with the token check when `token` is set.
pub fn router(hub: Arc<Hub>, access: Option<Access>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/assets/{name}", get(page::asset))
        .route("/api/info", get(info))
        .route("/api/stats", get(stats))
        .route("/api/keys", get(keys))
        .route("/api/keys/{key}/bars", get(bars))
        .route("/api/decisions", get(decisions))
        .with_state(hub)
        .layer(axum::middleware::from_fn_with_state(access, auth))
}

/// The token from `Authorization: Bearer` or `?token=`, or the session cookie, compared in
/// constant time.
async fn auth(State(access): State<Option<Access>>, req: Request, next: Next) -> Response {
    let Some(access) = access else { return next.run(req).await };
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(|v| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
    });
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')))
        .map(str::to_owned);
    let same = |given: &str, want: &str| -> bool {
        use subtle::ConstantTimeEq;
        bool::from(given.as_bytes().ct_eq(want.as_bytes()))
    };
    let from_query = query.as_deref().is_some_and(|q| same(q, &access.token));
    let by_cookie = cookie.as_deref().is_some_and(|c| same(c, &access.session));
    if !(bearer.is_some_and(|b| same(b, &access.token)) || from_query || by_cookie) {
        let mut r = (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "missing or wrong token"})))
            .into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let mut response = next.run(req).await;
    if from_query {
        let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", access.session);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

async fn info(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let c = hub.config();
    axum::Json(serde_json::json!({
        "pipeline": hub.pipeline(),
        "version": env!("CARGO_PKG_VERSION"),
        "history": c.history,
        "bars_per_key": c.bars_per_key,
        "client_buffer": c.client_buffer,
    }))
}

async fn stats(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    axum::Json(hub.stats())
}

async fn keys(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    axum::Json(hub.keys())
}

/// `?limit=` of the bars (unknown parameters are a 400, not silently ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    limit: Option<usize>,
    /// The access token, checked before the handler.
    #[allow(dead_code)] // read by the access check, from the raw query
    token: Option<String>,
}

async fn bars(State(hub): State<Arc<Hub>>, Path(key): Path<String>, Query(q): Query<Limit>) -> Response {
    match hub.bars_json(&key, q.limit.unwrap_or(500)) {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": format!("no bars for key {key:?}")})))
            .into_response(),
    }
}

/// Which decisions a client wants. A misspelt parameter (`?actoin=`) is a 400 naming the ones
/// there are, not a filter silently ignored; action, decided_by and pipeline match in any case
/// (`?action=buy`), keys exactly.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    pipeline: Option<String>,
    key: Option<String>,
    action: Option<String>,
    decided_by: Option<String>,
    /// Replay this many recent decisions first.
    history: Option<usize>,
    /// As the `Last-Event-ID` header (for clients that cannot set headers).
    last_event_id: Option<u64>,
    /// The access token, checked before the handler.
    #[allow(dead_code)] // read by the access check, from the raw query
    token: Option<String>,
}

impl Filter {
    fn keeps(&self, e: &Entry) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w.is_empty() || w == have);
        let like = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.is_empty() || w.eq_ignore_ascii_case(have))
        };
        like(&self.pipeline, &e.pipeline)
            && is(&self.key, &e.key)
            && like(&self.action, &e.action)
            && like(&self.decided_by, &e.decided_by)
    }
}

/// A connected client, for the slow-client watch.
struct Client {
    /// The newest decision it has taken from the broadcast (sent, or filtered out).
    consumed: AtomicU64,
    hub: Arc<Hub>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.hub.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

fn missed(n: u64) -> Bytes {
    Bytes::from(format!("event: missed\ndata: {{\"missed\":{n}}}\n\n"))
}

async fn decisions(
    State(hub): State<Arc<Hub>>,
    kill: Option<Extension<Kill>>,
    Query(filter): Query<Filter>,
    headers: HeaderMap,
) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(filter.last_event_id);
    // Subscribe before reading the history: nothing published in between is lost.
    let rx = hub.subscribe();
    let snapshot = match resume {
        Some(after) => hub.since(after),
        None => hub.recent(filter.history.unwrap_or(0), |e| filter.keeps(e)),
    };
    let upto = snapshot.upto;
    let mut first = Vec::with_capacity(2 + snapshot.entries.len());
    first.push(Bytes::from(format!("retry: 2000\n: connected, latest {}\n\n", hub.latest())));
    if snapshot.lost > 0 {
        hub.missed.fetch_add(snapshot.lost, Ordering::Relaxed);
        first.push(missed(snapshot.lost));
    }
    first.extend(snapshot.entries.iter().filter(|e| filter.keeps(e)).map(|e| e.frame.clone()));
    // A finished run: the replay, then the end (subscribed first, so a run finishing now is seen
    // either here or through the broadcast).
    let ended = hub.end_frame().inspect(|end| first.push(end.clone())).is_some();
    hub.clients.fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(Client { consumed: AtomicU64::new(upto), hub: hub.clone() });
    if let Some(Extension(kill)) = kill {
        tokio::spawn(watch(Arc::downgrade(&client), hub.clone(), kill));
    }
    let stream = Stream { rx, filter, pending: first.into(), upto, client, ended };
    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
        let chunk = s.next().await?;
        Some((Ok::<Bytes, Infallible>(chunk), s))
    }));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// Disconnects `client` once it has been behind without taking anything for `slow_after`.
async fn watch(client: std::sync::Weak<Client>, hub: Arc<Hub>, kill: Kill) {
    let slow_after = hub.config().slow_after;
    let mut last = (0, Instant::now());
    loop {
        tokio::time::sleep((slow_after / 4).max(Duration::from_millis(10))).await;
        let Some(c) = client.upgrade() else { return };
        let consumed = c.consumed.load(Ordering::Relaxed);
        if consumed >= hub.latest() || consumed != last.0 {
            last = (consumed, Instant::now());
        } else if last.1.elapsed() >= slow_after {
            hub.dropped_slow.fetch_add(1, Ordering::Relaxed);
            tracing::info!(behind = hub.latest() - consumed, "live view: disconnecting a client that stopped reading");
            kill.0.notify_one();
            return;
        }
    }
}

/// One client's stream: the replay first, then the broadcast, several frames per write.
struct Stream {
    rx: broadcast::Receiver<Arc<Entry>>,
    filter: Filter,
    pending: std::collections::VecDeque<Bytes>,
    /// Decisions up to this one were in the replay.
    upto: u64,
    client: Arc<Client>,
    /// `event: end` is queued: the stream closes once it is written.
    ended: bool,
}

impl Stream {
    /// The next bytes to write (None: the run is over and the hub gone).
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended && self.pending.is_empty() {
            return None;
        }
        // Until something passes the filter: a write of nothing is not worth a wake-up.
        while self.pending.is_empty() {
            let first = tokio::select! {
                r = self.rx.recv() => r,
                () = tokio::time::sleep(HEARTBEAT) => return Some(Bytes::from_static(b": keep-alive\n\n")),
            };
            // Everything else already there goes into the same write.
            let mut size = self.take(first).ok()?;
            while size < CHUNK {
                let next = match self.rx.try_recv() {
                    Ok(e) => Ok(e),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
                    // Nothing more for now (a close is seen by the next `recv`).
                    Err(_) => break,
                };
                match self.take(next) {
                    Ok(bytes) => size += bytes,
                    Err(()) => break,
                }
            }
        }
        let mut out = Vec::with_capacity(self.pending.iter().map(Bytes::len).sum::<usize>().min(CHUNK * 2));
        while let Some(b) = self.pending.front() {
            if !out.is_empty() && out.len() + b.len() > CHUNK {
                break;
            }
            out.extend_from_slice(b);
            self.pending.pop_front();
        }
        Some(Bytes::from(out))
    }

    /// Queues what one receive gave: the bytes queued, Err when the broadcast is closed.
    fn take(&mut self, r: Result<Arc<Entry>, broadcast::error::RecvError>) -> Result<usize, ()> {
        let frame = match r {
            Ok(e) if e.end => {
                if self.ended {
                    return Ok(0);
                }
                self.ended = true;
                e.frame.clone()
            }
            Ok(e) => {
                self.client.consumed.store(e.seq, Ordering::Relaxed);
                if e.seq <= self.upto || !self.filter.keeps(&e) {
                    return Ok(0);
                }
                e.frame.clone()
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.client.hub.missed.fetch_add(n, Ordering::Relaxed);
                missed(n)
            }
            Err(broadcast::error::RecvError::Closed) => return Err(()),
        };
        let len = frame.len();
        self.pending.push_back(frame);
        Ok(len)
    }
}
