//! Operator state that survives a restart. An operator declares its state while the graph is
//! built ([`States::declare`], reached through [`crate::graph::Graph::state`]) under a name unique
//! in the graph and a version of its encoding; the declaration is its checkpoint participant
//! ([`crate::recovery`]). How a restored state is spread over the workers of the new run is the
//! declaration's business too, so operators never hand-write a restore loop:
//!
//! - [`State::restore_by_key`]: items of every old worker, each kept by the worker that owns its
//!   key now (the routing of the exchange that feeds the operator), so the worker count may change;
//! - [`State::restore_by_worker`]: the parts of old workers `w` with `w % workers == index`, for
//!   state the operator routes itself (a change log the tables exchange by key again);
//! - [`State::restore_all`]: every old worker's items, for state each worker filters by its own rule
//!   (a source's splits, claimed by id);
//! - [`State::restore_worker_zero`]: the part of old worker 0, for state only worker 0 keeps.
//!
//! The manifest lists the declarations: a restore into a graph that declares other names or other
//! versions fails at start with one line naming the difference.

use crate::checkpoint::{CheckpointError, StateInfo, decode};
use crate::recovery::{Checkpoints, Participant};
use crate::signals::Failures;
use crate::time::Millis;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// One worker's declared state, while its graph is built.
#[derive(Clone)]
pub struct States {
    inner: Rc<Inner>,
}

struct Inner {
    checkpoints: Option<Arc<Checkpoints>>,
    worker: usize,
    peers: usize,
    failures: Failures,
    declared: RefCell<Vec<StateInfo>>,
    errors: RefCell<Vec<String>>,
}

impl States {
    /// The state registry of worker `worker` of `peers`; with `checkpoints`, every declaration
    /// takes part in them.
    pub fn new(checkpoints: Option<Arc<Checkpoints>>, worker: usize, peers: usize, failures: Failures) -> Self {
        let (declared, errors) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
        States { inner: Rc::new(Inner { checkpoints, worker, peers, failures, declared, errors }) }
    }

    /// Declares the state `name` (letters, digits, `-` and `_`; unique in the graph) at `version`.
    /// A bad or repeated name is an error of the graph ([`States::errors`]): the engine refuses
    /// to run it.
    pub fn declare(&self, name: &str, version: u32) -> State {
        let inner = &self.inner;
        let bad_char = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'));
        let mut errors = inner.errors.borrow_mut();
        if name.is_empty() || bad_char.is_some() {
            errors.push(format!(
                "state name {name:?} is not valid: use letters, digits, '-' and '_' (in the pipeline's build)"
            ));
        }
        let mut declared = inner.declared.borrow_mut();
        if declared.iter().any(|d| d.name == name) {
            errors.push(format!(
                "two operators declare the state '{name}': state names must be unique in a graph (in the pipeline's build)"
            ));
        }
        declared.push(StateInfo { name: name.to_owned(), version });
        let part = inner
            .checkpoints
            .as_ref()
            .map(|c| Participant::new(c.clone(), name.to_owned(), inner.worker, inner.failures.clone()));
        State { part, worker: inner.worker, peers: inner.peers }
    }

    /// What is wrong with the declarations so far (bad or repeated names).
    pub fn errors(&self) -> Vec<String> {
        self.inner.errors.borrow().clone()
    }

    /// Everything declared so far, in order.
    pub fn declared(&self) -> Vec<StateInfo> {
        self.inner.declared.borrow().clone()
    }
}

/// One operator's declared state on one worker: its checkpoint participant (none when the run
/// takes no checkpoints, and then every method is a no-op) and how it is restored.
#[derive(Debug)]
pub struct State {
    part: Option<Participant>,
    worker: usize,
    peers: usize,
}

impl State {
    /// A state that is never saved (for graphs built outside a job: tests, benches).
    pub fn transient() -> Self {
        State { part: None, worker: 0, peers: 1 }
    }

    /// Whether the run takes checkpoints (so the operator must keep what [`State::offer`] saves).
    pub fn saved(&self) -> bool {
        self.part.is_some()
    }

    /// The run's checkpoints, when it takes them.
    pub fn checkpoints(&self) -> Option<&Arc<Checkpoints>> {
        self.part.as_ref().map(Participant::shared)
    }

    /// Whether this run restores from a checkpoint.
    pub fn restoring(&self) -> bool {
        self.part.as_ref().is_some_and(|p| p.shared().restored().is_some())
    }

    /// Notes that input at `time` changed the state.
    pub fn applied(&mut self, time: Millis) {
        if let Some(p) = self.part.as_mut() {
            p.applied(time);
        }
    }

    /// Offers a part for the checkpoint the input frontier `frontier` has reached (None: the
    /// input ended); `encode` is called only when one is written (see [`Participant::offer`]).
    pub fn offer(&mut self, frontier: Option<Millis>, encode: impl FnOnce(Millis) -> Result<Vec<u8>, CheckpointError>) {
        if let Some(p) = self.part.as_mut() {
            p.offer(frontier, encode);
        }
    }

    /// Reports a fatal error of the operator: the run fails.
    pub fn report(&self, message: String) {
        if let Some(p) = &self.part {
            p.report(message);
        }
    }

    /// Items of every old worker's part (each part a sequence of `T`) whose `hash` modulo the
    /// workers now is this worker.
    pub fn restore_by_key<T: DeserializeOwned>(&self, hash: impl Fn(&T) -> u64) -> Vec<T> {
        let (worker, peers) = (self.worker as u64, self.peers as u64);
        let mut out = Vec::new();
        self.each_part(|_, items: Vec<T>| out.extend(items.into_iter().filter(|t| hash(t) % peers == worker)));
        out
    }

    /// Items of the parts of old workers `w` with `w % workers == this worker`.
    pub fn restore_by_worker<T: DeserializeOwned>(&self) -> Vec<T> {
        let (worker, peers) = (self.worker, self.peers);
        let mut out = Vec::new();
        self.each_part(|w, items: Vec<T>| {
            if w % peers == worker {
                out.extend(items);
            }
        });
        out
    }

    /// Items of every old worker's part.
    pub fn restore_all<T: DeserializeOwned>(&self) -> Vec<T> {
        let mut out = Vec::new();
        self.each_part(|_, items: Vec<T>| out.extend(items));
        out
    }

    /// The part old worker 0 wrote, if any.
    pub fn restore_worker_zero<S: DeserializeOwned>(&self) -> Option<S> {
        let mut out = None;
        self.each_part(|w, s: S| {
            if w == 0 {
                out = Some(s);
            }
        });
        out
    }

    fn each_part<S: DeserializeOwned>(&self, mut f: impl FnMut(usize, S)) {
        let Some(part) = &self.part else { return };
        for (w, bytes) in part.restored() {
            match decode::<S>(bytes) {
                Ok(s) => f(*w, s),
                // A part that passed its checksum but does not decode is another build's.
                Err(e) => part.report(format!(
                    "the checkpoint's state {:?} cannot be read by this build ({e}): bump its version when its type changes",
                    part.name()
                )),
            }
        }
    }
}
