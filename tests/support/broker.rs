//! A Kafka-protocol broker for a test: tansu on 127.0.0.1 with a random free port and memory
//! storage, started by the test and stopped on drop; or the brokers in `KAFKA_BROKERS` (e.g.
//! Apache Kafka from docker-compose.yml). Needs `support/cli.rs` included as `mod cli` next to it.

#![allow(dead_code)] // each test file uses its own part

use super::cli::free_port;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A broker for one test: tansu on 127.0.0.1:<free port>, stopped on drop.
pub struct Broker {
    /// host:port to bootstrap from.
    pub addr: String,
    /// The broker process when the test started one.
    pub child: Option<Child>,
}

impl Broker {
    /// tansu on a free port, or the brokers in `KAFKA_BROKERS`.
    pub fn start() -> Broker {
        if let Ok(addr) = std::env::var("KAFKA_BROKERS") {
            return Broker { addr, child: None };
        }
        Broker::tansu(format!("127.0.0.1:{}", free_port()))
    }

    /// tansu with in-memory storage, listening on (and advertising) `addr`.
    pub fn tansu(addr: String) -> Broker {
        let url = format!("tcp://{addr}");
        let tansu = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
        let child = Command::new(&tansu)
            .args(["broker", "--storage-engine", "memory://tansu/", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {tansu:?} ({e}); install it: cargo install tansu --locked --features dynostore")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { addr, child: Some(child) }
    }

    /// Stops the broker process (the address stays, for a restart).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A topic or group name no other test (or earlier run on the same broker) uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}
