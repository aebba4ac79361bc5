//! Deterministic synthetic flight data: a hub-and-spoke schedule of a day, bookings on connecting
//! itineraries, and status events over them (with optional reference changes and malformed lines).
//! The same config gives the same bytes.

use super::Reference;
use super::event::{Booking, FlightEvent, FlightStatus, ScheduledFlight};
use inflight_engine::time::rfc3339;
use inflight_engine::{Key, Millis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Write};

const MINUTE: Millis = 60_000;
const DAY: Millis = 24 * 60 * MINUTE;
const NAMED: [&str; 8] = ["YUL", "YYZ", "YVR", "JFK", "LHR", "CDG", "FRA", "NRT"];
const REASONS: [&str; 6] = ["weather", "crew", "technical", "air traffic control", "late inbound aircraft", "security"];

/// Settings of the synthetic flight data.
#[derive(Clone, Debug, PartialEq)]
pub struct FlightGenConfig {
    /// Number of event lines (status events, changes and malformed lines together).
    pub events: u64,
    /// Number of bookings.
    pub bookings: usize,
    /// Number of airports (at least 2; the first two are hubs when there are 4 or more).
    pub airports: usize,
    /// Flights per route and day (at least 1).
    pub flights_per_route: usize,
    /// Random seed.
    pub seed: u64,
    /// Lines per second of event time (at most 1000 count: line times are strictly increasing ms).
    pub rate: f64,
    /// Fraction of lines that are malformed or invalid.
    pub malformed: f64,
    /// Fraction of lines that are reference changes (new flights, deleted flights and bookings).
    pub changes: f64,
    /// Event time of the first line and start of the scheduled day (ms since the epoch).
    pub start: Millis,
    /// How often each status occurs.
    pub mix: StatusMix,
}

/// How often each status occurs among the generated status events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatusMix {
    /// An airline's day: 45 % on time, 10 % delayed, 1 % cancelled, 0.2 % diverted (the rest
    /// scheduled, boarding, departed, arrived).
    #[default]
    Realistic,
    /// Many disruptions, to load the rebooking path: 40 % on time, 15 % delayed, 3 % cancelled,
    /// 2 % diverted.
    Stress,
}

impl StatusMix {
    /// Per mille of each status, in the order of [`STATUSES`] (they add up to 1000).
    fn per_mille(self) -> [u32; 8] {
        match self {
            StatusMix::Realistic => [450, 100, 100, 119, 119, 100, 10, 2],
            StatusMix::Stress => [400, 100, 100, 100, 100, 150, 30, 20],
        }
    }
}

const STATUSES: [FlightStatus; 8] = [
    FlightStatus::OnTime,
    FlightStatus::Scheduled,
    FlightStatus::Boarding,
    FlightStatus::Departed,
    FlightStatus::Arrived,
    FlightStatus::Delayed,
    FlightStatus::Cancelled,
    FlightStatus::Diverted,
];

impl FlightGenConfig {
    /// A day's network sized to `bookings` (30 airports, about 25 bookings a flight, at least 6
    /// flights a route), as an airline's would be: few bookings per flight keeps the fan-out of a
    /// delay to its bookings realistic.
    pub fn sized_for(bookings: usize) -> Self {
        FlightGenConfig { bookings, airports: 30, flights_per_route: (bookings / 2_500).max(6), ..Self::default() }
    }
}

impl Default for FlightGenConfig {
    fn default() -> Self {
        FlightGenConfig {
            events: 10_000,
            bookings: 1_000,
            airports: 8,
            flights_per_route: 6,
            seed: 42,
            rate: 1000.0,
            malformed: 0.0,
            changes: 0.0,
            start: 1_704_585_600_000, // 2024-01-07T00:00:00Z
            mix: StatusMix::default(),
        }
    }
}

/// The code of airport `i`: well-known codes first, then `XAA`, `XAB`, ….
fn airport(i: usize) -> String {
    match NAMED.get(i) {
        Some(code) => (*code).to_owned(),
        None => {
            let n = i - NAMED.len();
            let letter = |k: usize| char::from(b'A' + (k % 26) as u8);
            if n < 26 * 26 { format!("X{}{}", letter(n / 26), letter(n)) } else { format!("X{n}") }
        }
    }
}

