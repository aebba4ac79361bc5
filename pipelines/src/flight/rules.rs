//! The flight rules, one function per lookup stage. A status event becomes a [`Case`] per affected
//! booking that picks up reference rows on its way (the flight, the booking, the connecting flight,
//! an alternative, the flight after it) and ends with an [`Outcome`], which [`explain`] turns into a
//! decision. The stages are plain functions of the looked-up rows, so the logic is tested without
//! a dataflow.

// Cases are boxed on purpose: they move through several exchanges, buffers and sorts, where
// moving a pointer instead of the whole case cut the pipeline's time by a quarter.
#![allow(clippy::vec_box)]

use super::event::{Booking, FlightEvent, FlightStatus, ScheduledFlight};
use inflight_engine::time::{Stamp, format_rfc3339};
use inflight_engine::{Key, Millis, Position, SourceName, SourceRef};
use inflight_operators::{Action, DecidedBy, Decision, Evidence, EvidenceWriter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MINUTE: Millis = 60_000;

/// Minimum connection times: how long a passenger needs between arriving and the next departure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mct {
    /// Minutes at airports without their own entry.
    pub default_minutes: u32,
    /// Minutes per airport code.
    pub airports: BTreeMap<String, u32>,
}

impl Default for Mct {
    fn default() -> Self {
        Mct { default_minutes: 45, airports: BTreeMap::new() }
    }
}

impl Mct {
    /// The minimum connection time at `airport`, in milliseconds.
    pub fn at(&self, airport: &str) -> Millis {
        Millis::from(self.airports.get(airport).copied().unwrap_or(self.default_minutes)) * MINUTE
    }
}

/// Which lookup a case needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Next {
    /// None: it is decided.
    Decide,
    /// The connecting flight's schedule (the leg after the delayed one).
    Connection,
    /// The schedule of the leg after the broken one (an alternative must still make it).
    Following,
    /// Flights on the broken leg's route.
    Alternatives,
    /// The seat allocator of the broken leg's route: seats are taken, held or given back.
    Seats,
    /// Not a booking's case: the status of a flight, for the seat allocator of its route (the
    /// current times and state of the flights it may hand seats on).
    Update,
}
/// How a case ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    /// The connection holds, or there is none.
    Unaffected,
    /// One leg is broken and the alternative fixes it.
    Rebook,
    /// No flight on the route has seats, leaves late enough and still makes the leg after it.
    NoAlternative,
    /// Delay of unknown length: hold seats on the alternative.
    Protect,
    /// The flight lands elsewhere.
    Diverted,
    /// Reference data the case needs is missing (named).
    Missing(String),
}
/// The leg a case must replace and the earliest the replacement may leave.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Broken {
    /// The leg's flight.
    pub flight: ScheduledFlight,
    /// Its index in the booking's legs.
    pub leg: usize,
    /// Earliest departure of a replacement.
    pub ready: Millis,
    /// Hold seats (delay of unknown length) rather than rebook.
    pub protect: bool,
}

/// A status event on its way through the lookups, for one booking.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Case {
    /// The lookup it needs next.
    pub next: Next,
    /// The status event.
    pub event: FlightEvent,
    /// Where it was read.
    pub pos: Position,
    /// When it was read (wall clock, ns).
    pub ingest_ns: u64,
    /// The flight's schedule.
    pub flight: Option<ScheduledFlight>,
    /// The booking.
    pub booking: Option<Booking>,
    /// The flight's index in the booking's legs.
    pub leg: usize,
    /// The connecting flight (the leg after the delayed one).
    pub connection: Option<ScheduledFlight>,
    /// The leg to replace.
    pub broken: Option<Broken>,
    /// The replacement chosen.
    pub alternative: Option<ScheduledFlight>,
    /// The leg after the broken one.
    pub following: Option<ScheduledFlight>,
    /// The flights of the broken leg's route as of the event, for the seat allocator (emptied
    /// once it has chosen).
    pub candidates: Vec<ScheduledFlight>,
    /// What the seat allocator did.
    pub seats: Option<SeatEvidence>,
    /// How it ended.
    pub outcome: Option<Outcome>,
}

