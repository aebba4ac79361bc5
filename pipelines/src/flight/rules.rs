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
use inflight_operators::{Action, DecidedBy, Decision, Evidence};
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
    /// Flights on the broken leg's route.
    Alternatives,
    /// The schedule of the leg after the broken one (does the alternative still connect?).
    Following,
}

/// How a case ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    /// The connection holds, or there is none.
    Unaffected,
    /// One leg is broken and the alternative fixes it.
    Rebook,
    /// The alternative arrives too late for the leg after it: several legs broken.
    RebookBreaksNext,
    /// No later flight on the route has enough seats.
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
    /// How it ended.
    pub outcome: Option<Outcome>,
}

impl Case {
    /// A new case for a status event, or None for statuses that affect no connection. (Boxed:
    /// cases move through several exchanges and buffers, and a pointer moves faster.)
    pub fn start(event: FlightEvent, pos: Position, ingest_ns: u64) -> Option<Box<Case>> {
        if !matches!(event.status, FlightStatus::Delayed | FlightStatus::Cancelled | FlightStatus::Diverted) {
            return None;
        }
        Some(Box::new(Case {
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
            outcome: None,
        }))
    }

    /// The event time of the status event.
    pub fn time(&self) -> Millis {
        self.event.timestamp
    }

    fn end(mut self: Box<Self>, outcome: Outcome) -> Box<Case> {
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
        if let Some(m) = self.event.delay_minutes {
            return Some(Millis::from(m) * MINUTE);
        }
        let (new, flight) = (self.event.new_departure?, self.flight.as_ref()?);
        Some(new.saturating_sub(flight.departure))
    }

    /// The key of the next lookup's table: a flight id, or a route for alternatives.
    pub fn leg_id(&self, offset: usize) -> Option<&Key> {
        self.booking.as_ref()?.legs.get(self.leg + offset)
    }
}

/// Stage 1: the status event's flight in the schedule (a status for a flight the schedule does not
/// know affects no booking we could find).
pub fn with_flight(mut case: Box<Case>, flights: &[&ScheduledFlight], out: &mut Vec<Box<Case>>) {
    if let Some(flight) = flights.first() {
        case.flight = Some((*flight).clone());
        out.push(case);
    }
}

/// Stage 2: one case per booking whose itinerary contains the flight (the legs table holds the
/// bookings themselves, so this needs no lookup of its own); decides diversions and last legs and
/// sends the rest on.
pub fn per_booking(case: Box<Case>, bookings: &[&Booking], out: &mut Vec<Box<Case>>) {
    let Some(flight) = case.flight.as_ref() else { return };
    for booking in bookings {
        let Some(leg) = booking.legs.iter().position(|l| *l == case.event.flight_id) else { continue };
        let mut case = case.clone();
        case.booking = Some((*booking).clone());
        case.leg = leg;
        out.push(match case.event.status {
            FlightStatus::Diverted => case.end(Outcome::Diverted),
            FlightStatus::Cancelled => {
                let (flight, ready) = (flight.clone(), flight.departure);
                case.broken = Some(Broken { flight, leg, ready, protect: false });
                case.then(Next::Alternatives)
            }
            _ if case.leg_id(1).is_none() => case.end(Outcome::Unaffected),
            _ => case.then(Next::Connection),
        });
    }
}

/// Stage 4 (delays): does the passenger still make the connecting flight?
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
                case.end(Outcome::Unaffected)
            } else {
                case.broken = Some(Broken { flight: connection, leg, ready, protect: false });
                case.then(Next::Alternatives)
            }
        }
        None => {
            let ready = connection.departure;
            case.broken = Some(Broken { flight: connection, leg, ready, protect: true });
            case.then(Next::Alternatives)
        }
    });
}

/// Stage 5: the earliest later flight on the broken leg's route with seats for everyone.
pub fn with_alternatives(mut case: Box<Case>, route: &[&ScheduledFlight], out: &mut Vec<Box<Case>>) {
    let (Some(broken), Some(booking)) = (case.broken.as_ref(), case.booking.as_ref()) else { return };
    let alternative = route
        .iter()
        .copied()
        .filter(|f| f.flight_id != broken.flight.flight_id && f.flight_id != case.event.flight_id)
        .filter(|f| f.departure >= broken.ready && f.seats_free >= booking.passengers)
        .min_by(|a, b| (a.departure, &a.flight_id).cmp(&(b.departure, &b.flight_id)))
        .cloned();
    let Some(alternative) = alternative else {
        out.push(case.end(Outcome::NoAlternative));
        return;
    };
    let (has_following, protect) = (booking.legs.get(broken.leg + 1).is_some(), broken.protect);
    case.alternative = Some(alternative);
    out.push(match (has_following, protect) {
        (true, _) => case.then(Next::Following),
        (false, true) => case.end(Outcome::Protect),
        (false, false) => case.end(Outcome::Rebook),
    });
}

