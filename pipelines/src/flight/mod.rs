//! The flight-operations pipeline: flight status events joined with the schedule and the bookings
//! (reference data kept as differential-dataflow tables, loaded at start and changed live by
//! upserts and deletes in the input) → one decision per affected booking: REBOOK onto the first
//! flight on the route (at its current times) that has seats left and still makes the itinerary's
//! next leg, PROTECT (hold seats) when the delay's length is unknown, ESCALATE when there is no
//! alternative, NONE when the connection holds. Seats are consumed: a per-route allocator
//! (`seats.rs`) keeps every flight's free seats. Between the flight and its bookings, an ON_TIME
//! that repeats the flight's last one is dropped (`on_time.rs`).
//!
//! ```text
//! inputs ─┬─ status ─lookup(flights)─┬─ lookup(legs: the bookings) ─┬─ decided ────────────────────┐
//!         │                          │  lookup(flights: connection) ─┤ (holds: to the allocator)   │
//!         │                          │  lookup(flights: following leg)┤                            │
//!         │                          │  lookup(routes: candidates) ───┴─▶ seats (per route) ─────────┤
//!         │                          └─ status updates ──────────────────▶ seats                     │
//!         ├─ booking deletes (broadcast) ───────────────────────────────▶ seats                     │
//!         └─ changes (+ reference files at time 0) ─▶ flights, bookings ─▶ routes, legs             │
//!        decisions ◀─ llm_decide (below min_confidence) ◀─ explain ◀─ changed (per booking) ◀──────┘
//! ```

mod event;
mod on_time;
mod rules;
mod seats;
pub mod synthetic;

pub use event::{Booking, Change, FlightEvent, FlightInput, FlightStatus, ScheduledFlight};
pub use rules::{Case, Mct, Next, Outcome, SeatEvidence, Skipped};
pub use seats::{RouteSeats, SeatConfig};

use inflight_engine::{Graph, Key, Millis, SourceName, Sourced, Stream};
use inflight_operators::{
    Action, Decision, Emit, KeyByExt, Keyed, KeyedStateExt, LlmConfig, LlmExt, LlmService, LookupExt, Table,
    change_log, multi_table, upsert_table,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::operators::{Concatenate, ToStream};

/// The default flow-control bound for file inputs (`--max-lag`): workers read their file chunks
/// within this much event time of each other. The lookups hold every record until the tables'
/// frontier (the slowest source) passes its time; without a bound a worker whose records wait reads
/// ahead ever faster, and the other worker ends up doing most of the work while memory and latency
/// grow (at -w 2: p95 latency 7.7 s and 101k events/s without, 37 ms and 122k with). Pipelines whose
/// stages hold nothing waiting on another worker (trading, code) read files unpaced.
pub const FILE_MAX_LAG: Millis = 5_000;

/// The actions of flight decisions.
pub const ACTIONS: &[Action] = &[Action::REBOOK, Action::PROTECT, Action::ESCALATE, Action::NONE];

/// The flight pipeline's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightConfig {
    /// Minimum connection times.
    pub mct: Mct,
    /// `changes`: only bookings that need an action, and the NONE that clears an earlier action;
    /// `all`: also NONE for those that do not.
    pub emit: Emit,
    /// How seats are handed out.
    pub seats: SeatConfig,
    /// The LLM stage (off unless enabled).
    pub llm: LlmConfig,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            mct: Mct::default(),
            emit: Emit::Changes,
            seats: SeatConfig::default(),
            llm: LlmConfig::default(),
        }
    }
}

const SYSTEM_PROMPT: &str = "You are an airline operations assistant inside an automated pipeline. \
You get a flight status change, one affected booking with its itinerary, the schedule rows the rules \
looked at, and the decision the rules made with low confidence. Decide {{ actions }}: REBOOK onto the \
alternative shown, PROTECT (hold seats on it), ESCALATE to a person, or NONE. \
Answer only with a JSON object {\"action\", \"reason\", \"confidence\"}: confidence in [0, 1], reason one \
short sentence naming the flights.";

const USER_PROMPT: &str = "Booking {{ key }}, status change at {{ event_time }}.
Rules: {{ rule.action }} (confidence {{ rule.confidence }}): {{ rule.reason }}
Evidence: {{ evidence }}";

