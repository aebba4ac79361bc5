//! The live view: `--serve ADDR` runs an HTTP server in process 0 that streams decisions to many
//! clients (Server-Sent Events), keeps each key's recent bars for charts, reports statistics, and
//! serves a page that shows all of it. The dataflow feeds it through [`tap`]; [`hub::Hub`] holds
//! what clients read; [`api`] answers them.
//!
//! Connections are served one by one with hyper (instead of `axum::serve`) so that a client that
//! stops reading can be disconnected: its connection's task is cancelled, which closes the socket
//! even while a write to it is blocked.

pub mod api;
pub mod hub;
mod page;
pub mod tap;

pub use hub::{Hub, HubConfig};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The kernel send buffer of a client's socket: small, so a client that stops reading is noticed
/// (and costs little memory) after a few dozen decisions rather than megabytes.
const SEND_BUFFER: usize = 64 << 10;

/// How to serve.
#[derive(Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// A bearer token every request must carry (required off loopback).
    pub token: Option<String>,
    /// Buffers and history.
    pub hub: HubConfig,
}

impl std::fmt::Debug for ServeConfig {
    // The token is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("hub", &self.hub)
            .finish()
    }
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Anyone who can reach the address would see the decisions.
    #[error("--serve {0}: a non-loopback address needs --serve-token (or INFLIGHT_SERVE_TOKEN)")]
    NeedsToken(SocketAddr),
    /// An empty token would let everyone in.
    #[error("--serve-token must not be empty")]
    EmptyToken,
    /// The address is taken or not ours.
    #[error("cannot listen on {addr} for the live view: {error}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        error: String,
    },
    /// The runtime could not start.
    #[error("cannot start the live view: {0}")]
    Start(String),
}

impl ServeConfig {
    /// Checks the address and token before anything starts.
    pub fn validate(&self) -> Result<(), ServeError> {
        match &self.token {
            Some(t) if t.is_empty() => Err(ServeError::EmptyToken),
            None if !self.addr.ip().is_loopback() => Err(ServeError::NeedsToken(self.addr)),
            _ => Ok(()),
        }
    }
}

/// The running server; it stops with the process.
pub struct LiveServer {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for LiveServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl LiveServer {
    /// Binds (before the run, so a taken port fails the command at once) and serves `hub` on
    /// two threads of its own: the workers never run server code.
    pub fn start(config: &ServeConfig, hub: Arc<Hub>) -> Result<LiveServer, ServeError> {
        config.validate()?;
        let addr = config.addr;
        let bind = |e: std::io::Error| ServeError::Bind { addr, error: e.to_string() };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let bound = listener.local_addr().map_err(bind)?;
        raise_open_files_limit();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("inflight-serve")
            .enable_all()
            .build()
            .map_err(|e| ServeError::Start(e.to_string()))?;
        let access = config.token.as_deref().map(api::Access::new).transpose().map_err(ServeError::Start)?;
        let app = api::router(hub.clone(), access);
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(bind)?
        };
        runtime.spawn(accept(listener, app));
        runtime.spawn(hub.clone().forward());
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                hub.sample();
            }
        });
        tracing::info!(addr = %bound, "live view listening");
        Ok(LiveServer { addr: bound, _runtime: runtime })
    }
}

/// Accepts connections until the process ends; each is served by a task that a slow-client
/// verdict can cancel.
async fn accept(listener: tokio::net::TcpListener, app: axum::Router) {
    use tower::Service;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors, say: wait a moment instead of spinning.
                tracing::warn!(error = %e, "live view: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let kill = api::Kill::default();
        let app = app.clone();
        tokio::spawn(async move {
            let on_request = kill.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(on_request.clone());
                let mut app = app.clone();
                async move { app.call(req).await }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(error = %e, "live view: connection ended with an error");
                },
                () = kill.0.notified() => {}
            }
        });
    }
}

/// 1,000s of clients need as many descriptors: raise the soft limit to the hard one.
fn raise_open_files_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "live view: cannot raise the open files limit");
    }
}
