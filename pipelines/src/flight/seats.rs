//! Seat inventory: the seats a route's flights still have for rebooking, as state of the dataflow.
//!
//! Every flight belongs to one route (origin → destination), and a broken leg is only ever replaced
//! by a flight of its own route, so one allocator per route owns all the seats a request can take:
//! the allocator of a route lives on the worker that owns the route's key, and a request needs no
//! second hop when its first choice is full. A flight's free seats are the schedule's `seats_free`
//! (as of the event: schedule upserts take effect at their timestamp) minus the seats taken by
//! REBOOK and held by PROTECT decisions, plus those given back.
//!
//! Within one event time a route's allocator applies, in this order (the same at any parallelism,
//! because it does not depend on which worker read what or when):
//! 1. booking deletes (their seats come back);
//! 2. status updates of the route's flights (current times, cancellations, departures), by source
//!    position;
//! 3. connections that hold again (an earlier hold for the booking comes back), by booking;
//! 4. requests, earliest broken departure first, then larger groups first (first fit by decreasing
//!    size: the groups hardest to place choose first, and the small ones fill the gaps; smallest
//!    first left a seat free on a 4-seat flight and a 4-passenger group without one), then booking
//!    id, then source position.
//!
//! A request first gives back what the same booking and leg took before (a later status decides
//! again), then tries the route's flights by current departure: a flight that is cancelled, has
//! left, leaves before the passenger is ready, misses the itinerary's next leg or has too few seats
//! is passed over with that reason. A PROTECT hold expires `hold_minutes` after it was placed.
//!
//! When a flight that took or holds seats is cancelled, the bookings on it are seated again at the
//! cancellation's time (re-seating, served with that time's requests in the same order): each
//! request is kept with its seats, so the allocator tries the request's other candidates (as of
//! the status that made it; their state as of now), and the new seats keep the cause of the old.

// Cases are boxed on purpose (see rules.rs): they move through exchanges and sorts.
#![allow(clippy::vec_box)]

use super::event::{FlightStatus, ScheduledFlight};
use super::rules::{Case, Mct, Next, Outcome, SeatEvidence, Skipped};
use inflight_engine::checkpoint::encode;
use inflight_engine::time::Stamp;
use inflight_engine::{Key, Millis, State, Stream, key_hash};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;

const MINUTE: Millis = 60_000;

/// Flights passed over that a decision names with their reason (the rest are counted).
const MAX_SKIPPED: usize = 5;

/// How seats are handed out (`[seats]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeatConfig {
    /// Minutes a PROTECT hold keeps its seats unless a later status decides the booking again.
    pub hold_minutes: u32,
    /// Split a group that no single flight can take across several flights (one decision per
    /// part); off: a booking moves whole or is escalated.
    pub split_groups: bool,
}

impl Default for SeatConfig {
    fn default() -> Self {
        SeatConfig { hold_minutes: 120, split_groups: false }
    }
}

/// What the allocator knows of one flight of its route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FlightSeats {
    /// Seats taken or held by our decisions.
    taken: u32,
    /// Known delay of its departure and arrival.
    delay: Millis,
    cancelled: bool,
    departed: bool,
}

/// Seats one booking's leg took on one flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Taken {
    leg: usize,
    flight_id: Key,
    seats: u32,
    /// A PROTECT hold's expiry.
    until: Option<Millis>,
    /// The flight whose status led to it: only a later status of that flight that lets the
    /// connection hold gives it back (an on-time inbound flight leaves alone the seats a
    /// cancelled connection's rebooking took).
    cause: Key,
    /// The request that took them (its candidates included), to seat it again if the flight is
    /// cancelled.
    request: Box<Case>,
}

/// The seat state of one route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSeats {
    flights: FxHashMap<Key, FlightSeats>,
    by_booking: FxHashMap<Key, Vec<Taken>>,
    /// The earliest expiry of a hold (or later): no hold expires before it.
    next_expiry: Option<Millis>,
}

/// The order of a route's records within one event time (see the module's documentation).
pub fn order(a: &Case, b: &Case) -> Ordering {
    let rank = |c: &Case| match (c.next, &c.outcome) {
        (Next::Update, _) => 0,
        (_, Some(Outcome::Unaffected)) => 1,
        _ => 2,
    };
    let passengers = |c: &Case| c.booking.as_ref().map(|b| b.passengers);
    let departure = |c: &Case| c.broken.as_ref().map(|b| b.flight.departure);
    rank(a)
        .cmp(&rank(b))
        .then_with(|| departure(a).cmp(&departure(b)))
        .then_with(|| passengers(b).cmp(&passengers(a)))
        .then_with(|| booking_id(a).cmp(&booking_id(b)))
        .then_with(|| a.leg.cmp(&b.leg))
        .then_with(|| a.pos.cmp(&b.pos))
}

