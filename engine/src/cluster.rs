//! The processes of a cluster: connecting them with a deadline, and ending the run with one line
//! when one of them is lost.
//!
//! Timely's own start-up (`CommunicationConfig::Cluster`) retries a missing peer for ever and prints
//! its progress on stdout, where decisions go. So the sockets are made here, with a handshake that
//! checks both ends run the same cluster shape, and handed to timely's
//! `initialize_networking_from_sockets`. Timely's network threads panic when a peer's socket
//! closes mid-run ("timely communication error: …", in threads named `timely:recv-N` and
//! `timely:send-N`); the hook installed here turns that into one line naming process N and an exit
//! with [`EXIT_PEER_LOST`], instead of a cascade of worker panics.

use crate::runtime::{Cluster, ClusterError};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Hooks, WorkerGuards};

/// Exit status of a process whose peer was lost (EX_TEMPFAIL: running the same command again is
/// the fix, which is what `restart: on-failure` supervisors do).
pub const EXIT_PEER_LOST: i32 = 75;

/// The first bytes each side of a connection sends: who it is and the cluster shape it runs.
const MAGIC: &[u8; 8] = b"INFLIGHT";
/// Bumped when the handshake or the stream after it changes.
const VERSION: u32 = 1;
/// A hello is the magic, then version, processes, workers and index as big-endian u32s.
const HELLO_LEN: usize = 8 + 4 * 4;

/// How often a waiting process says, on stderr, whom it still waits for.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What the peer-loss line says about this process's run (records read, the checkpoint to resume
/// from), asked for when the loss happens.
pub type Describe = Arc<dyn Fn() -> String + Send + Sync>;

/// Starts this process's workers: connected to the other processes first when there are any.
/// `describe` completes the one-line message printed if a peer is lost later.
pub fn execute<T, F>(cluster: &Cluster, describe: Describe, func: F) -> Result<WorkerGuards<T>, ClusterError>
where
    T: Send + 'static,
    F: Fn(&mut timely::worker::Worker) -> T + Send + Sync + 'static,
{
    let hosts = cluster.hosts()?;
    if cluster.processes == 1 {
        return timely::execute(timely::Config::process(cluster.workers), func).map_err(ClusterError::Start);
    }
    let sockets = connect(&hosts, cluster.process, cluster.workers, cluster.connect_timeout)?;
    on_peer_loss(hosts, describe);
    let hooks = Hooks::default();
    let local = ProcessBuilder::new_typed_vector(cluster.workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) = initialize_networking_from_sockets(local, sockets, cluster.process, cluster.workers, hooks)
        .map_err(|e| ClusterError::Start(format!("starting the network threads: {e}")))?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    timely::execute::execute_from(builders, Box::new(guard), timely::WorkerConfig::default(), func)
        .map_err(ClusterError::Start)
}

/// One socket per other process (None at `me`), as timely expects: process `i` connects to every
/// lower index and accepts from every higher one, all before `timeout` has passed.
pub fn connect(
    hosts: &[String],
    me: usize,
    workers: usize,
    timeout: Duration,
) -> Result<Vec<Option<TcpStream>>, ClusterError> {
    let deadline = Instant::now() + timeout;
    let hello = Hello { processes: hosts.len() as u32, workers: workers as u32, index: me as u32 };
    let own = resolve(&hosts[me]).map_err(|e| ClusterError::Connect(format!("{}: {e}", hosts[me])))?;
    let listener = TcpListener::bind(own.as_slice())
        .map_err(|e| ClusterError::Connect(format!("cannot listen on {} (process {me}): {e}", hosts[me])))?;
    listener.set_nonblocking(true).map_err(|e| ClusterError::Connect(e.to_string()))?;

    // Connect to the lower indexes on a thread of its own while this one accepts the higher ones.
    let lower: Vec<String> = hosts[..me].to_vec();
    let dialer = std::thread::Builder::new()
        .name("inflight:connect".into())
        .spawn(move || dial_all(&lower, hello, deadline, timeout))
        .map_err(|e| ClusterError::Connect(e.to_string()))?;
    let accepted = accept_all(&listener, hosts, hello, deadline, timeout);
    let dialed = dialer.join().map_err(|_| ClusterError::Connect("the connecting thread panicked".into()))?;
    let (dialed, accepted) = (dialed?, accepted?);

    let mut sockets: Vec<Option<TcpStream>> = dialed.into_iter().map(Some).collect();
    sockets.push(None);
    sockets.extend(accepted.into_iter().map(Some));
    for s in sockets.iter().flatten() {
        tune(s);
    }
    Ok(sockets)
}