/// Stage 6: does the alternative still make the leg after the broken one?
pub fn with_following(mut case: Box<Case>, flights: &[&ScheduledFlight], mct: &Mct, out: &mut Vec<Box<Case>>) {
    let (Some(alternative), Some(broken)) = (case.alternative.as_ref(), case.broken.as_ref()) else { return };
    let Some(following) = flights.first().map(|f| (*f).clone()) else {
        let id = case.following_id().cloned().unwrap_or_default();
        out.push(case.end(Outcome::Missing(format!("flight {id} of the itinerary is not in the schedule"))));
        return;
    };
    let connects = alternative.arrival + mct.at(&alternative.destination) <= following.departure;
    let protect = broken.protect;
    case.following = Some(following);
    out.push(match (connects, protect) {
        (false, _) => case.end(Outcome::RebookBreaksNext),
        (true, true) => case.end(Outcome::Protect),
        (true, false) => case.end(Outcome::Rebook),
    });
}

impl Case {
    /// The id of the leg after the broken one.
    pub fn following_id(&self) -> Option<&Key> {
        let broken = self.broken.as_ref()?;
        self.booking.as_ref()?.legs.get(broken.leg + 1)
    }
}

/// What a decision shows of the status event: what it says, without its timestamp (the decision's
/// `event_time`) and without the fields it leaves out (decisions are most of a run's output).
#[derive(Serialize)]
struct StatusView<'a> {
    flight_id: &'a str,
    status: FlightStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_minutes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_departure: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl<'a> From<&'a FlightEvent> for StatusView<'a> {
    fn from(e: &'a FlightEvent) -> Self {
        StatusView {
            flight_id: &e.flight_id,
            status: e.status,
            delay_minutes: e.delay_minutes,
            new_departure: e.new_departure.map(Stamp),
            gate: e.gate.as_deref(),
            reason: e.reason.as_deref(),
        }
    }
}

/// What a decision shows of a flight.
#[derive(Serialize)]
struct FlightView<'a> {
    flight_id: &'a str,
    origin: &'a str,
    destination: &'a str,
    departure: Stamp,
    arrival: Stamp,
    seats_free: u32,
}

impl<'a> From<&'a ScheduledFlight> for FlightView<'a> {
    fn from(f: &'a ScheduledFlight) -> Self {
        FlightView {
            flight_id: &f.flight_id,
            origin: &f.origin,
            destination: &f.destination,
            departure: Stamp(f.departure),
            arrival: Stamp(f.arrival),
            seats_free: f.seats_free,
        }
    }
}

/// The evidence of a flight decision.
#[derive(Serialize)]
struct FlightEvidence<'a> {
    status: StatusView<'a>,
    flight: Option<FlightView<'a>>,
    booking: Option<&'a Booking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_minutes: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<FlightView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ready_at: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broken_leg: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alternative: Option<FlightView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    following: Option<FlightView<'a>>,
}

/// The rules' action, confidence and reason for a finished case.
pub fn verdict(case: &Case, mct: &Mct) -> (Action, f64, String) {
    let e = &case.event;
    let id = &e.flight_id;
    let pax = case.booking.as_ref().map_or(0, |b| b.passengers);
    let alt = case.alternative.as_ref();
    let alt_text = |f: Option<&ScheduledFlight>| {
        f.map(|f| format!("{} leaving {}", f.flight_id, Stamp(f.departure))).unwrap_or_default()
    };
    let broken = case.broken.as_ref();
    let broken_id = broken.map(|b| b.flight.flight_id.as_str()).unwrap_or_default();
    let status = match e.status {
        FlightStatus::Cancelled => "is cancelled".to_owned(),
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
            let what = if e.status == FlightStatus::Cancelled {
                "the booking loses it".to_owned()
            } else {
                format!("this breaks the connection to {broken_id}")
            };
            (Action::REBOOK, 0.9, format!("{id} {status} and {what}: rebook {pax} on {}", alt_text(alt)))
        }
        Outcome::RebookBreaksNext => {
            let next = case.following.as_ref().map(|f| f.flight_id.as_str()).unwrap_or_default();
            let reason = format!(
                "{id} {status}; {broken_id} must be replaced, but {} misses {next}: several legs broken",
                alt_text(alt)
            );
            (Action::REBOOK, 0.5, reason)
        }
        Outcome::NoAlternative => {
            let route = broken.map(|b| format!("{}→{}", b.flight.origin, b.flight.destination)).unwrap_or_default();
            let reason =
                format!("{id} {status}; no later flight {route} has seats for {pax}: no alternative, escalate");
            (Action::ESCALATE, 0.5, reason)
        }
        Outcome::Protect => (
            Action::PROTECT,
            0.75,
            format!("{id} {status}: hold {pax} seats on {} in case {broken_id} is missed", alt_text(alt)),
        ),
        Outcome::Diverted => (Action::ESCALATE, 0.6, format!("{id} is diverted: the itinerary must be rebuilt")),
        Outcome::Missing(what) => (Action::ESCALATE, 0.4, format!("{id} {status}, but {what}")),
    }
}