/// Routes of the network and its flights per route, earliest first.
struct Network {
    hubs: usize,
    airports: usize,
    routes: HashMap<(usize, usize), usize>,
    by_route: Vec<Vec<usize>>,
}

impl Network {
    /// Airports of an itinerary of `legs` legs through the hubs, if the network has one.
    fn path(&self, rng: &mut ChaCha8Rng, legs: usize) -> Option<Vec<usize>> {
        let n = self.airports;
        let other = |rng: &mut ChaCha8Rng, not: &[usize]| loop {
            let a = rng.random_range(0..n);
            if !not.contains(&a) {
                break a;
            }
        };
        match legs {
            1 => {
                let h = rng.random_range(0..self.hubs);
                let a = other(rng, &[h]);
                Some(if rng.random_bool(0.5) { vec![h, a] } else { vec![a, h] })
            }
            2 if n >= 3 => {
                let h = rng.random_range(0..self.hubs);
                let a = other(rng, &[h]);
                Some(vec![a, h, other(rng, &[a, h])])
            }
            3 if self.hubs >= 2 && n >= 4 => {
                let (h1, h2) = if rng.random_bool(0.5) { (0, 1) } else { (1, 0) };
                let a = other(rng, &[h1, h2]);
                Some(vec![a, h1, h2, other(rng, &[a, h1, h2])])
            }
            _ => None,
        }
    }

    /// Flights along `path`, each leaving at least 45 + 0..90 min after the previous one arrives.
    fn itinerary(&self, rng: &mut ChaCha8Rng, flights: &[ScheduledFlight], path: &[usize]) -> Option<Vec<usize>> {
        let first = self.by_route.get(*self.routes.get(&(*path.first()?, *path.get(1)?))?)?;
        let span = if path.len() > 2 { first.len().div_ceil(2) } else { first.len() };
        let mut leg = *first.get(rng.random_range(0..span.max(1)))?;
        let mut legs = vec![leg];
        for hop in path[1..].windows(2) {
            let route = self.by_route.get(*self.routes.get(&(hop[0], hop[1]))?)?;
            let ready = flights.get(leg)?.arrival + (45 + rng.random_range(0..=90)) * MINUTE;
            leg = *route.iter().find(|&&f| flights[f].departure >= ready)?;
            legs.push(leg);
        }
        Some(legs)
    }
}

fn seats(rng: &mut ChaCha8Rng) -> u32 {
    match rng.random_range(0..100) {
        0..15 => 0,
        15..90 => rng.random_range(1..=20),
        _ => rng.random_range(21..=60),
    }
}

/// The schedule and bookings of a day: a hub-and-spoke network; every booking has 1 to 3 legs that
/// connect (each next leg leaves at least 45 min + a random 0..90 min after the previous one
/// arrives, at the connecting airport).
pub fn reference(config: &FlightGenConfig) -> Reference {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let n = config.airports.max(2);
    let hubs = if n >= 4 { 2 } else { 1 };
    let codes: Vec<String> = (0..n).map(airport).collect();
    let mut pairs = Vec::new();
    for h in 0..hubs {
        for a in (0..n).filter(|&a| a != h) {
            pairs.push((h, a));
            if a >= hubs {
                pairs.push((a, h));
            }
        }
    }
    let per_route = config.flights_per_route.max(1);
    let mut ids: Vec<usize> = (0..pairs.len() * per_route).map(|i| 1000 + i).collect();
    ids.shuffle(&mut rng);
    let mut ids = ids.into_iter();
    let (mut durations, mut rows) = (HashMap::new(), Vec::new());
    let slot = DAY / per_route as Millis;
    for (route, &(from, to)) in pairs.iter().enumerate() {
        let hop = if from < hubs && to < hubs { 60..=120 } else { 60..=480 };
        let minutes: Millis = *durations.entry((from.min(to), from.max(to))).or_insert_with(|| rng.random_range(hop));
        for k in 0..per_route as Millis {
            let departure = config.start + k * slot + rng.random_range(0..slot) / (5 * MINUTE) * (5 * MINUTE);
            let arrival = departure + (minutes + rng.random_range(0..=3) * 5) * MINUTE;
            let flight_id = format!("IF{}", ids.next().unwrap_or_default()).into();
            let (origin, destination) = (codes[from].as_str().into(), codes[to].as_str().into());
            let seats_free = seats(&mut rng);
            rows.push((ScheduledFlight { flight_id, origin, destination, departure, arrival, seats_free }, route));
        }
    }
    rows.sort_by(|a, b| (a.0.departure, &a.0.flight_id).cmp(&(b.0.departure, &b.0.flight_id)));
    let mut by_route = vec![Vec::new(); pairs.len()];
    for (i, (_, route)) in rows.iter().enumerate() {
        by_route[*route].push(i);
    }
    let flights: Vec<ScheduledFlight> = rows.into_iter().map(|(f, _)| f).collect();
    let routes = pairs.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let net = Network { hubs, airports: n, routes, by_route };
    let mut bookings = Vec::with_capacity(config.bookings);
    for b in 1..=config.bookings {
        let want = match rng.random_range(0..10) {
            0..5 => 1,
            5..9 => 2,
            _ => 3,
        };
        let legs = (1..=want)
            .rev()
            .flat_map(|legs| std::iter::repeat_n(legs, 16))
            .find_map(|legs| net.path(&mut rng, legs).and_then(|p| net.itinerary(&mut rng, &flights, &p)))
            .unwrap_or_default();
        let passengers = [1, 1, 1, 1, 1, 2, 2, 2, 3, 4][rng.random_range(0..10)];
        let legs = legs.into_iter().map(|i| flights[i].flight_id.clone()).collect();
        bookings.push(Booking { booking_id: format!("B{b:06}").into(), passengers, legs });
    }
    Reference { flights, bookings }
}