impl FlightConfig {
    /// Checks values a run cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.mct.default_minutes > 24 * 60 || self.mct.airports.values().any(|m| *m > 24 * 60) {
            return Err("minimum connection times must be at most 24 hours".into());
        }
        self.llm_config().validate()
    }

    /// The LLM settings with the flight prompts and actions where the config gives none.
    pub fn llm_config(&self) -> LlmConfig {
        self.llm.clone().with_pipeline_defaults(SYSTEM_PROMPT, USER_PROMPT, ACTIONS)
    }
}

/// The schedule and bookings a run starts from (each process loads them; every worker inserts its
/// share, and the tables partition them by key).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reference {
    /// Scheduled flights.
    pub flights: Vec<ScheduledFlight>,
    /// Bookings.
    pub bookings: Vec<Booking>,
}

/// A reference file that cannot be used (the run does not start: decisions against half the
/// schedule would be wrong without saying so).
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {message}", if *line == 0 { String::new() } else { format!(":{line}") })]
pub struct ReferenceError {
    /// The file.
    pub path: String,
    /// 1-based line (0: the file itself).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Reference {
    /// Loads JSONL files of [`ScheduledFlight`]s and [`Booking`]s (blank lines are skipped).
    pub fn load(schedule: &RefTable, bookings: &RefTable) -> Result<Reference, ReferenceError> {
        Ok(Reference {
            flights: read_rows(schedule, ScheduledFlight::validate, ("flight_id", |f| &f.flight_id))?,
            bookings: read_rows(bookings, Booking::validate, ("booking_id", |b| &b.booking_id))?,
        })
    }

    /// The changes worker `index` of `peers` inserts at time 0.
    fn share(&self, index: usize, peers: usize) -> Vec<Change> {
        let flights = self.flights.iter().skip(index).step_by(peers).cloned().map(Change::Flight);
        let bookings = self.bookings.iter().skip(index).step_by(peers).cloned().map(Change::Booking);
        flights.chain(bookings).collect()
    }
}

/// Where a reference table is read from.
#[derive(Clone, Debug)]
pub enum RefTable {
    /// No rows.
    Empty,
    /// A JSONL file.
    File(std::path::PathBuf),
    /// JSONL text at hand (a table built into the binary), with the name errors give.
    Text {
        /// The name errors give.
        name: &'static str,
        /// The rows.
        text: &'static str,
    },
}