fn booking_id(c: &Case) -> Option<&str> {
    c.booking.as_ref().map(|b| b.booking_id.as_str())
}

impl RouteSeats {
    /// Gives back everything `booking` took on this route.
    pub fn release_booking(&mut self, booking: &str) {
        if let Some(taken) = self.by_booking.remove(booking) {
            for t in taken {
                self.give_back(&t);
            }
        }
    }

    fn give_back(&mut self, t: &Taken) {
        if let Some(f) = self.flights.get_mut(&t.flight_id) {
            f.taken = f.taken.saturating_sub(t.seats);
        }
    }

    /// Gives back what `booking` took for leg `leg` (only what a status of `cause` led to, if given).
    fn release(&mut self, booking: &Key, leg: usize, cause: Option<&Key>) {
        let Some(taken) = self.by_booking.get_mut(booking) else { return };
        let (back, keep): (Vec<Taken>, Vec<Taken>) =
            std::mem::take(taken).into_iter().partition(|t| t.leg == leg && cause.is_none_or(|c| *c == t.cause));
        if keep.is_empty() {
            self.by_booking.remove(booking);
        } else {
            self.by_booking.insert(booking.clone(), keep);
        }
        for t in &back {
            self.give_back(t);
        }
    }

    /// Gives back the holds that expired at or before `now`.
    fn expire(&mut self, now: Millis) {
        if self.next_expiry.is_none_or(|t| t > now) {
            return;
        }
        self.next_expiry = None;
        let mut next = None;
        let mut back = Vec::new();
        self.by_booking.retain(|_, taken| {
            taken.retain(|t| {
                let expired = t.until.is_some_and(|u| u <= now);
                if expired {
                    back.push(t.clone());
                } else if let Some(u) = t.until {
                    next = Some(next.map_or(u, |n: Millis| n.min(u)));
                }
                !expired
            });
            !taken.is_empty()
        });
        self.next_expiry = next;
        for t in &back {
            self.give_back(t);
        }
    }

    /// Applies the records of one event time, sorted by `order`; decided cases go to `out`.
    pub fn apply(
        &mut self,
        records: Vec<Box<Case>>,
        time: Millis,
        config: &SeatConfig,
        mct: &Mct,
        out: &mut Vec<Box<Case>>,
    ) {
        self.expire(time);
        let mut requests = Vec::new();
        let mut cancelled = Vec::new();
        for case in records {
            match (case.next, &case.outcome) {
                (Next::Update, _) => {
                    if self.update(&case) {
                        cancelled.push(case);
                    }
                }
                (_, Some(Outcome::Unaffected)) => {
                    if let Some(b) = case.booking.as_ref() {
                        self.release(&b.booking_id, case.leg + 1, Some(&case.event.flight_id));
                    }
                    out.push(case);
                }
                _ => requests.push(case),
            }
        }
        // After the connections that hold again: what they gave back needs no new seat.
        if !cancelled.is_empty() {
            let again = self.reseat(&cancelled, &requests);
            if !again.is_empty() {
                requests.extend(again);
                requests.sort_by(|a, b| order(a, b));
            }
        }
        for (position, case) in (1..).zip(requests) {
            self.allocate(case, position, config, mct, out);
        }
    }

    /// The requests to serve again because the flight they were seated on is cancelled (`updates`:
    /// this time's cancellations), but for those a request of this time decides anyway.
    fn reseat(&self, updates: &[Box<Case>], requests: &[Box<Case>]) -> Vec<Box<Case>> {
        let same = |c: &Case, booking: &str, leg: usize| {
            booking_id(c) == Some(booking) && c.broken.as_ref().is_some_and(|b| b.leg == leg)
        };
        let mut again: Vec<Box<Case>> = Vec::new();
        for update in updates {
            let cancelled = &update.event.flight_id;
            for (booking, taken) in &self.by_booking {
                for t in taken.iter().filter(|t| t.flight_id == *cancelled) {
                    if requests.iter().chain(&again).any(|c| same(c, booking, t.leg)) {
                        continue;
                    }
                    let mut case = t.request.clone();
                    (case.event, case.pos, case.ingest_ns) = (update.event.clone(), update.pos, update.ingest_ns);
                    case.flight.clone_from(&update.flight);
                    (case.next, case.outcome, case.seats, case.alternative) = (Next::Seats, None, None, None);
                    again.push(case);
                }
            }
        }
        again
    }