/// A flight the allocator passed over, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Skipped {
    /// The flight.
    pub flight_id: Key,
    /// Why: full, departs too early, misses the next leg, cancelled, departed.
    pub why: String,
}

/// What the seat allocator did for one decision.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeatEvidence {
    /// Passengers this decision moves (all of the booking's unless the group was split).
    pub passengers: u32,
    /// Seats free on the alternative before and after this booking (0, 0 without one).
    pub free_before: u32,
    /// After.
    pub free_after: u32,
    /// Position of the booking among the requests for the route at this event time (1-based).
    pub order: u32,
    /// Part `k` of `n` of a split group (None: the booking moves whole).
    pub part: Option<(u32, u32)>,
    /// Earlier alternatives passed over (the first few, by departure).
    pub skipped: Vec<Skipped>,
    /// How many more were passed over than `skipped` lists.
    pub skipped_more: u32,
    /// A PROTECT hold's expiry (event time).
    pub held_until: Option<Millis>,
}

impl Case {
    /// A new case for a status event. (Boxed: cases move through several exchanges and buffers,
    /// and a pointer moves faster.)
    pub fn start(event: FlightEvent, pos: Position, ingest_ns: u64) -> Box<Case> {
        Box::new(Case {
            next: Next::Decide,
            event,
            pos,
            ingest_ns,
            flight: None,
            booking: None,
            leg: 0,
            connection: None,
            broken: None,
            alternative: None,
            following: None,
            candidates: Vec::new(),
            seats: None,
            outcome: None,
        })
    }

    /// The event time of the status event.
    pub fn time(&self) -> Millis {
        self.event.timestamp
    }

    pub(crate) fn end(mut self: Box<Self>, outcome: Outcome) -> Box<Case> {
        self.next = Next::Decide;
        self.outcome = Some(outcome);
        self
    }

    fn then(mut self: Box<Self>, next: Next) -> Box<Case> {
        self.next = next;
        self
    }

    /// The delay announced, if its length is known.
    pub fn delay(&self) -> Option<Millis> {
        if self.event.status == FlightStatus::OnTime {
            return Some(0);
        }
        if let Some(m) = self.event.delay_minutes {
            // Early (negative) is on time for every connection.
            return Some(Millis::from(m.max(0).unsigned_abs()) * MINUTE);
        }
        let (new, flight) = (self.event.new_departure?, self.flight.as_ref()?);
        Some(new.saturating_sub(flight.departure))
    }

    /// Whether this is a re-seating: the status cancels the flight the booking was seated on
    /// instead of one of its own legs (a cancelled leg is itself the broken one).
    pub fn is_reseat(&self) -> bool {
        self.event.status == FlightStatus::Cancelled
            && self.broken.as_ref().is_some_and(|b| b.flight.flight_id != self.event.flight_id)
    }

    /// The key of the next lookup's table: a flight id, or a route for alternatives.
    pub fn leg_id(&self, offset: usize) -> Option<&Key> {
        self.booking.as_ref()?.legs.get(self.leg + offset)
    }
}

/// Whether a status can change what a booking must do: delays, cancellations and diversions,
/// and ON_TIME (a delay of zero), which can resolve an earlier one.
fn concerns_bookings(status: FlightStatus) -> bool {
    matches!(status, FlightStatus::Delayed | FlightStatus::Cancelled | FlightStatus::Diverted | FlightStatus::OnTime)
}

