//! What one worker's dataflow is built with, handed explicitly to the code that builds it: the
//! timely scope, the registry of checkpointed operator state and the live view's taps.

use crate::Scope;
use crate::serve::tap::Taps;
use crate::state::{State, States};

/// A worker's graph while it is built.
#[derive(Clone)]
pub struct Graph<'s> {
    scope: Scope<'s>,
    states: States,
    taps: Taps,
}

impl<'s> Graph<'s> {
    /// A graph in `scope` whose state takes part in checkpoints through `states` and whose live
    /// view is fed through `taps`.
    pub fn new(scope: Scope<'s>, states: States, taps: Taps) -> Self {
        Graph { scope, states, taps }
    }

    /// A graph with no checkpoints and no live view (tests, benches, dataflows of your own).
    pub fn plain(scope: Scope<'s>) -> Self {
        let states = States::new(None, scope.index(), scope.peers(), Default::default());
        Graph { scope, states, taps: Taps::default() }
    }

    /// The timely scope.
    pub fn scope(&self) -> Scope<'s> {
        self.scope
    }

    /// Declares operator state `name` (unique in the graph) at `version`: hand it to the
    /// stateful operator that keeps it (see [`crate::state`]).
    pub fn state(&self, name: &str, version: u32) -> State {
        self.states.declare(name, version)
    }

    /// The registry of declared state.
    pub fn states(&self) -> &States {
        &self.states
    }

    /// The live view's taps.
    pub fn taps(&self) -> &Taps {
        &self.taps
    }
}