/// The rows of `table`, each checked; `id` names the field that identifies a row (a second row with
/// the same id is refused: which one a run should use is the user's to say).
fn read_rows<T: serde::de::DeserializeOwned>(
    table: &RefTable,
    check: fn(&T) -> Result<(), String>,
    id: (&str, fn(&T) -> &Key),
) -> Result<Vec<T>, ReferenceError> {
    let name = match table {
        RefTable::Empty => return Ok(Vec::new()),
        RefTable::File(path) => path.display().to_string(),
        RefTable::Text { name, .. } => (*name).to_owned(),
    };
    let error = |line, message: String| ReferenceError { path: name.clone(), line, message };
    let text = match table {
        RefTable::File(path) => std::fs::read_to_string(path).map_err(|e| error(0, format!("cannot read: {e}")))?,
        RefTable::Text { text, .. } => (*text).to_owned(),
        RefTable::Empty => String::new(),
    };
    let mut rows = Vec::new();
    let mut first_line = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: T = serde_json::from_str(line).map_err(|e| error(n + 1, e.to_string()))?;
        check(&row).map_err(|e| error(n + 1, e))?;
        if let Some(first) = first_line.insert(id.1(&row).clone(), n + 1) {
            let (field, key) = (id.0, id.1(&row));
            return Err(error(n + 1, format!("{field} {:?} again (first on line {first})", &**key)));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The reference tables of a worker.
struct Tables<'s> {
    flights: Table<'s, Key, ScheduledFlight>,
    routes: Table<'s, (Key, Key), ScheduledFlight>,
    legs: Table<'s, Key, Booking>,
}

fn tables<'s>(graph: &Graph<'s>, changes: Stream<'s, (Millis, Change)>, reference: &Reference) -> Tables<'s> {
    let scope = graph.scope();
    let log = graph.state("change-log", 1);
    // After a restore the checkpoint's change log is the reference data (it holds the files' rows
    // too), each old worker's share on one new worker (the tables exchange rows by key
    // themselves); otherwise the files are, at time 0.
    let initial: Vec<(Millis, Change)> = if log.restoring() {
        log.restore_by_worker()
    } else {
        reference.share(scope.index(), scope.peers()).into_iter().map(|c| (0, c)).collect()
    };
    let initial = initial.to_stream(scope);
    let all = scope.concatenate([initial, changes]);
    // With checkpoints, every change passes the log that rebuilds the tables on a restore.
    let all = change_log(all, log, |(time, change)| (row_of(change), *time));
    let mut parts = all.partition(2, |(time, change)| match change {
        Change::Flight(_) | Change::DeleteFlight(_) => (0, (time, change)),
        Change::Booking(_) | Change::DeleteBooking(_) => (1, (time, change)),
    });
    let booking_changes = parts.pop().map(|s| {
        s.flat_map(|(time, change)| match change {
            Change::Booking(b) => Some((b.booking_id.clone(), Some(b), time)),
            Change::DeleteBooking(id) => Some((id, None, time)),
            _ => None,
        })
    });
    let flight_changes = parts.pop().map(|s| {
        s.flat_map(|(time, change)| match change {
            Change::Flight(f) => Some((f.flight_id.clone(), Some(f), time)),
            Change::DeleteFlight(id) => Some((id, None, time)),
            _ => None,
        })
    });
    let (Some(flight_changes), Some(booking_changes)) = (flight_changes, booking_changes) else {
        unreachable!("partition(2) makes two streams")
    };
    let flights = upsert_table(flight_changes, "Flights");
    let bookings = upsert_table(booking_changes, "Bookings");
    let routes = multi_table(
        flights.clone().as_collection(|_, f| ((f.origin.clone(), f.destination.clone()), f.clone())),
        "Routes",
    );
    // The bookings by each flight of their itinerary, whole: the cases of a status need no
    // second lookup per booking.
    let legs = multi_table(
        bookings.flat_map_ref(|_, b| b.legs.iter().map(|leg| (leg.clone(), b.clone())).collect::<Vec<_>>()),
        "Legs",
    );
    Tables { flights, routes, legs }
}

/// Splits cases by the lookup they need next: [decided, connection, alternatives, following].
/// The row a change is about: (is a booking, id).
fn row_of(change: &Change) -> (bool, Key) {
    match change {
        Change::Flight(f) => (false, f.flight_id.clone()),
        Change::DeleteFlight(id) => (false, id.clone()),
        Change::Booking(b) => (true, b.booking_id.clone()),
        Change::DeleteBooking(id) => (true, id.clone()),
    }
}

fn route<'s>(cases: Stream<'s, Box<Case>>) -> [Stream<'s, Box<Case>>; 6] {
    let parts = cases.partition(6, |c| (c.next as u64, c));
    match <[Stream<'s, Box<Case>>; 6]>::try_from(parts) {
        Ok(parts) => parts,
        Err(_) => unreachable!("partition(6) makes six streams"),
    }
}

/// A line of the input, split by kind.
enum Split {
    Status(Box<Case>),
    Change(Millis, Change),
}