    /// A status of one of the route's flights; true if it cancels the flight.
    fn update(&mut self, case: &Case) -> bool {
        let Some(flight) = case.flight.as_ref() else { return false };
        let f = self.flights.entry(flight.flight_id.clone()).or_default();
        match case.event.status {
            FlightStatus::Cancelled => {
                f.cancelled = true;
                return true;
            }
            FlightStatus::Departed | FlightStatus::Arrived | FlightStatus::Diverted => f.departed = true,
            FlightStatus::OnTime => f.delay = 0,
            FlightStatus::Delayed => {
                if let Some(d) = case.delay() {
                    f.delay = d;
                }
            }
            FlightStatus::Scheduled | FlightStatus::Boarding => {}
        }
        false
    }

    /// Serves one request: REBOOK or PROTECT onto the first flight that fits, parts of a split
    /// group, or NoAlternative with the reasons.
    fn allocate(&mut self, mut case: Box<Case>, order: u32, config: &SeatConfig, mct: &Mct, out: &mut Vec<Box<Case>>) {
        let (Some(booking), Some(broken)) = (case.booking.as_ref(), case.broken.as_ref()) else { return };
        let (booking_id, pax, leg, ready, protect) =
            (booking.booking_id.clone(), booking.passengers, broken.leg, broken.ready, broken.protect);
        // Seats taken again keep the cause of those they replace: a later status of that flight
        // letting the connection hold still gives them back.
        let cause = match case.is_reseat() {
            true => self
                .by_booking
                .get(&booking_id)
                .and_then(|ts| ts.iter().find(|t| t.leg == leg))
                .map(|t| t.cause.clone()),
            false => None,
        };
        let cause = cause.unwrap_or_else(|| case.event.flight_id.clone());
        self.release(&booking_id, leg, None);
        let time = case.time();
        // Each candidate at its current times, with what the allocator knows of it (the schedule's
        // rows are kept with the seats taken, for a re-seating).
        let schedule = std::mem::take(&mut case.candidates);
        let mut candidates: Vec<(ScheduledFlight, FlightSeats)> = schedule
            .iter()
            .cloned()
            .map(|mut f| {
                let state = self.flights.get(&f.flight_id).copied().unwrap_or_default();
                f.departure += state.delay;
                f.arrival += state.delay;
                (f, state)
            })
            .collect();
        candidates.sort_by(|(a, _), (b, _)| (a.departure, &a.flight_id).cmp(&(b.departure, &b.flight_id)));
        let next = case.following.as_ref();
        // The seats a flight has free for this request, or why it cannot take anyone.
        let fits = |(flight, state): &(ScheduledFlight, FlightSeats)| -> Result<u32, Skip> {
            let free = flight.seats_free.saturating_sub(state.taken);
            let dep = flight.departure;
            if state.cancelled {
                Err(Skip::Cancelled)
            } else if state.departed || dep < time {
                Err(Skip::Left)
            } else if dep < ready {
                Err(Skip::TooEarly(dep, ready))
            } else if let Some(n) = next.filter(|n| flight.arrival + mct.at(&flight.destination) > n.departure) {
                Err(Skip::MissesNext(n.flight_id.clone()))
            } else {
                Ok(free)
            }
        };
        // Reasons are written for the first few flights passed over only: a busy route's list
        // was most of the allocator's time and of the decision's size.
        let mut more = 0;
        let mut skipped: Vec<Skipped> = Vec::new();
        let skip = |skipped: &mut Vec<Skipped>, more: &mut u32, flight: &ScheduledFlight, why: Skip| {
            if skipped.len() < MAX_SKIPPED {
                skipped.push(Skipped { flight_id: flight.flight_id.clone(), why: why.to_string() });
            } else {
                *more += 1;
            }
        };
        let mut parts: Vec<(ScheduledFlight, u32, u32)> = Vec::new(); // (flight, seats, free before)
        // The whole group on the first flight that takes it...
        for candidate in &candidates {
            match fits(candidate) {
                Ok(free) if free >= pax => {
                    parts.push((candidate.0.clone(), pax, free));
                    break;
                }
                Ok(free) => skip(&mut skipped, &mut more, &candidate.0, Skip::Full(free)),
                Err(why) => skip(&mut skipped, &mut more, &candidate.0, why),
            }
        }
        // ...or, where allowed, in parts on the first flights with any room.
        let mut left = if parts.is_empty() { pax } else { 0 };
        if left > 0 && config.split_groups {
            skipped.clear();
            more = 0;
            for candidate in &candidates {
                if left == 0 {
                    break;
                }
                match fits(candidate) {
                    Ok(free) if free > 0 => {
                        let seats = free.min(left);
                        left -= seats;
                        parts.push((candidate.0.clone(), seats, free));
                    }
                    Ok(free) => skip(&mut skipped, &mut more, &candidate.0, Skip::Full(free)),
                    Err(why) => skip(&mut skipped, &mut more, &candidate.0, why),
                }
            }
        }
        let until = protect.then(|| time.saturating_add(Millis::from(config.hold_minutes) * MINUTE));
        let count = parts.len() as u32 + u32::from(left > 0 && !parts.is_empty());
        let split = count > 1;
        let evidence = |passengers, (free_before, free_after), part, skipped, held_until| SeatEvidence {
            passengers,
            free_before,
            free_after,
            order,
            part,
            skipped,
            skipped_more: more,
            held_until,
        };
        // (alternative, evidence, outcome) of each decision; the last one takes the case itself.
        let mut decided: Vec<(Option<ScheduledFlight>, SeatEvidence, Outcome)> = Vec::with_capacity(parts.len() + 1);
        // Cloned only when seats are taken (most requests on a full route take none).
        let request =
            if parts.is_empty() { None } else { Some(Box::new(Case { candidates: schedule, ..(*case).clone() })) };
        for (k, (flight, seats, free)) in parts.into_iter().enumerate() {
            self.flights.entry(flight.flight_id.clone()).or_default().taken += seats;
            if let Some(request) = request.clone() {
                let (flight_id, cause) = (flight.flight_id.clone(), cause.clone());
                let taken = Taken { leg, flight_id, seats, until, cause, request };
                self.by_booking.entry(booking_id.clone()).or_default().push(taken);
            }
            if let Some(u) = until {
                self.next_expiry = Some(self.next_expiry.map_or(u, |n| n.min(u)));
            }
            let part = split.then_some((k as u32 + 1, count));
            let seen = evidence(seats, (free, free - seats), part, skipped.clone(), until);
            decided.push((Some(flight), seen, if protect { Outcome::Protect } else { Outcome::Rebook }));
        }
        if left > 0 {
            let seen = evidence(left, (0, 0), split.then_some((count, count)), skipped, None);
            decided.push((None, seen, Outcome::NoAlternative));
        }
        let last = decided.pop();
        for (alternative, seen, outcome) in decided {
            let mut part = case.clone();
            (part.alternative, part.seats) = (alternative, Some(seen));
            out.push(part.end(outcome));
        }
        if let Some((alternative, seen, outcome)) = last {
            (case.alternative, case.seats) = (alternative, Some(seen));
            out.push(case.end(outcome));
        }
    }
}

