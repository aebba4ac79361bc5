//! Rules: the embedded decider. A pipeline's rules give a verdict (action and confidence) for each
//! input and know how to explain it; the `decide` operator keeps the last action per key and emits
//! a decision on every input or only when the action changes.

use crate::decision::{Action, Decision};
use crate::keyed::{Keyed, KeyedStateExt, KeyedStream};
use inflight_engine::{State, Stream};
use serde::{Deserialize, Serialize};

/// Which decisions leave the pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// Only when a key's action differs from its previous one (the first decision always leaves).
    #[default]
    Changes,
    /// One decision per input.
    All,
}

/// A rule verdict before it is explained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// What to do.
    pub action: Action,
    /// How sure the rules are, in [0, 1].
    pub confidence: f64,
}

/// A pipeline's decision rules.
pub trait Rules: 'static {
    /// What the rules look at.
    type Input: Keyed + 'static;
    /// The verdict for one input, or None while the input is not decidable yet (warm-up).
    fn verdict(&self, input: &Self::Input) -> Option<Verdict>;
    /// The full decision, with reason and evidence; only called for decisions that are emitted.
    fn explain(&self, input: Self::Input, verdict: Verdict) -> Decision;
}

/// The decide operator.
///
/// ```
/// use inflight_engine::{Position, State};
/// use inflight_operators::{Action, Bar, DecideExt, Decision, Emit, Rules, Tick, Verdict, WindowExt};
/// use timely::dataflow::operators::{Inspect, ToStream};
///
/// const UP: Action = Action::new("UP");
/// const DOWN: Action = Action::new("DOWN");
///
/// /// A bar that closes above its open is UP, else DOWN.
/// struct Direction;
/// impl Rules for Direction {
///     type Input = Bar<()>;
///     fn verdict(&self, bar: &Bar<()>) -> Option<Verdict> {
///         Some(Verdict { action: if bar.close > bar.open { UP } else { DOWN }, confidence: 0.9 })
///     }
///     fn explain(&self, bar: Bar<()>, v: Verdict) -> Decision {
///         Decision::new("direction", &bar.key, bar.end, v.action, v.confidence).reason("close against open")
///     }
/// }
///
/// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// timely::example(move |scope| {
///     let tick = |time, price| Tick {
///         key: "BTC".into(), time, price, volume: 1.0,
///         pos: Position::default(), ingest_ns: 0, context: (),
///     };
///     // Bars: up, up, down. With Emit::Changes only the first UP and the DOWN leave.
///     let ticks = vec![tick(0, 1.0), tick(500, 2.0), tick(1_000, 2.0), tick(1_500, 3.0), tick(2_000, 3.0), tick(2_500, 1.0)];
///     ticks
///         .to_stream(scope)
///         .bars(1_000, State::transient())
///         .decide(State::transient(), Direction, Emit::Changes)
///         .inspect(move |d| sink.lock().unwrap().push(d.action));
/// });
/// assert_eq!(*seen.lock().unwrap(), vec![UP, DOWN]);
/// ```
pub trait DecideExt<'scope, R: Rules> {
    /// Applies `rules` per key in event-time order and emits decisions per `emit`; each key's
    /// last action is kept in `state`.
    fn decide(self, state: State, rules: R, emit: Emit) -> Stream<'scope, Decision>;
}

impl<'scope, R: Rules> DecideExt<'scope, R> for KeyedStream<'scope, R::Input> {
    fn decide(self, state: State, rules: R, emit: Emit) -> Stream<'scope, Decision> {
        self.keyed_state(state, move |last: &mut Option<Action>, input: R::Input, out| {
            let Some(verdict) = rules.verdict(&input) else {
                return;
            };
            let changed = !last.replace(verdict.action).is_some_and(|a| a.is(verdict.action));
            if changed || emit == Emit::All {
                out.push(rules.explain(input, verdict));
            }
        })
        .into_stream()
    }
}