/// Builds the flight dataflow: `inputs` carries status events and reference changes; `reference`
/// is the state at time 0; `source` names the input in decisions.
pub fn flight<'s>(
    graph: &Graph<'s>,
    inputs: Stream<'s, Sourced<FlightInput>>,
    config: &FlightConfig,
    reference: &Reference,
    source: SourceName,
    llm: Option<&Arc<LlmService>>,
) -> Stream<'s, Decision> {
    let mut parts = inputs.partition(2, |s: Sourced<FlightInput>| match s.event {
        FlightInput::Status(e) => (0, Split::Status(Case::start(e, s.pos, s.ingest_ns))),
        FlightInput::Change { time, change } => (1, Split::Change(time, change)),
    });
    let changes = parts.pop().map(|p| {
        p.flat_map(|s| match s {
            Split::Change(time, change) => Some((time, change)),
            Split::Status(_) => None,
        })
    });
    let cases = parts.pop().map(|p| {
        p.flat_map(|s| match s {
            Split::Status(case) => Some(case),
            Split::Change(..) => None,
        })
    });
    let (Some(changes), Some(cases)) = (changes, cases) else { unreachable!("partition(2) makes two streams") };
    let scope = graph.scope();
    let deleted = changes.clone().flat_map(|(time, change)| match change {
        Change::DeleteBooking(id) => Some((time, id)),
        _ => None,
    });
    let change_times = changes.clone().map(|(time, _)| time);
    let t = tables(graph, changes, reference);
    let flight_key = |c: Box<Case>| (c.event.flight_id.clone(), c);
    #[allow(clippy::borrowed_box)] // the lookup's records are the boxes themselves
    let time = |c: &Box<Case>| c.time();
    let [to_legs, _, _, _, _, updates] =
        route(cases.map(flight_key).lookup(&t.flights, graph.state("flight-of-status", 1), time, rules::with_flight));
    let to_legs = on_time::drop_repeated(to_legs, change_times, graph.state("last-on-time", 1));
    let with_booking =
        to_legs.map(flight_key).lookup(&t.legs, graph.state("bookings-of-flight", 1), time, rules::per_booking);
    let [decided_3, connection, following_3, alternatives_3, seats_3, _] = route(with_booking);
    let mct = config.mct.clone();
    let [decided_4, _, following_4, alternatives_4, seats_4, _] =
        route(connection.map(|c| (c.leg_id(1).cloned().unwrap_or_default(), c)).lookup(
            &t.flights,
            graph.state("connection", 1),
            time,
            move |c, f, out| rules::with_connection(c, f, &mct, out),
        ));
    let [decided_5, _, _, alternatives_5, _, _] = route(
        scope
            .concatenate([following_3, following_4])
            .map(|c| (c.following_id().cloned().unwrap_or_default(), c))
            .lookup(&t.flights, graph.state("following", 1), time, rules::with_following),
    );
    let mct = config.mct.clone();
    let [_, _, _, _, seats_6, _] = route(
        scope
            .concatenate([alternatives_3, alternatives_4, alternatives_5])
            .map(|c| {
                let route = c.broken.as_ref().map(|b| (b.flight.origin.clone(), b.flight.destination.clone()));
                (route.unwrap_or_default(), c)
            })
            .lookup(&t.routes, graph.state("alternatives", 1), time, move |c, r, out| {
                rules::with_alternatives(c, r, &mct, out)
            }),
    );
    let to_seats = scope.concatenate([seats_3, seats_4, seats_6, updates]);
    // Version 2: taken seats keep the request that took them, for re-seating.
    let (seats, waiting) = (graph.state("seats", 2), graph.state("seats-waiting-deletes", 1));
    let seated = seats::allocate(to_seats, deleted, seats, waiting, config.seats.clone(), config.mct.clone());
    let decided = scope.concatenate([decided_3, decided_4, decided_5, seated]);
    let (mct, emit) = (config.mct.clone(), config.emit);
    let decisions = changed(decided, graph, emit).flat_map(move |case| Some(rules::explain(&case, &mct, &source)));
    match llm {
        Some(service) => decisions.llm_decide(service),
        None => decisions,
    }
}

/// A case on its way to the stage that knows each booking's last action.
#[derive(Clone, Serialize, Deserialize)]
struct ByBooking(Box<Case>);

impl Keyed for ByBooking {
    fn key(&self) -> &Key {
        self.0.booking.as_ref().map_or(&self.0.event.flight_id, |b| &b.booking_id)
    }
}

/// Every action; the NONE that clears a booking's earlier action (a later status of the same
/// flight resolved it); with `--emit all` also the NONE of a delay that breaks nothing (not that of
/// every booking on an on-time flight, which only matters when it clears). Per booking, in
/// event-time order (then source position, leg and part), so at any parallelism; the state is the
/// flights whose statuses left an action open.
fn changed<'s>(cases: Stream<'s, Box<Case>>, graph: &Graph<'s>, emit: Emit) -> Stream<'s, Box<Case>> {
    let first = |a: &ByBooking, b: &ByBooking| {
        let at = |c: &ByBooking| (c.0.time(), c.0.pos, c.0.leg, c.0.seats.as_ref().and_then(|s| s.part));
        at(a).cmp(&at(b))
    };
    let all = emit == Emit::All;
    cases
        .map(ByBooking)
        .key_by()
        .keyed_state_ordered(
            graph.state("open-actions", 1),
            first,
            move |open: &mut BTreeSet<Key>, c: ByBooking, out| {
                let flight = &c.0.event.flight_id;
                if c.0.outcome == Some(Outcome::Unaffected) {
                    let clears = open.remove(flight);
                    if clears || (all && c.0.event.status != FlightStatus::OnTime) {
                        out.push(c.0);
                    }
                } else {
                    open.insert(flight.clone());
                    out.push(c.0);
                }
            },
        )
        .into_stream()
}