/// Why the allocator passed over a flight.
enum Skip {
    Full(u32),
    Cancelled,
    Left,
    TooEarly(Millis, Millis),
    MissesNext(Key),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Full(free) => write!(f, "full ({free} free)"),
            Skip::Cancelled => f.write_str("cancelled"),
            Skip::Left => f.write_str("has left"),
            Skip::TooEarly(dep, ready) => write!(f, "departs too early ({}, ready {})", Stamp(*dep), Stamp(*ready)),
            Skip::MissesNext(id) => write!(f, "misses the next leg {id}"),
        }
    }
}

/// The seat allocators of the routes this worker owns: `cases` (requests, connections that hold,
/// flight updates) go to the worker of their route; `deletes` (deleted bookings' ids with the
/// delete's time) reach every worker. Records are applied time by time once both inputs have
/// passed, so the order within a time is `order`'s whatever the workers' interleaving; the
/// routes' seats are `part` in checkpoints, and deletes still waiting for their time `waiting`.
pub fn allocate<'s>(
    cases: Stream<'s, Box<Case>>,
    deletes: Stream<'s, (Millis, Key)>,
    mut part: State,
    mut waiting: State,
    config: SeatConfig,
    mct: Mct,
) -> Stream<'s, Box<Case>> {
    #[allow(clippy::borrowed_box)] // the exchange's records are the boxes themselves
    let by_route = Exchange::new(|c: &Box<Case>| key_hash(&c.seat_route()));
    let deletes = deletes.broadcast();
    cases.binary_frontier(deletes, by_route, Pipeline, "Seats", move |cap, _info| {
        let mut routes: FxHashMap<Key, RouteSeats> =
            part.restore_by_key(|(route, _): &(Key, RouteSeats)| key_hash(route)).into_iter().collect();
        let mut pending: BTreeMap<Millis, Pending> = BTreeMap::new();
        // Every worker got every delete, so old worker 0's waiting ones are all of them.
        for (time, booking) in waiting.restore_worker_zero::<Vec<(Millis, Key)>>().unwrap_or_default() {
            pending.entry(time).or_insert_with(|| (cap.delayed(&time), Vec::new(), Vec::new())).2.push(booking);
        }
        let mut out = Vec::new();
        move |(input, frontier), (deleted, deleted_frontier), output| {
            input.for_each_stamp(|cap, data| {
                let Some(held) = cap.retain_least(output.output_index()) else { return };
                let at = pending.entry(*held.time()).or_insert_with(|| (held, Vec::new(), Vec::new()));
                for batch in data {
                    at.1.append(batch);
                }
            });
            deleted.for_each_stamp(|cap, data| {
                if let Some(t) = cap.least() {
                    waiting.applied(*t);
                }
                let Some(held) = cap.retain_least(output.output_index()) else { return };
                // A source sends a batch at its earliest time: each delete waits for its own, in
                // the saved state (a checkpoint before its time is past the source's position).
                for (time, booking) in data.flat_map(|batch| batch.drain(..)) {
                    let time = time.max(*held.time());
                    let at = pending.entry(time).or_insert_with(|| (held.delayed(&time), Vec::new(), Vec::new()));
                    at.2.push(booking);
                }
            });
            while let Some(entry) = pending.first_entry() {
                let time = *entry.key();
                if frontier.less_equal(&time) || deleted_frontier.less_equal(&time) {
                    break;
                }
                let (cap, mut records, deletes) = entry.remove();
                part.applied(time);
                for booking in &deletes {
                    for seats in routes.values_mut() {
                        seats.release_booking(booking);
                    }
                }
                let mut keyed: Vec<(Key, Box<Case>)> = records.drain(..).map(|c| (c.seat_route(), c)).collect();
                keyed.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| order(a, b)));
                let mut keyed = keyed.into_iter().peekable();
                while let Some((route, first)) = keyed.next() {
                    let mut same = vec![first];
                    while let Some((_, next)) = keyed.next_if(|(r, _)| *r == route) {
                        same.push(next);
                    }
                    routes.entry(route).or_default().apply(same, time, &config, &mct, &mut out);
                }
                if !out.is_empty() {
                    output.session(&cap).give_container(&mut out);
                }
            }
            if part.saved() {
                let at = earliest(frontier.frontier().first(), deleted_frontier.frontier().first());
                part.offer(at, |_| {
                    let mut saved: Vec<(&Key, &RouteSeats)> = routes.iter().collect();
                    saved.sort_by(|a, b| a.0.cmp(b.0));
                    encode(&saved)
                });
                waiting.offer(at, |_| {
                    let deletes = pending.iter().flat_map(|(t, p)| p.2.iter().map(move |b| (*t, b)));
                    encode(&deletes.collect::<Vec<_>>())
                });
            }
        }
    })
}