/// The shape a process announces; both ends must agree on `processes` and `workers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hello {
    processes: u32,
    workers: u32,
    index: u32,
}

impl Hello {
    fn bytes(self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(MAGIC);
        for (i, v) in [VERSION, self.processes, self.workers, self.index].into_iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    /// None for anything that is not an inflight hello of this version.
    fn parse(b: &[u8; HELLO_LEN]) -> Option<Hello> {
        let word = |i: usize| u32::from_be_bytes([b[8 + 4 * i], b[9 + 4 * i], b[10 + 4 * i], b[11 + 4 * i]]);
        (&b[..8] == MAGIC && word(0) == VERSION).then(|| Hello { processes: word(1), workers: word(2), index: word(3) })
    }

    /// Why a peer's hello cannot join this process's cluster, if it cannot.
    fn mismatch(self, theirs: Hello, expected_index: Option<u32>) -> Option<String> {
        if theirs.processes != self.processes || theirs.workers != self.workers {
            return Some(format!(
                "process {} runs with -n {} -w {}, this process (-p {}) with -n {} -w {}: every process needs the same -n and -w",
                theirs.index, theirs.processes, theirs.workers, self.index, self.processes, self.workers
            ));
        }
        match expected_index {
            Some(i) if i != theirs.index => Some(format!(
                "the process at process {i}'s address says it is process {}: check -p and the hostfile",
                theirs.index
            )),
            _ => None,
        }
    }
}

/// Exchanges hellos on a fresh connection: ours first, then theirs (within `limit`).
fn handshake(stream: &mut TcpStream, ours: Hello, limit: Duration) -> std::io::Result<Option<Hello>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(limit.max(Duration::from_millis(10))))?;
    stream.write_all(&ours.bytes())?;
    let mut buf = [0u8; HELLO_LEN];
    stream.read_exact(&mut buf)?;
    stream.set_read_timeout(None)?;
    Ok(Hello::parse(&buf))
}

fn resolve(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = host.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(ErrorKind::NotFound, "resolves to no address"));
    }
    Ok(addrs)
}

/// Connects to every process in `lower` (index = position), retrying until `deadline`.
fn dial_all(lower: &[String], me: Hello, deadline: Instant, timeout: Duration) -> Result<Vec<TcpStream>, ClusterError> {
    let mut out = Vec::with_capacity(lower.len());
    for (index, host) in lower.iter().enumerate() {
        let mut last_error = String::from("no answer");
        let mut reported = Instant::now();
        let stream = loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClusterError::Connect(format!(
                    "process {index} ({host}) did not answer within the connect timeout ({}), last attempt: {last_error}; start it, or raise --connect-timeout",
                    humantime::format_duration(timeout)
                )));
            }
            if now.duration_since(reported) >= REPORT_EVERY {
                tracing::warn!("process {}: still waiting for process {index} ({host}): {last_error}", me.index);
                reported = now;
            }
            // Resolved each time: a restarted peer (a new pod) may come back at a new address.
            let attempt = resolve(host).and_then(|addrs| {
                let limit = deadline.saturating_duration_since(now).min(Duration::from_secs(2));
                let mut stream = TcpStream::connect_timeout(&addrs[0], limit.max(Duration::from_millis(10)))?;
                handshake(&mut stream, me, limit).map(|h| (stream, h))
            });
            match attempt {
                Ok((stream, Some(theirs))) => match me.mismatch(theirs, Some(index as u32)) {
                    None => break stream,
                    Some(why) => return Err(ClusterError::Connect(why)),
                },
                Ok((_, None)) => {
                    return Err(ClusterError::Connect(format!(
                        "{host} (process {index}) answered, but not as an inflight process of this version"
                    )));
                }
                Err(e) => last_error = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        tracing::info!("process {}: connected to process {index} ({host})", me.index);
        out.push(stream);
    }
    Ok(out)
}