/// Stage 1: the status event's flight in the schedule (a status for a flight the schedule does not
/// know affects no booking we could find). Every status of a known flight also goes to the seat
/// allocator of the flight's route as an update ([`Next::Update`]).
///
/// SCHEDULED and BOARDING change nothing the allocator keeps and are not sent.
pub fn with_flight(mut case: Box<Case>, flights: &[&ScheduledFlight], out: &mut Vec<Box<Case>>) {
    let Some(flight) = flights.first() else {
        // Not silently dropped: the next stage escalates it for each booking that has the flight
        // as a leg, or for the flight itself.
        if concerns_bookings(case.event.status) {
            out.push(case);
        }
        return;
    };
    case.flight = Some((*flight).clone());
    if concerns_bookings(case.event.status) {
        out.push(case.clone());
    }
    if !matches!(case.event.status, FlightStatus::Scheduled | FlightStatus::Boarding) {
        out.push(case.then(Next::Update));
    }
}

/// Stage 2: one case per booking whose itinerary contains the flight (the legs table holds the
/// bookings themselves, so this needs no lookup of its own); decides diversions and last legs and
/// sends the rest on.
pub fn per_booking(case: Box<Case>, bookings: &[&Booking], out: &mut Vec<Box<Case>>) {
    let Some(flight) = case.flight.as_ref() else {
        let what = format!("flight {} is not in the schedule", case.event.flight_id);
        if bookings.is_empty() {
            out.push(case.end(Outcome::Missing(what)));
            return;
        }
        for booking in bookings {
            let mut case = case.clone();
            case.leg = booking.legs.iter().position(|l| *l == case.event.flight_id).unwrap_or_default();
            case.booking = Some((*booking).clone());
            out.push(case.end(Outcome::Missing(what.clone())));
        }
        return;
    };
    for booking in bookings {
        let Some(leg) = booking.legs.iter().position(|l| *l == case.event.flight_id) else { continue };
        let mut case = case.clone();
        case.booking = Some((*booking).clone());
        case.leg = leg;
        out.push(match case.event.status {
            FlightStatus::Diverted => case.end(Outcome::Diverted),
            FlightStatus::Cancelled => {
                // Any flight on the route that has not left yet will do, at its current times.
                let (flight, ready) = (flight.clone(), case.time());
                case.broken = Some(Broken { flight, leg, ready, protect: false });
                case.to_alternatives()
            }
            _ if case.leg_id(1).is_none() => case.end(Outcome::Unaffected),
            _ => case.then(Next::Connection),
        });
    }
}

/// Stage 3 (delays): does the passenger still make the connecting flight? A connection that holds
/// goes to the seat allocator of its route all the same: a hold placed there for this booking by
/// an earlier status (PROTECT) is given back.
pub fn with_connection(mut case: Box<Case>, flights: &[&ScheduledFlight], mct: &Mct, out: &mut Vec<Box<Case>>) {
    let (Some(connection), Some(flight)) = (flights.first().map(|f| (*f).clone()), case.flight.as_ref()) else {
        let id = case.leg_id(1).cloned().unwrap_or_default();
        out.push(case.end(Outcome::Missing(format!("connecting flight {id} is not in the schedule"))));
        return;
    };
    case.connection = Some(connection.clone());
    let leg = case.leg + 1;
    out.push(match case.delay() {
        Some(delay) => {
            let ready = flight.arrival + delay + mct.at(&flight.destination);
            if ready <= connection.departure {
                let mut case = case.end(Outcome::Unaffected);
                case.next = Next::Seats;
                case
            } else {
                case.broken = Some(Broken { flight: connection, leg, ready, protect: false });
                case.to_alternatives()
            }
        }
        None => {
            let ready = connection.departure;
            case.broken = Some(Broken { flight: connection, leg, ready, protect: true });
            case.to_alternatives()
        }
    });
}

/// Stage 4: the leg after the broken one, which an alternative must still make.
pub fn with_following(mut case: Box<Case>, flights: &[&ScheduledFlight], out: &mut Vec<Box<Case>>) {
    let Some(following) = flights.first().map(|f| (*f).clone()) else {
        let id = case.following_id().cloned().unwrap_or_default();
        out.push(case.end(Outcome::Missing(format!("flight {id} of the itinerary is not in the schedule"))));
        return;
    };
    case.following = Some(following);
    out.push(case.then(Next::Alternatives));
}