fn write_rows<T: Serialize>(rows: &[T], out: &mut impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    for row in rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Writes the reference's flights as JSONL, one [`ScheduledFlight`] a line.
pub fn write_schedule(reference: &Reference, out: &mut impl Write) -> io::Result<()> {
    write_rows(&reference.flights, out)
}

/// Writes the reference's bookings as JSONL, one [`Booking`] a line.
pub fn write_bookings(reference: &Reference, out: &mut impl Write) -> io::Result<()> {
    write_rows(&reference.bookings, out)
}

/// A change line as the parser reads it.
#[derive(Serialize)]
struct ChangeLine<'a> {
    op: &'static str,
    #[serde(with = "rfc3339")]
    timestamp: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    flight: Option<&'a ScheduledFlight>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flight_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    booking_id: Option<&'a str>,
}

impl ChangeLine<'_> {
    fn at(timestamp: Millis) -> Self {
        ChangeLine { op: "upsert", timestamp, flight: None, flight_id: None, booking_id: None }
    }
}

fn status_event(rng: &mut ChaCha8Rng, mix: StatusMix, flight: &ScheduledFlight, timestamp: Millis) -> FlightEvent {
    use FlightStatus::*;
    let mut roll = rng.random_range(0..1000);
    let mut status = Diverted;
    for (s, share) in STATUSES.iter().zip(mix.per_mille()) {
        if roll < share {
            status = *s;
            break;
        }
        roll -= share;
    }
    let (mut delay_minutes, mut new_departure) = (None, None);
    if status == Delayed {
        match rng.random_range(0..10) {
            0..7 => delay_minutes = Some(rng.random_range(5..=240)),
            7..9 => new_departure = Some(flight.departure + rng.random_range(1..=48) * 5 * MINUTE),
            _ => {}
        }
    }
    let gate = (matches!(status, OnTime | Scheduled | Boarding | Delayed) && rng.random_bool(0.3)).then(|| {
        compact_str::format_compact!("{}{}", char::from(b'A' + rng.random_range(0..6u8)), rng.random_range(1..=60))
    });
    let reason = (matches!(status, Delayed | Cancelled | Diverted) && rng.random_bool(0.6))
        .then(|| REASONS[rng.random_range(0..REASONS.len())].into());
    FlightEvent { flight_id: flight.flight_id.clone(), status, timestamp, delay_minutes, new_departure, gate, reason }
}