/// Accepts one connection from every process after `me.index`, until `deadline`.
fn accept_all(
    listener: &TcpListener,
    hosts: &[String],
    me: Hello,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<TcpStream>, ClusterError> {
    let first = me.index as usize + 1;
    let mut got: Vec<Option<TcpStream>> = (first..hosts.len()).map(|_| None).collect();
    let mut reported = Instant::now();
    while got.iter().any(Option::is_none) {
        let now = Instant::now();
        let missing = || {
            got.iter()
                .enumerate()
                .filter(|(_, s)| s.is_none())
                .map(|(i, _)| format!("process {} ({})", first + i, hosts[first + i]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if now >= deadline {
            return Err(ClusterError::Connect(format!(
                "{} did not connect within the connect timeout ({}); start it with -p set to its index, or raise --connect-timeout",
                missing(),
                humantime::format_duration(timeout)
            )));
        }
        if now.duration_since(reported) >= REPORT_EVERY {
            tracing::warn!("process {}: still waiting for {}", me.index, missing());
            reported = now;
        }
        match listener.accept() {
            Ok((mut stream, from)) => {
                let limit = deadline.saturating_duration_since(now).min(Duration::from_secs(2));
                match handshake(&mut stream, me, limit) {
                    Ok(Some(theirs)) => {
                        if let Some(why) = me.mismatch(theirs, None) {
                            return Err(ClusterError::Connect(why));
                        }
                        let slot = (theirs.index as usize).checked_sub(first).and_then(|i| got.get_mut(i));
                        match slot {
                            Some(slot @ None) => {
                                tracing::info!("process {}: process {} connected from {from}", me.index, theirs.index);
                                *slot = Some(stream);
                            }
                            Some(Some(_)) => {
                                return Err(ClusterError::Connect(format!(
                                    "two processes say they are process {}: each process needs its own -p",
                                    theirs.index
                                )));
                            }
                            None => {
                                return Err(ClusterError::Connect(format!(
                                    "process {} connected to process {}, which only lower indexes do: check -p and the hostfile",
                                    theirs.index, me.index
                                )));
                            }
                        }
                    }
                    // Not an inflight process (a port scanner, a health check): ignore it.
                    Ok(None) => {
                        tracing::warn!("process {}: ignored a connection from {from} that is not inflight", me.index)
                    }
                    Err(e) => {
                        tracing::warn!("process {}: a connection from {from} failed its handshake: {e}", me.index)
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(ClusterError::Connect(format!("accepting on {}: {e}", hosts[me.index as usize]))),
        }
    }
    Ok(got.into_iter().flatten().collect())
}

/// No Nagle delay (timely batches itself), and a link that goes silent (a cut cable, a peer's host
/// gone without a FIN) fails its reads and writes within about 20 s instead of hanging.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(5);
    let _ = socket.set_tcp_keepalive(&keepalive);
    #[cfg(target_os = "linux")]
    let _ = socket.set_tcp_user_timeout(Some(Duration::from_secs(20)));
}

/// Set by the first network thread to report a lost peer.
static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The current run's hosts and note, read by the hook (installed once per process: a library user
/// may run several jobs one after another).
static RUN: std::sync::Mutex<Option<(Vec<String>, Describe)>> = std::sync::Mutex::new(None);

/// Makes the panic hook end the process with one line when timely's network thread for a peer of
/// this run fails; other panics go to the hook that was there before.
fn on_peer_loss(hosts: Vec<String>, describe: Describe) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    *RUN.lock().unwrap_or_else(|e| e.into_inner()) = Some((hosts, describe));
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let peer = thread
                .name()
                .and_then(|n| n.strip_prefix("timely:recv-").or_else(|| n.strip_prefix("timely:send-")))
                .and_then(|n| n.parse::<usize>().ok());
            let message = panic_message(info.payload());
            let (Some(peer), Some(cause)) = (peer, message.strip_prefix("timely communication error: ")) else {
                return previous(info);
            };
            // The send and receive threads of a peer fail together: one line, from the first.
            if REPORTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                loop {
                    std::thread::park();
                }
            }
            let run = RUN.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (host, note) = match &run {
                Some((hosts, describe)) => (hosts.get(peer).cloned().unwrap_or_default(), describe()),
                None => (String::new(), String::new()),
            };
            eprintln!("inflight: lost process {peer} ({host}): {cause}; {note}");
            std::process::exit(EXIT_PEER_LOST);
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::{Hello, connect};
    use std::time::{Duration, Instant};

    fn free_ports(n: usize) -> Vec<String> {
        let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect()
    }

    #[test]
    fn hello_round_trips_and_rejects_strangers() {
        let h = Hello { processes: 3, workers: 2, index: 1 };
        assert_eq!(Hello::parse(&h.bytes()), Some(h));
        let mut other = h.bytes();
        other[0] = b'X';
        assert_eq!(Hello::parse(&other), None);
        let theirs = Hello { processes: 3, workers: 4, index: 2 };
        assert!(h.mismatch(theirs, None).unwrap().contains("-n 3 -w 4"));
        assert!(h.mismatch(Hello { workers: 2, ..theirs }, Some(0)).unwrap().contains("says it is process 2"));
        assert_eq!(h.mismatch(Hello { workers: 2, ..theirs }, Some(2)), None);
    }

    #[test]
    fn three_processes_connect_in_any_start_order() {
        let hosts = free_ports(3);
        let threads: Vec<_> = [2usize, 0, 1]
            .into_iter()
            .enumerate()
            .map(|(delay, me)| {
                let hosts = hosts.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(150 * delay as u64));
                    (me, connect(&hosts, me, 1, Duration::from_secs(20)))
                })
            })
            .collect();
        for t in threads {
            let (me, sockets) = t.join().unwrap();
            let sockets = sockets.unwrap();
            assert_eq!(sockets.len(), 3);
            for (i, s) in sockets.iter().enumerate() {
                assert_eq!(s.is_none(), i == me, "process {me}, socket {i}");
            }
        }
    }

    #[test]
    fn a_missing_peer_ends_the_wait_naming_it() {
        let hosts = free_ports(3);
        let start = Instant::now();
        let err = connect(&hosts, 0, 1, Duration::from_millis(600)).unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(err.contains(&format!("process 1 ({})", hosts[1])), "{err}");
        assert!(err.contains(&format!("process 2 ({})", hosts[2])), "{err}");
        let err = connect(&hosts, 2, 1, Duration::from_millis(600)).unwrap_err().to_string();
        assert!(err.contains(&format!("process 0 ({})", hosts[0])), "{err}");
    }

    #[test]
    fn a_peer_with_another_shape_is_refused_with_both_shapes() {
        let hosts = free_ports(2);
        let h = hosts.clone();
        let other = std::thread::spawn(move || connect(&h, 1, 2, Duration::from_secs(10)));
        let err = connect(&hosts, 0, 1, Duration::from_secs(10)).unwrap_err().to_string();
        assert!(err.contains("every process needs the same -n and -w"), "{err}");
        let _ = other.join();
    }
}