/// Stage 5: the flights on the broken leg's route, as of the event, for the seat allocator.
pub fn with_alternatives(mut case: Box<Case>, route: &[&ScheduledFlight], mct: &Mct, out: &mut Vec<Box<Case>>) {
    let Some(broken) = case.broken.as_ref() else { return };
    let candidates = route
        .iter()
        .filter(|f| f.flight_id != broken.flight.flight_id && f.flight_id != case.event.flight_id)
        // Delays only ever make a flight later: one scheduled to arrive too late for the next leg
        // never qualifies, and one scheduled to have landed before the passenger is ready would
        // need a delay longer than its flight (not considered). Sending the whole route to the
        // allocator was a third of the pipeline's time.
        .filter(|f| f.departure >= broken.ready || f.arrival >= broken.ready)
        .filter(|f| case.following.as_ref().is_none_or(|n| f.arrival + mct.at(&f.destination) <= n.departure))
        .map(|f| (*f).clone())
        .collect();
    case.candidates = candidates;
    out.push(case.then(Next::Seats));
}

impl Case {
    /// The id of the leg after the broken one.
    pub fn following_id(&self) -> Option<&Key> {
        let broken = self.broken.as_ref()?;
        self.booking.as_ref()?.legs.get(broken.leg + 1)
    }

    /// On to the alternatives, by way of the leg after the broken one where there is one.
    fn to_alternatives(self: Box<Self>) -> Box<Case> {
        let next = if self.following_id().is_some() { Next::Following } else { Next::Alternatives };
        self.then(next)
    }

    /// The seat allocator a case goes to: its broken leg's route (or, for a connection that holds,
    /// the connection's route, where an earlier hold may be); for an update, its flight's route.
    pub fn seat_route(&self) -> Key {
        let flight = match self.next {
            Next::Update => self.flight.as_ref(),
            _ => self.broken.as_ref().map(|b| &b.flight).or(self.connection.as_ref()),
        };
        flight.map(route_key).unwrap_or_default()
    }
}

/// The key of a flight's route.
pub fn route_key(flight: &ScheduledFlight) -> Key {
    let mut key = flight.origin.clone();
    key.push('>');
    key.push_str(&flight.destination);
    key
}

/// Writes a flight as decisions show it.
fn write_flight(w: &mut EvidenceWriter, f: &ScheduledFlight) {
    w.str("flight_id", &f.flight_id).str("origin", &f.origin).str("destination", &f.destination);
    w.stamp("departure", f.departure).stamp("arrival", f.arrival).u64("seats_free", f.seats_free.into());
}