/// One of the ways a producer gets a status line wrong: truncated, unknown status, no flight_id,
/// or a timestamp that is not RFC 3339.
fn corrupt(rng: &mut ChaCha8Rng, event: &FlightEvent, line: &mut Vec<u8>) -> io::Result<()> {
    let kind = rng.random_range(0..4);
    if kind == 0 {
        line.truncate(rng.random_range(1..line.len().max(2)));
        return Ok(());
    }
    let mut value = serde_json::to_value(event)?;
    if let Some(object) = value.as_object_mut() {
        match kind {
            1 => {
                object.insert("status".into(), "LATE".into());
            }
            2 => {
                object.remove("flight_id");
            }
            _ => {
                let bad = ["soon", "2024-01-07 10:00", "07/01/2024 10:00", "2024-13-40T25:00:00Z"];
                object.insert("timestamp".into(), bad[rng.random_range(0..bad.len())].into());
            }
        }
    }
    line.clear();
    serde_json::to_writer(&mut *line, &value)?;
    Ok(())
}

/// Writes `config.events` lines as JSONL in event-time order: status events over the reference's
/// flights, and per `changes` and `malformed` change lines and bad lines.
pub fn events(config: &FlightGenConfig, reference: &Reference, out: &mut impl Write) -> io::Result<()> {
    if reference.flights.is_empty() || !config.rate.is_finite() || config.rate <= 0.0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "need flights and a positive rate"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut out = io::BufWriter::new(out);
    let mut pool = reference.flights.clone();
    let mut booked: Vec<&Key> = reference.bookings.iter().map(|b| &b.booking_id).collect();
    let ids = reference.flights.iter().filter_map(|f| f.flight_id.strip_prefix("IF")?.parse::<u64>().ok());
    let mut next_id = ids.max().unwrap_or(999) + 1;
    let (step, mut time, mut line) = (1000.0 / config.rate, None::<Millis>, Vec::with_capacity(256));
    for i in 0..config.events {
        let at = config.start + (i as f64 * step) as Millis;
        let now = time.map_or(at, |t| at.max(t + 1));
        time = Some(now);
        line.clear();
        let roll: f64 = rng.random();
        if roll < config.changes {
            // 3 in 10 changes delete a flight, 2 in 10 a booking (a cancelled trip: its seats come
            // back), the rest add a flight.
            let kind = rng.random_range(0..10);
            if pool.len() > 1 && kind < 3 {
                let gone = pool.swap_remove(rng.random_range(0..pool.len()));
                let change = ChangeLine { op: "delete", flight_id: Some(&gone.flight_id), ..ChangeLine::at(now) };
                serde_json::to_writer(&mut line, &change)?;
            } else if !booked.is_empty() && kind < 5 {
                let gone = booked.swap_remove(rng.random_range(0..booked.len()));
                let change = ChangeLine { op: "delete", booking_id: Some(gone), ..ChangeLine::at(now) };
                serde_json::to_writer(&mut line, &change)?;
            } else {
                let mut flight = pool[rng.random_range(0..pool.len())].clone();
                let later = rng.random_range(6..=36) * 5 * MINUTE;
                (flight.departure, flight.arrival) = (flight.departure + later, flight.arrival + later);
                (flight.flight_id, flight.seats_free) = (format!("IF{next_id}").into(), rng.random_range(1..=30));
                next_id += 1;
                let change = ChangeLine { op: "upsert", flight: Some(&flight), ..ChangeLine::at(now) };
                serde_json::to_writer(&mut line, &change)?;
                pool.push(flight);
            }
        } else {
            let flight = &pool[rng.random_range(0..pool.len())];
            let event = status_event(&mut rng, config.mix, flight, now);
            serde_json::to_writer(&mut line, &event)?;
            if roll < config.changes + config.malformed {
                corrupt(&mut rng, &event, &mut line)?;
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::event::{Change, FlightInput};
    use super::*;
    use inflight_engine::Event;

    fn lines(config: &FlightGenConfig) -> Vec<String> {
        let mut buf = Vec::new();
        events(config, &reference(config), &mut buf).unwrap();
        String::from_utf8(buf).unwrap().lines().map(str::to_owned).collect()
    }

    fn bytes(config: &FlightGenConfig) -> Vec<u8> {
        let (r, mut buf) = (reference(config), Vec::new());
        write_schedule(&r, &mut buf).unwrap();
        write_bookings(&r, &mut buf).unwrap();
        events(config, &r, &mut buf).unwrap();
        buf
    }

    #[test]
    fn same_seed_same_bytes() {
        let c = FlightGenConfig { events: 2_000, bookings: 300, changes: 0.05, malformed: 0.05, ..Default::default() };
        assert_eq!(bytes(&c), bytes(&c));
        assert_ne!(bytes(&c), bytes(&FlightGenConfig { seed: 7, ..c.clone() }));
    }

    #[test]
    fn lines_parse_and_bookings_connect() {
        let c = FlightGenConfig { events: 5_000, airports: 12, changes: 0.05, ..Default::default() };
        let r = reference(&c);
        let by_id: HashMap<_, _> = r.flights.iter().map(|f| (f.flight_id.clone(), f)).collect();
        assert_eq!(by_id.len(), r.flights.len(), "flight ids are unique");
        assert!(
            r.flights
                .iter()
                .all(|f| f.validate().is_ok() && (60..=495).contains(&((f.arrival - f.departure) / MINUTE)))
        );
        assert!(r.flights.iter().filter(|f| f.seats_free == 0).count() > r.flights.len() / 20);
        let mut per_legs = [0; 4];
        for b in &r.bookings {
            assert!(b.validate().is_ok() && (1..=4).contains(&b.passengers));
            per_legs[b.legs.len()] += 1;
            for pair in b.legs.windows(2) {
                let (a, n) = (by_id[&pair[0]], by_id[&pair[1]]);
                assert!(a.destination == n.origin && n.departure >= a.arrival + 45 * MINUTE, "{b:?}");
            }
        }
        assert!(per_legs[1] > 400 && per_legs[2] > 300 && per_legs[3] > 50, "{per_legs:?}");
        let parsed: Vec<FlightInput> = lines(&c).iter().map(|l| FlightInput::parse(l.as_bytes()).unwrap()).collect();
        assert_eq!(parsed.len(), 5_000);
        assert!(parsed.windows(2).all(|w| w[0].event_time() < w[1].event_time()));
        assert_eq!(parsed[0].event_time(), c.start);
        let changes =
            parsed.iter().filter(|p| matches!(p, FlightInput::Change { change: Change::Flight(_), .. })).count();
        let deletes =
            parsed.iter().filter(|p| matches!(p, FlightInput::Change { change: Change::DeleteFlight(_), .. }));
        let gone = parsed.iter().filter(|p| matches!(p, FlightInput::Change { change: Change::DeleteBooking(_), .. }));
        assert!(changes > 100 && deletes.count() > 30 && gone.count() > 20, "{changes}");
    }

    #[test]
    fn malformed_fraction_produces_bad_lines() {
        let c = FlightGenConfig { events: 4_000, malformed: 0.1, ..FlightGenConfig::default() };
        let bad = lines(&c).iter().filter(|l| FlightInput::parse(l.as_bytes()).is_err()).count();
        assert!((300..=500).contains(&bad), "{bad} bad lines");
    }

    #[test]
    fn roughly_the_status_mix() {
        use FlightStatus::*;
        let n = 40_000;
        for (mix, wants) in [
            (StatusMix::Realistic, [(OnTime, 0.45), (Delayed, 0.10), (Cancelled, 0.01), (Diverted, 0.002)]),
            (StatusMix::Stress, [(OnTime, 0.40), (Delayed, 0.15), (Cancelled, 0.03), (Diverted, 0.02)]),
        ] {
            let c = FlightGenConfig { events: n, mix, ..FlightGenConfig::default() };
            let mut counts: HashMap<FlightStatus, usize> = HashMap::new();
            let mut delays = [0; 3];
            for line in lines(&c) {
                let FlightInput::Status(e) = FlightInput::parse(line.as_bytes()).unwrap() else { panic!("a change") };
                *counts.entry(e.status).or_default() += 1;
                if e.status == Delayed {
                    delays[usize::from(e.delay_minutes.is_some()) + 2 * usize::from(e.new_departure.is_some())] += 1;
                }
            }
            let share = |s| counts.get(&s).copied().unwrap_or(0) as f64 / n as f64;
            for (s, want) in wants {
                // Four standard deviations of a binomial share.
                let tolerance = 4.0 * (want * (1.0 - want) / n as f64).sqrt();
                assert!((share(s) - want).abs() < tolerance, "{mix:?} {s:?}: {}", share(s));
            }
            assert!(delays[1] > delays[2] && delays[2] > delays[0] && delays[0] > 0, "{delays:?}");
        }
    }
}