/// The earlier of two inputs' frontiers (None: both ended).
pub(crate) fn earliest(a: Option<&Millis>, b: Option<&Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(*a.min(b)),
        (a, b) => a.or(b).copied(),
    }
}

/// Records of one time: its capability, the cases, the deleted bookings.
type Pending = (Capability<Millis>, Vec<Box<Case>>, Vec<Key>);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::flight::rules::Broken;
    use crate::flight::{Booking, FlightEvent};
    use inflight_engine::Position;

    const H: Millis = 60 * MINUTE;
    const T0: Millis = 1_704_621_600_000; // 2024-01-07T10:00:00Z

    fn flight(id: &str, dep_h: Millis, seats: u32) -> ScheduledFlight {
        ScheduledFlight {
            flight_id: id.into(),
            origin: "YYZ".into(),
            destination: "YVR".into(),
            departure: T0 + dep_h * H,
            arrival: T0 + (dep_h + 5) * H,
            seats_free: seats,
        }
    }

    /// A request of booking `id` with `pax` passengers whose leg C1 (leaving 12:00) is broken.
    fn request(id: &str, pax: u32, protect: bool, route: &[ScheduledFlight]) -> Box<Case> {
        let event = FlightEvent {
            flight_id: "F1".into(),
            status: FlightStatus::Delayed,
            timestamp: T0,
            delay_minutes: (!protect).then_some(90),
            new_departure: None,
            gate: None,
            reason: None,
        };
        let mut case = Case::start(event, Position::default(), 0);
        case.booking = Some(Booking { booking_id: id.into(), passengers: pax, legs: vec!["F1".into(), "C1".into()] });
        case.broken = Some(Broken { flight: flight("C1", 2, 0), leg: 1, ready: T0 + 3 * H, protect });
        case.candidates = route.to_vec();
        case.next = Next::Seats;
        case
    }

    /// Sorts and applies `cases` at `time` on one route's seats; (booking, action flight, seats).
    fn serve(seats: &mut RouteSeats, mut cases: Vec<Box<Case>>, time: Millis, config: &SeatConfig) -> Vec<Box<Case>> {
        cases.sort_by(|a, b| order(a, b));
        let mut out = Vec::new();
        seats.apply(cases, time, config, &Mct::default(), &mut out);
        out
    }

    fn placed(out: &[Box<Case>]) -> Vec<(String, String, u32)> {
        out.iter()
            .map(|c| {
                let alt = c.alternative.as_ref().map_or("-".to_owned(), |f| f.flight_id.to_string());
                (c.booking.as_ref().unwrap().booking_id.to_string(), alt, c.seats.as_ref().unwrap().passengers)
            })
            .collect()
    }

    #[test]
    fn thirteen_passengers_fill_four_then_nine_seats_and_nothing_is_overbooked() {
        let route = [flight("A4", 4, 4), flight("A9", 6, 9)];
        let cases = [("B1", 3), ("B2", 3), ("B3", 2), ("B4", 4), ("B5", 1)]
            .map(|(id, pax)| request(id, pax, false, &route))
            .to_vec();
        let out = serve(&mut RouteSeats::default(), cases, T0, &SeatConfig::default());
        // Larger groups first: B4 (4) fills A4; 3 + 3 + 2 + 1 fill A9's 9 seats.
        let want = [("B4", "A4", 4), ("B1", "A9", 3), ("B2", "A9", 3), ("B3", "A9", 2), ("B5", "A9", 1)];
        let want: Vec<_> = want.iter().map(|(b, f, n)| (b.to_string(), f.to_string(), *n)).collect();
        assert_eq!(placed(&out), want);
        let b2 = out[2].seats.as_ref().unwrap();
        assert_eq!((b2.free_before, b2.free_after, b2.order), (6, 3, 3));
        assert_eq!(b2.skipped, [Skipped { flight_id: "A4".into(), why: "full (0 free)".into() }]);
        assert!(out.iter().all(|c| c.outcome == Some(Outcome::Rebook)));
    }

    #[test]
    fn a_full_route_escalates_with_no_seats_and_a_delete_gives_seats_back() {
        let route = [flight("A2", 4, 2)];
        let mut seats = RouteSeats::default();
        let config = SeatConfig::default();
        let first = serve(&mut seats, vec![request("B1", 2, false, &route)], T0, &config);
        assert_eq!(placed(&first), [("B1".into(), "A2".into(), 2)]);
        let second = serve(&mut seats, vec![request("B2", 2, false, &route)], T0 + 1, &config);
        assert_eq!(second[0].outcome, Some(Outcome::NoAlternative));
        assert_eq!(second[0].seats.as_ref().unwrap().skipped[0].why, "full (0 free)");
        seats.release_booking("B1");
        let third = serve(&mut seats, vec![request("B2", 2, false, &route)], T0 + 2, &config);
        assert_eq!(placed(&third), [("B2".into(), "A2".into(), 2)]);
    }

    #[test]
    fn a_hold_blocks_seats_until_it_expires_or_the_booking_is_decided_again() {
        let route = [flight("A3", 4, 3)];
        let config = SeatConfig { hold_minutes: 30, split_groups: false };
        let mut seats = RouteSeats::default();
        let held = serve(&mut seats, vec![request("B1", 2, true, &route)], T0, &config);
        assert_eq!(held[0].outcome, Some(Outcome::Protect));
        assert_eq!(held[0].seats.as_ref().unwrap().held_until, Some(T0 + 30 * MINUTE));
        let blocked = serve(&mut seats, vec![request("B2", 2, false, &route)], T0 + 29 * MINUTE, &config);
        assert_eq!(blocked[0].outcome, Some(Outcome::NoAlternative));
        let freed = serve(&mut seats, vec![request("B2", 2, false, &route)], T0 + 30 * MINUTE, &config);
        assert_eq!(placed(&freed), [("B2".into(), "A3".into(), 2)]);

        // The same booking decided again takes its held seats over instead of holding twice.
        let mut seats = RouteSeats::default();
        serve(&mut seats, vec![request("B1", 2, true, &route)], T0, &config);
        let rebooked = serve(&mut seats, vec![request("B1", 2, false, &route)], T0 + MINUTE, &config);
        assert_eq!(rebooked[0].seats.as_ref().unwrap().free_before, 3);
    }

    #[test]
    fn a_connection_that_holds_gives_back_only_what_its_own_flight_caused() {
        let route = [flight("A3", 4, 3)];
        let config = SeatConfig::default();
        // B1 passes F1 → C1: the later status of F1 says the connection holds (leg 0 unaffected).
        let holds = |time| {
            let mut c = request("B1", 2, false, &route).end(Outcome::Unaffected);
            c.leg = 0;
            c.next = Next::Seats;
            c.event.timestamp = time;
            c
        };
        // A hold that F1's delay of unknown length placed comes back...
        let mut seats = RouteSeats::default();
        serve(&mut seats, vec![request("B1", 2, true, &route)], T0, &config);
        serve(&mut seats, vec![holds(T0 + MINUTE)], T0 + MINUTE, &config);
        let b2 = serve(&mut seats, vec![request("B2", 2, false, &route)], T0 + 2 * MINUTE, &config);
        assert_eq!(placed(&b2), [("B2".into(), "A3".into(), 2)]);
        // ...but not the rebooking that C1's own cancellation led to.
        let mut seats = RouteSeats::default();
        let mut cancelled = request("B1", 2, false, &route);
        cancelled.event.flight_id = "C1".into();
        serve(&mut seats, vec![cancelled], T0, &config);
        serve(&mut seats, vec![holds(T0 + MINUTE)], T0 + MINUTE, &config);
        let b2 = serve(&mut seats, vec![request("B2", 2, false, &route)], T0 + 2 * MINUTE, &config);
        assert_eq!(b2[0].outcome, Some(Outcome::NoAlternative));
    }

    #[test]
    fn groups_move_whole_unless_splitting_is_allowed() {
        let route = [flight("A2", 4, 2), flight("A3", 5, 3)];
        let whole =
            serve(&mut RouteSeats::default(), vec![request("B1", 4, false, &route)], T0, &SeatConfig::default());
        assert_eq!(whole[0].outcome, Some(Outcome::NoAlternative));
        let split = SeatConfig { split_groups: true, ..SeatConfig::default() };
        let parts = serve(&mut RouteSeats::default(), vec![request("B1", 6, false, &route)], T0, &split);
        assert_eq!(
            placed(&parts),
            [("B1".into(), "A2".into(), 2), ("B1".into(), "A3".into(), 3), ("B1".into(), "-".into(), 1)]
        );
        let numbered: Vec<_> = parts.iter().map(|c| c.seats.as_ref().unwrap().part).collect();
        assert_eq!(numbered, [Some((1, 3)), Some((2, 3)), Some((3, 3))]);
        assert_eq!(parts[2].outcome, Some(Outcome::NoAlternative));
        // A group one flight can take goes there whole, even with splitting allowed.
        let one = serve(&mut RouteSeats::default(), vec![request("B1", 3, false, &route)], T0, &split);
        assert_eq!(placed(&one), [("B1".into(), "A3".into(), 3)]);
    }

    /// A status of route flight `id` at `time`, as the allocator gets it.
    fn update(route: &[ScheduledFlight], id: &str, status: FlightStatus, time: Millis) -> Box<Case> {
        let mut c = request("-", 1, false, route);
        c.booking = None;
        c.broken = None;
        (c.event.flight_id, c.event.status, c.event.timestamp, c.event.delay_minutes) = (id.into(), status, time, None);
        c.flight = route.iter().find(|f| f.flight_id == id).cloned();
        c.next = Next::Update;
        c
    }

    #[test]
    fn bookings_seated_on_a_flight_that_is_cancelled_are_seated_again() {
        let route = [flight("A2", 4, 2), flight("A3", 5, 3), flight("A4", 6, 2)];
        let config = SeatConfig::default();
        let mut seats = RouteSeats::default();
        // B1 (2) fills A2, B2 (3) fills A3.
        let first =
            serve(&mut seats, vec![request("B1", 2, false, &route), request("B2", 3, false, &route)], T0, &config);
        assert_eq!(placed(&first), [("B2".into(), "A3".into(), 3), ("B1".into(), "A2".into(), 2)]);
        // A2 is cancelled: B1 moves to A4 (A3 is full), with the cancellation as its status.
        let later = T0 + 10 * MINUTE;
        let again = serve(&mut seats, vec![update(&route, "A2", FlightStatus::Cancelled, later)], later, &config);
        assert_eq!(placed(&again), [("B1".into(), "A4".into(), 2)]);
        let c = &again[0];
        assert!(c.is_reseat() && c.time() == later && c.event.flight_id == "A2");
        assert_eq!(c.broken.as_ref().unwrap().flight.flight_id, "C1");
        let why: Vec<_> =
            c.seats.as_ref().unwrap().skipped.iter().map(|s| (s.flight_id.as_str(), s.why.as_str())).collect();
        assert_eq!(why, [("A2", "cancelled"), ("A3", "full (0 free)")]);
        // The seats keep their cause: F1 letting B1's connection hold gives A4's back.
        let mut holds = request("B1", 2, false, &route).end(Outcome::Unaffected);
        (holds.leg, holds.next, holds.event.timestamp) = (0, Next::Seats, later + MINUTE);
        serve(&mut seats, vec![holds], later + MINUTE, &config);
        let b3 = serve(&mut seats, vec![request("B3", 2, false, &route)], later + 2 * MINUTE, &config);
        assert_eq!(placed(&b3), [("B3".into(), "A4".into(), 2)]);
        // A second cancellation of A2 has no one left to move; one of A4 moves B3, with nowhere to go.
        let gone = serve(
            &mut seats,
            vec![update(&route, "A2", FlightStatus::Cancelled, later + 3 * MINUTE)],
            later + 3 * MINUTE,
            &config,
        );
        assert!(gone.is_empty());
        let t = later + 4 * MINUTE;
        let stranded = serve(&mut seats, vec![update(&route, "A4", FlightStatus::Cancelled, t)], t, &config);
        assert_eq!(stranded.len(), 1);
        assert_eq!(stranded[0].outcome, Some(Outcome::NoAlternative));
        // A request of the same time for the same leg decides instead of a re-seating.
        let mut seats = RouteSeats::default();
        serve(&mut seats, vec![request("B1", 2, false, &route)], T0, &config);
        let both = serve(
            &mut seats,
            vec![update(&route, "A2", FlightStatus::Cancelled, later), request("B1", 2, false, &route)],
            later,
            &config,
        );
        assert_eq!(placed(&both), [("B1".into(), "A3".into(), 2)]);
        assert!(!both[0].is_reseat());
    }

    #[test]
    fn delayed_and_cancelled_flights_are_seen_at_their_current_state() {
        let route = [flight("A1", 4, 5), flight("A2", 6, 5)];
        let mut seats = RouteSeats::default();
        let status = |id: &str, status, delay| {
            let mut c = request("-", 1, false, &route);
            c.event.flight_id = id.into();
            c.event.status = status;
            c.event.delay_minutes = delay;
            c.flight = route.iter().find(|f| f.flight_id == id).cloned();
            c.next = Next::Update;
            c
        };
        let updates = vec![status("A1", FlightStatus::Cancelled, None), status("A2", FlightStatus::Delayed, Some(30))];
        serve(&mut seats, updates, T0, &SeatConfig::default());
        let out = serve(&mut seats, vec![request("B1", 1, false, &route)], T0, &SeatConfig::default());
        assert_eq!(placed(&out), [("B1".into(), "A2".into(), 1)]);
        assert_eq!(out[0].alternative.as_ref().unwrap().departure, T0 + 6 * H + 30 * MINUTE);
        assert_eq!(out[0].seats.as_ref().unwrap().skipped[0].why, "cancelled");
    }
}