/// The evidence of a flight decision, field by field (as serde_json wrote the struct it replaced:
/// the generic serializer was about a sixth of the pipeline's instructions). What it shows of the
/// status event leaves out its timestamp (the decision's `event_time`) and its absent fields.
fn evidence(case: &Case) -> Evidence {
    let mut w = EvidenceWriter::new();
    let e = &case.event;
    w.object("status", |w| {
        w.str("flight_id", &e.flight_id).str("status", e.status.as_str());
        if let Some(m) = e.delay_minutes {
            w.i64("delay_minutes", m.into());
        }
        if let Some(t) = e.new_departure {
            w.stamp("new_departure", t);
        }
        if let Some(gate) = &e.gate {
            w.str("gate", gate);
        }
        if let Some(reason) = &e.reason {
            w.str("reason", reason);
        }
    });
    let flight = |w: &mut EvidenceWriter, key, f: Option<&ScheduledFlight>| {
        if let Some(f) = f {
            w.object(key, |w| write_flight(w, f));
        }
    };
    match &case.flight {
        Some(f) => flight(&mut w, "flight", Some(f)),
        None => {
            w.null("flight");
        }
    }
    match &case.booking {
        Some(b) => {
            w.object("booking", |w| {
                w.str("booking_id", &b.booking_id).u64("passengers", b.passengers.into());
                w.strs("legs", b.legs.iter().map(|l| l.as_str()));
            });
        }
        None => {
            w.null("booking");
        }
    }
    if let Some(d) = case.delay() {
        w.u64("delay_minutes", d / MINUTE);
    }
    flight(&mut w, "connection", case.connection.as_ref());
    if let (Some(b), Some(_)) = (&case.broken, case.outcome.as_ref()) {
        if !b.protect {
            w.stamp("ready_at", b.ready);
        }
    }
    if let Some(b) = &case.broken {
        w.str("broken_leg", &b.flight.flight_id);
    }
    flight(&mut w, "alternative", case.alternative.as_ref());
    flight(&mut w, "following", case.following.as_ref());
    if let Some(s) = &case.seats {
        w.object("seats", |w| {
            w.u64("passengers", s.passengers.into()).u64("free_before", s.free_before.into());
            w.u64("free_after", s.free_after.into()).u64("order", s.order.into());
            if let Some((k, n)) = s.part {
                w.u64s("part", &[k.into(), n.into()]);
            }
            if !s.skipped.is_empty() {
                w.objects("skipped", &s.skipped, |w, skip| {
                    w.str("flight_id", &skip.flight_id).str("why", &skip.why);
                });
            }
            if s.skipped_more > 0 {
                w.u64("skipped_more", s.skipped_more.into());
            }
            if let Some(t) = s.held_until {
                w.stamp("held_until", t);
            }
        });
    }
    w.finish()
}

/// The rules' action, confidence and reason for a finished case.
pub fn verdict(case: &Case, mct: &Mct) -> (Action, f64, String) {
    let e = &case.event;
    let id = &e.flight_id;
    let all = case.booking.as_ref().map_or(0, |b| b.passengers);
    let seats = case.seats.as_ref();
    let (pax, held) = match seats {
        Some(s) if s.part.is_some() => (format!("{} of {all}", s.passengers), s.passengers),
        _ => (all.to_string(), all),
    };
    let seat_word = if held == 1 { "seat" } else { "seats" };
    let alt = case.alternative.as_ref();
    let change = seats.map(|s| format!(" ({} → {} seats free)", s.free_before, s.free_after)).unwrap_or_default();
    let alt_text = |f: Option<&ScheduledFlight>| {
        f.map(|f| format!("{} leaving {}", f.flight_id, Stamp(f.departure))).unwrap_or_default()
    };
    let broken = case.broken.as_ref();
    let broken_id = broken.map(|b| b.flight.flight_id.as_str()).unwrap_or_default();
    let status = match e.status {
        FlightStatus::Cancelled => "is cancelled".to_owned(),
        FlightStatus::OnTime => "is on time".to_owned(),
        _ if e.delay_minutes.is_some_and(|m| m < 0) => {
            format!("leaves {} min early", e.delay_minutes.unwrap_or_default().unsigned_abs())
        }
        _ => match case.delay() {
            Some(d) => format!("is delayed {} min", d / MINUTE),
            None => "is delayed (length unknown)".to_owned(),
        },
    };
    match case.outcome.as_ref().unwrap_or(&Outcome::Unaffected) {
        Outcome::Unaffected => match (&case.connection, &case.flight) {
            (Some(c), Some(f)) => {
                let ready = f.arrival + case.delay().unwrap_or(0) + mct.at(&f.destination);
                let slack = (c.departure - ready.min(c.departure)) / MINUTE;
                let reason =
                    format!("{id} {status}; the connection to {} still holds ({slack} min to spare)", c.flight_id);
                (Action::NONE, 0.95, reason)
            }
            _ => (Action::NONE, 0.95, format!("{id} {status}; it is the booking's last leg, no connection")),
        },
        Outcome::Rebook => {
            let what = if case.is_reseat() {
                format!("the booking was seated on it in place of {broken_id}")
            } else if e.status == FlightStatus::Cancelled {
                "the booking loses it".to_owned()
            } else {
                format!("this breaks the connection to {broken_id}")
            };
            (Action::REBOOK, 0.9, format!("{id} {status} and {what}: rebook {pax} on {}{change}", alt_text(alt)))
        }
        Outcome::NoAlternative => {
            let route = broken.map(|b| format!("{}→{}", b.flight.origin, b.flight.destination)).unwrap_or_default();
            let skipped = seats.map(|s| &s.skipped[..]).unwrap_or_default();
            let why = if skipped.is_empty() {
                let next = case.following.as_ref().map(|n| format!(" and reaches {} in time", n.flight_id));
                format!("no other flight {route} leaves in time{}", next.unwrap_or_default())
            } else {
                let mut list: Vec<String> = skipped.iter().map(|s| format!("{} {}", s.flight_id, s.why)).collect();
                if let Some(more) = seats.map(|s| s.skipped_more).filter(|m| *m > 0) {
                    list.push(format!("{more} more"));
                }
                list.join(", ")
            };
            let full = !skipped.is_empty() && skipped.iter().all(|s| s.why.starts_with("full"));
            let what = if full { "no seats" } else { "no alternative" };
            let reason = format!("{id} {status}; nothing {route} can take {pax} ({why}): {what}, escalate");
            (Action::ESCALATE, 0.5, reason)
        }
        Outcome::Protect => {
            let until = seats.and_then(|s| s.held_until).map(|t| format!(" until {}", Stamp(t))).unwrap_or_default();
            let again = if case.is_reseat() { " (seats were held on it)" } else { "" };
            let reason = format!(
                "{id} {status}{again}: hold {pax} {seat_word} on {}{until} in case {broken_id} is missed{change}",
                alt_text(alt)
            );
            (Action::PROTECT, 0.75, reason)
        }
        Outcome::Diverted => (Action::ESCALATE, 0.6, format!("{id} is diverted: the itinerary must be rebuilt")),
        Outcome::Missing(what) => (Action::ESCALATE, 0.4, format!("{id} {status}, but {what}")),
    }
}