/// The decision for a finished case.
pub fn explain(case: &Case, mct: &Mct, source: &SourceName) -> Decision {
    let (action, confidence, reason) = verdict(case, mct);
    let booking_id = case.booking.as_ref().map(|b| b.booking_id.clone()).unwrap_or_default();
    let ready_at = match (&case.broken, case.outcome.as_ref()) {
        (Some(b), Some(_)) if !b.protect => Some(Stamp(b.ready)),
        _ => None,
    };
    let evidence = FlightEvidence {
        status: StatusView::from(&case.event),
        flight: case.flight.as_ref().map(FlightView::from),
        booking: case.booking.as_ref(),
        delay_minutes: case.delay().map(|d| d / MINUTE),
        connection: case.connection.as_ref().map(FlightView::from),
        ready_at,
        broken_leg: case.broken.as_ref().map(|b| b.flight.flight_id.as_str()),
        alternative: case.alternative.as_ref().map(FlightView::from),
        following: case.following.as_ref().map(FlightView::from),
    };
    let time = case.time();
    Decision {
        id: format!("flight/{booking_id}/{}/{time}", case.event.flight_id),
        pipeline: "flight".into(),
        key: booking_id,
        action,
        reason,
        confidence,
        decided_by: DecidedBy::Rules,
        model: None,
        evidence: Evidence::of(&evidence),
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

    fn delayed(id: &str, minutes: Option<u32>) -> FlightEvent {
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
        let mut case = Case::start(event, Position::default(), 0).unwrap();
        let mut out = Vec::new();
        with_flight(case.clone(), &by_id(Some(&case.event.flight_id)), &mut out);
        case = out.pop().unwrap();
        per_booking(case, &[b], &mut out);
        case = out.pop().unwrap();
        loop {
            match case.next {
                Next::Decide => return case,
                Next::Connection => with_connection(case.clone(), &by_id(case.leg_id(1)), mct, &mut out),
                Next::Alternatives => {
                    let broken = case.broken.clone().unwrap().flight;
                    let route: Vec<_> = schedule
                        .iter()
                        .filter(|f| (&f.origin, &f.destination) == (&broken.origin, &broken.destination))
                        .collect();
                    with_alternatives(case.clone(), &route, &mut out);
                }
                Next::Following => with_following(case.clone(), &by_id(case.following_id()), mct, &mut out),
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
        assert_eq!(case.outcome, Some(Outcome::RebookBreaksNext));
        let (action, confidence, _) = verdict(&case, &Mct::default());
        assert_eq!((action, confidence < 0.7), (Action::REBOOK, true));
    }

    #[test]
    fn a_cancellation_rebooks_the_same_route_and_an_unknown_delay_protects() {
        let mut s = schedule();
        s.push(flight("F2", "YUL", "YYZ", 0, 1, 0)); // same time, no seats
        s.push(flight("F3", "YUL", "YYZ", 1, 2, 5)); // arrives 12:00: misses C1 at 12:00
        let cancelled = FlightEvent { status: FlightStatus::Cancelled, ..delayed("F1", None) };
        let case = run(cancelled, &s, &booking(&["F1", "C1"]));
        assert_eq!(case.alternative.as_ref().unwrap().flight_id, "F3");
        assert_eq!(case.outcome, Some(Outcome::RebookBreaksNext));

        let case = run(delayed("F1", None), &schedule(), &booking(&["F1", "C1"]));
        assert_eq!((case.outcome, case.alternative.unwrap().flight_id.as_str()), (Some(Outcome::Protect), "C3"));
    }

    #[test]
    fn other_statuses_start_no_case() {
        let on_time = FlightEvent { status: FlightStatus::OnTime, ..delayed("F1", None) };
        assert!(Case::start(on_time, Position::default(), 0).is_none());
    }
}
