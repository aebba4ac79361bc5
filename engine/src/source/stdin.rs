//! Reading standard input without blocking a worker: a thread reads blocks of whole lines and hands
//! them to the source over a bounded channel, waking it with timely's sync activator. Worker 0 owns
//! stdin; it is one partition with one watermark.

use super::lines::{Batch, parse_lines};
use super::operator::{Feed, FeedState};
use crate::dead_letter::{Position, SourceName};
use crate::event::Event;
use crate::time::{Millis, wall_nanos};
use crate::watermark::Watermark;
use std::io::Read;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use timely::scheduling::SyncActivator;

/// Bytes read from stdin per block.
const BLOCK: usize = 256 << 10;
/// Blocks buffered between the reader thread and the source: bounds memory when the graph is slow.
const QUEUE: usize = 8;

/// Standard input as a feed.
pub(crate) struct StdinFeed<E> {
    blocks: Receiver<std::io::Result<Vec<u8>>>,
    name: SourceName,
    next: Position,
    wm: Watermark,
    done: bool,
    failure: Option<String>,
    _event: PhantomData<E>,
}

impl<E: Event> StdinFeed<E> {
    /// Starts the reader thread; it wakes the source through `activator`.
    pub fn start(activator: SyncActivator, lateness: Millis) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("inflight-stdin".into())
            .spawn(move || read_blocks(std::io::stdin().lock(), tx, &activator))
            .expect("spawning the stdin reader thread");
        StdinFeed {
            blocks: rx,
            name: SourceName::File(Arc::from("stdin")),
            next: Position { partition: 0, offset: 0, line: 1 },
            wm: Watermark::new(lateness, 0),
            done: false,
            failure: None,
            _event: PhantomData,
        }
    }
}

/// Reads `input` into blocks that end at a line end (the last block may not), until EOF.
fn read_blocks(mut input: impl Read, tx: SyncSender<std::io::Result<Vec<u8>>>, activator: &SyncActivator) {
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; BLOCK];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                carry.extend_from_slice(&buf[..n]);
                if let Some(last) = memchr::memrchr(b'\n', &carry) {
                    let rest = carry.split_off(last + 1);
                    let block = std::mem::replace(&mut carry, rest);
                    if tx.send(Ok(block)).is_err() {
                        return;
                    }
                    let _ = activator.activate();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Err(e));
                let _ = activator.activate();
                return;
            }
        }
    }
    if !carry.is_empty() {
        let _ = tx.send(Ok(carry));
    }
    drop(tx);
    let _ = activator.activate();
}

impl<E: Event> Feed<E> for StdinFeed<E> {
    fn fill(&mut self, floor: Millis, out: &mut Batch<E>) -> FeedState {
        if self.done {
            return FeedState::Done;
        }
        match self.blocks.try_recv() {
            Ok(Ok(block)) => {
                self.next = parse_lines(&block, self.next, &mut self.wm, floor, &self.name, wall_nanos(), out);
                FeedState::More
            }
            Ok(Err(e)) => {
                self.failure = Some(format!("reading stdin failed: {e}"));
                self.done = true;
                FeedState::Done
            }
            Err(TryRecvError::Empty) => FeedState::Waiting,
            Err(TryRecvError::Disconnected) => {
                self.done = true;
                FeedState::Done
            }
        }
    }

    fn low_watermark(&self) -> Option<Millis> {
        if self.done { None } else { Some(self.wm.current()) }
    }

    fn failure(&mut self) -> Option<String> {
        self.failure.take()
    }
}