/// The decision for a finished case.
pub fn explain(case: &Case, mct: &Mct, source: &SourceName) -> Decision {
    let (action, confidence, reason) = verdict(case, mct);
    // A status of a flight not in the schedule and on no booking is about the flight alone.
    let booking_id = case.booking.as_ref().map_or_else(|| case.event.flight_id.clone(), |b| b.booking_id.clone());
    let time = case.time();
    let part = case.seats.as_ref().and_then(|s| s.part).map(|(k, _)| format!("/{k}")).unwrap_or_default();
    Decision {
        id: format!("flight/{booking_id}/{}/{time}{part}", case.event.flight_id),
        pipeline: "flight".into(),
        key: booking_id,
        action,
        reason,
        confidence,
        suggested_size: None,
        position_after: None,
        decided_by: DecidedBy::Rules,
        model: None,
        evidence: evidence(case),
        event_time: format_rfc3339(time),
        decided_at: format_rfc3339(inflight_engine::time::wall_millis()),
        source: SourceRef::new(source, case.pos),
        ingest_ns: case.ingest_ns,
        event_time_ms: time,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const H: Millis = 60 * MINUTE;
    const T0: Millis = 1_704_621_600_000; // 2024-01-07T10:00:00Z

    fn flight(id: &str, from: &str, to: &str, dep_h: Millis, arr_h: Millis, seats: u32) -> ScheduledFlight {
        ScheduledFlight {
            flight_id: id.into(),
            origin: from.into(),
            destination: to.into(),
            departure: T0 + dep_h * H,
            arrival: T0 + arr_h * H,
            seats_free: seats,
        }
    }

    fn booking(legs: &[&str]) -> Booking {
        Booking { booking_id: "B1".into(), passengers: 2, legs: legs.iter().map(|l| Key::from(*l)).collect() }
    }

    fn delayed(id: &str, minutes: Option<i32>) -> FlightEvent {
        FlightEvent {
            flight_id: id.into(),
            status: FlightStatus::Delayed,
            timestamp: T0,
            delay_minutes: minutes,
            new_departure: None,
            gate: None,
            reason: None,
        }
    }

    /// Runs a case through every stage against a fixed schedule.
    fn run(event: FlightEvent, schedule: &[ScheduledFlight], b: &Booking) -> Box<Case> {
        run_with(&Mct::default(), event, schedule, b)
    }

    fn run_with(mct: &Mct, event: FlightEvent, schedule: &[ScheduledFlight], b: &Booking) -> Box<Case> {
        let by_id = |id: Option<&Key>| -> Vec<&ScheduledFlight> {
            schedule.iter().filter(|f| Some(&f.flight_id) == id).collect()
        };
        let mut case = Case::start(event, Position::default(), 0);
        let mut out = Vec::new();
        with_flight(case.clone(), &by_id(Some(&case.event.flight_id)), &mut out);
        out.retain(|c| c.next != Next::Update);
        case = out.pop().unwrap();
        per_booking(case, &[b], &mut out);
        case = out.pop().unwrap();
        loop {
            match case.next {
                Next::Decide | Next::Update => return case,
                Next::Connection => with_connection(case.clone(), &by_id(case.leg_id(1)), mct, &mut out),
                Next::Following => with_following(case.clone(), &by_id(case.following_id()), &mut out),
                Next::Alternatives => {
                    let broken = case.broken.clone().unwrap().flight;
                    let route: Vec<_> = schedule
                        .iter()
                        .filter(|f| (&f.origin, &f.destination) == (&broken.origin, &broken.destination))
                        .collect();
                    with_alternatives(case.clone(), &route, mct, &mut out);
                }
                Next::Seats => {
                    let mut seats = crate::flight::RouteSeats::default();
                    seats.apply(vec![case.clone()], case.time(), &Default::default(), mct, &mut out);
                    return out.pop().unwrap();
                }
            }
            case = out.pop().unwrap();
        }
    }

    fn schedule() -> Vec<ScheduledFlight> {
        vec![
            flight("F1", "YUL", "YYZ", 0, 1, 10),  // arrives 11:00
            flight("C1", "YYZ", "YVR", 2, 7, 10),  // leaves 12:00
            flight("C2", "YYZ", "YVR", 4, 9, 1),   // too few seats for 2
            flight("C3", "YYZ", "YVR", 5, 10, 10), // the rebooking
            flight("C4", "YYZ", "YVR", 8, 13, 10), // later
        ]
    }

    #[test]
    fn a_delay_past_the_mct_rebooks_onto_the_earliest_later_flight_with_seats() {
        let case = run(delayed("F1", Some(30)), &schedule(), &booking(&["F1", "C1"]));
        assert_eq!(case.outcome, Some(Outcome::Rebook));
        assert_eq!(case.alternative.unwrap().flight_id, "C3");
        assert_eq!(case.broken.unwrap().ready, T0 + H + 30 * MINUTE + 45 * MINUTE);
    }

    #[test]
    fn a_delay_inside_the_mct_changes_nothing() {
        // Arrives 11:15, +45 min MCT = 12:00, exactly the connection's departure.
        let case = run(delayed("F1", Some(15)), &schedule(), &booking(&["F1", "C1"]));
        assert_eq!(case.outcome, Some(Outcome::Unaffected));
        assert_eq!(verdict(&case, &Mct::default()).0, Action::NONE);
        let late = run(delayed("F1", Some(16)), &schedule(), &booking(&["F1", "C1"]));
        assert_eq!(late.outcome, Some(Outcome::Rebook));
    }

    #[test]
    fn the_mct_is_per_airport() {
        let mct = Mct { default_minutes: 45, airports: [("YYZ".to_owned(), 90)].into() };
        let case = run_with(&mct, delayed("F1", Some(15)), &schedule(), &booking(&["F1", "C1"]));
        assert_eq!(case.outcome, Some(Outcome::Rebook), "90 min at YYZ breaks what 45 min would not");
        let elsewhere = Mct { default_minutes: 45, airports: [("YUL".to_owned(), 90)].into() };
        let case = run_with(&elsewhere, delayed("F1", Some(15)), &schedule(), &booking(&["F1", "C1"]));
        assert_eq!(case.outcome, Some(Outcome::Unaffected));
    }

    #[test]
    fn no_alternative_escalates_and_a_late_alternative_breaks_the_next_leg() {
        let only_full = vec![
            flight("F1", "YUL", "YYZ", 0, 1, 10),
            flight("C1", "YYZ", "YVR", 2, 7, 10),
            flight("C2", "YYZ", "YVR", 4, 9, 1),
        ];
        let case = run(delayed("F1", Some(60)), &only_full, &booking(&["F1", "C1"]));
        assert_eq!(case.outcome, Some(Outcome::NoAlternative));
        assert_eq!(verdict(&case, &Mct::default()).0, Action::ESCALATE);

        let mut s = schedule();
        s.push(flight("V1", "YVR", "NRT", 10, 20, 10)); // C3 lands at 20:00: too late for V1 at 20:00
        let case = run(delayed("F1", Some(60)), &s, &booking(&["F1", "C1", "V1"]));
        assert_eq!(case.outcome, Some(Outcome::NoAlternative));
        let (action, confidence, reason) = verdict(&case, &Mct::default());
        assert_eq!((action, confidence < 0.7), (Action::ESCALATE, true));
        // C3 and C4 land too late for V1 (not even candidates); C2 would connect but is full.
        assert!(reason.contains("(C2 full (1 free)): no seats"), "{reason}");
    }

    #[test]
    fn a_cancellation_rebooks_the_same_route_and_an_unknown_delay_protects() {
        let mut s = schedule();
        s.push(flight("F2", "YUL", "YYZ", 0, 1, 0)); // same time, no seats
        s.push(flight("F3", "YUL", "YYZ", 1, 2, 5)); // arrives 12:00: misses C1 at 12:00
        let cancelled = FlightEvent { status: FlightStatus::Cancelled, ..delayed("F1", None) };
        let case = run(cancelled, &s, &booking(&["F1", "C1"]));
        // F2 has no seats, and F3 arrives too late for C1 (not even a candidate): nothing fits.
        assert_eq!(case.outcome, Some(Outcome::NoAlternative));
        let skipped: Vec<_> = case.seats.as_ref().unwrap().skipped.iter().map(|s| s.why.as_str()).collect();
        assert_eq!(skipped, ["full (0 free)"]);

        let case = run(delayed("F1", None), &schedule(), &booking(&["F1", "C1"]));
        assert_eq!((case.outcome, case.alternative.unwrap().flight_id.as_str()), (Some(Outcome::Protect), "C3"));
    }

    #[test]
    fn other_statuses_only_update_the_seat_allocator_and_on_time_clears() {
        let boarding = FlightEvent { status: FlightStatus::Boarding, ..delayed("F1", None) };
        let mut out = Vec::new();
        let f1 = schedule()[0].clone();
        with_flight(Case::start(boarding, Position::default(), 0), &[&f1], &mut out);
        assert!(out.is_empty(), "boarding changes nothing the allocator keeps");
        let departed = FlightEvent { status: FlightStatus::Departed, ..delayed("F1", None) };
        with_flight(Case::start(departed, Position::default(), 0), &[&f1], &mut out);
        assert_eq!(out.iter().map(|c| c.next).collect::<Vec<_>>(), [Next::Update]);
        let on_time = FlightEvent { status: FlightStatus::OnTime, ..delayed("F1", None) };
        let case = run(on_time, &schedule(), &booking(&["F1", "C1"]));
        assert_eq!((case.outcome, case.next), (Some(Outcome::Unaffected), Next::Seats));
    }
}
