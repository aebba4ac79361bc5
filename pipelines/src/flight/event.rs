//! The flight pipeline's records: the specification's flight status event (`flight_id`, `status`,
//! `timestamp`, plus optional `delay_minutes`, `new_departure`, `gate`, `reason`), the reference rows
//! (a scheduled flight, a booking) and the live changes to them (`{"op": "upsert" | "delete", …}`).
//! Status events and changes may share one input; a line with `op` is a change.

use compact_str::CompactString;
use inflight_engine::time::rfc3339;
use inflight_engine::{Event, Key, Millis, ParseError};
use serde::{Deserialize, Serialize};

/// A flight's status, as the specification names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlightStatus {
    /// Planned, nothing new.
    Scheduled,
    /// Expected on time.
    OnTime,
    /// Late: by `delay_minutes`, to `new_departure`, or by an amount not known yet.
    Delayed,
    /// Boarding.
    Boarding,
    /// Left the gate.
    Departed,
    /// Landed.
    Arrived,
    /// Will not operate.
    Cancelled,
    /// Landing somewhere else than planned.
    Diverted,
}

impl FlightStatus {
    /// The name the specification gives it (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            FlightStatus::Scheduled => "SCHEDULED",
            FlightStatus::OnTime => "ON_TIME",
            FlightStatus::Delayed => "DELAYED",
            FlightStatus::Boarding => "BOARDING",
            FlightStatus::Departed => "DEPARTED",
            FlightStatus::Arrived => "ARRIVED",
            FlightStatus::Cancelled => "CANCELLED",
            FlightStatus::Diverted => "DIVERTED",
        }
    }
}

/// A flight status change. (No `skip_serializing_if` here: cases carry it between processes, in
/// a format without field names.)
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlightEvent {
    /// The operated flight, e.g. `AC1234`.
    pub flight_id: Key,
    /// Its new status.
    pub status: FlightStatus,
    /// When the status was reported (event time).
    #[serde(with = "rfc3339")]
    pub timestamp: Millis,
    /// How late it will leave and arrive, in minutes; negative for an early departure, which
    /// delays no connection (it counts as 0).
    #[serde(default)]
    pub delay_minutes: Option<i32>,
    /// Its new departure time.
    #[serde(default, with = "rfc3339::option")]
    pub new_departure: Option<Millis>,
    /// Departure gate. (Short texts kept inline: every affected booking's case copies the event.)
    #[serde(default)]
    pub gate: Option<CompactString>,
    /// Why (weather, crew, …).
    #[serde(default)]
    pub reason: Option<CompactString>,
}

/// A flight in the schedule (reference data).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ScheduledFlight {
    /// The operated flight, e.g. `AC1234`.
    pub flight_id: Key,
    /// Departure airport.
    pub origin: Key,
    /// Arrival airport.
    pub destination: Key,
    /// Scheduled departure.
    #[serde(with = "rfc3339")]
    pub departure: Millis,
    /// Scheduled arrival.
    #[serde(with = "rfc3339")]
    pub arrival: Millis,
    /// Seats still free.
    pub seats_free: u32,
}

/// A booking (reference data): who travels on which flights, in order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Booking {
    /// Booking reference.
    pub booking_id: Key,
    /// Travellers on it.
    pub passengers: u32,
    /// The flights of the itinerary in travel order.
    pub legs: Vec<Key>,
}

/// A change to the reference data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Change {
    /// Adds or replaces a flight.
    Flight(ScheduledFlight),
    /// Removes a flight.
    DeleteFlight(Key),
    /// Adds or replaces a booking.
    Booking(Booking),
    /// Removes a booking.
    DeleteBooking(Key),
}

/// One line of the flight pipeline's input.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FlightInput {
    /// A status event.
    Status(FlightEvent),
    /// A reference-data change taking effect at `time`.
    Change {
        /// Event time from which the change holds.
        time: Millis,
        /// What changes.
        change: Change,
    },
}

/// A change line as written: `{"op":"upsert","timestamp":…,"flight":{…}}`,
/// `{"op":"delete","timestamp":…,"booking_id":"B1"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeLine {
    op: Op,
    #[serde(default, with = "rfc3339::option")]
    timestamp: Option<Millis>,
    #[serde(default)]
    flight: Option<ScheduledFlight>,
    #[serde(default)]
    booking: Option<Booking>,
    #[serde(default)]
    flight_id: Option<Key>,
    #[serde(default)]
    booking_id: Option<Key>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Op {
    Upsert,
    Delete,
}

/// Just enough of a line to tell a change from a status event.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    op: Option<serde::de::IgnoredAny>,
}

impl ScheduledFlight {
    /// Checks values the rules cannot use.
    pub fn validate(&self) -> Result<(), String> {
        if self.flight_id.trim().is_empty() || self.origin.trim().is_empty() || self.destination.trim().is_empty() {
            return Err("flight_id, origin and destination must not be empty".into());
        }
        if self.arrival < self.departure {
            return Err(format!("flight {} arrives before it departs", self.flight_id));
        }
        Ok(())
    }
}

impl Booking {
    /// Checks values the rules cannot use.
    pub fn validate(&self) -> Result<(), String> {
        if self.booking_id.trim().is_empty() {
            return Err("booking_id must not be empty".into());
        }
        if self.passengers == 0 {
            return Err(format!("booking {} has no passengers", self.booking_id));
        }
        if self.legs.is_empty() {
            return Err(format!("booking {} has no legs", self.booking_id));
        }
        Ok(())
    }
}

fn malformed(e: serde_json::Error) -> ParseError {
    ParseError::malformed(e.to_string())
}

impl ChangeLine {
    fn into_change(self, record_time: Option<Millis>) -> Result<FlightInput, ParseError> {
        let time = self
            .timestamp
            .or(record_time)
            .ok_or_else(|| ParseError::malformed("a change needs a `timestamp` (when it takes effect)"))?;
        let change = match (self.op, self.flight, self.booking, self.flight_id, self.booking_id) {
            (Op::Upsert, Some(f), None, None, None) => {
                f.validate().map_err(ParseError::invalid)?;
                Change::Flight(f)
            }
            (Op::Upsert, None, Some(b), None, None) => {
                b.validate().map_err(ParseError::invalid)?;
                Change::Booking(b)
            }
            (Op::Delete, None, None, Some(id), None) => Change::DeleteFlight(id),
            (Op::Delete, None, None, None, Some(id)) => Change::DeleteBooking(id),
            (Op::Upsert, ..) => {
                return Err(ParseError::malformed("an upsert carries exactly one of `flight` or `booking`"));
            }
            (Op::Delete, ..) => {
                return Err(ParseError::malformed("a delete carries exactly one of `flight_id` or `booking_id`"));
            }
        };
        Ok(FlightInput::Change { time, change })
    }
}

impl Event for FlightInput {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with_time(line, None)
    }

    fn parse_with_time(record: &[u8], record_time: Option<Millis>) -> Result<Self, ParseError> {
        let probe: Probe = serde_json::from_slice(record).map_err(malformed)?;
        if probe.op.is_some() {
            let line: ChangeLine = serde_json::from_slice(record).map_err(malformed)?;
            return line.into_change(record_time);
        }
        let event: FlightEvent = serde_json::from_slice(record).map_err(|e| {
            let text = e.to_string();
            if text.starts_with("unknown variant") {
                ParseError::invalid(format!("status {}", text.replacen("unknown variant ", "", 1)))
            } else {
                ParseError::malformed(text)
            }
        })?;
        if event.flight_id.trim().is_empty() {
            return Err(ParseError::invalid("flight_id is empty"));
        }
        Ok(FlightInput::Status(event))
    }

    fn event_time(&self) -> Millis {
        match self {
            FlightInput::Status(e) => e.timestamp,
            FlightInput::Change { time, .. } => *time,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_names_are_those_serde_writes() {
        use FlightStatus::*;
        for s in [Scheduled, OnTime, Delayed, Boarding, Departed, Arrived, Cancelled, Diverted] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn parses_the_specification_example() {
        let one_line = crate::spec_example("flight-event.json");
        let FlightInput::Status(e) = FlightInput::parse(one_line.as_bytes()).unwrap() else { panic!("not a status") };
        assert_eq!((e.flight_id.as_str(), e.status, e.timestamp), ("AC1234", FlightStatus::Delayed, 1_704_621_600_000));
        assert_eq!(e.delay_minutes, None);
    }

    /// An early departure is news, not a malformed line.
    #[test]
    fn a_negative_delay_is_an_early_departure() {
        let line = br#"{"flight_id":"A","status":"DELAYED","timestamp":"2024-01-07T10:00:00Z","delay_minutes":-30}"#;
        let FlightInput::Status(e) = FlightInput::parse(line).unwrap() else { panic!("not a status") };
        assert_eq!(e.delay_minutes, Some(-30));
    }

    #[test]
    fn parses_changes() {
        let up = br#"{"op":"upsert","timestamp":"2024-01-07T10:00:00Z","flight":{"flight_id":"X1","origin":"YUL","destination":"YYZ","departure":"2024-01-07T12:00:00Z","arrival":"2024-01-07T13:30:00Z","seats_free":3}}"#;
        let FlightInput::Change { time, change: Change::Flight(f) } = FlightInput::parse(up).unwrap() else {
            panic!("not a flight upsert")
        };
        assert_eq!((time, f.seats_free, f.arrival - f.departure), (1_704_621_600_000, 3, 90 * 60_000));
        let del = br#"{"op":"delete","timestamp":"2024-01-07T10:00:00Z","booking_id":"B1"}"#;
        assert!(
            matches!(FlightInput::parse(del).unwrap(), FlightInput::Change { change: Change::DeleteBooking(b), .. } if b == "B1")
        );
    }

    #[test]
    fn rejects_bad_lines_with_reasons() {
        let cases: [(&[u8], &str); 7] = [
            (br#"{"flight_id":"A","status":"LATE","timestamp":"2024-01-07T10:00:00Z"}"#, "status `LATE`"),
            (br#"{"flight_id":"A","timestamp":"2024-01-07T10:00:00Z"}"#, "missing field `status`"),
            (br#"{"flight_id":"A","status":"DELAYED","timestamp":"soon"}"#, "RFC 3339"),
            (br#"{"flight_id":"A","status":"DELAYED","timestamp":"2024-01-07T10:00:00Z","delay_minutes":"5"}"#, "invalid type"),
            (br#"{"op":"upsert","timestamp":"2024-01-07T10:00:00Z"}"#, "exactly one of `flight` or `booking`"),
            (br#"{"op":"upsert","timestamp":"2024-01-07T10:00:00Z","booking":{"booking_id":"B","passengers":0,"legs":["A"]}}"#, "no passengers"),
            (br#"{"op":"delete","flight_id":"A"}"#, "needs a `timestamp`"),
        ];
        for (line, want) in cases {
            let err = FlightInput::parse(line).unwrap_err();
            assert!(err.message.contains(want), "{}: {}", String::from_utf8_lossy(line), err.message);
        }
        let unknown = FlightInput::parse(br#"{"flight_id":"A","status":"LATE","timestamp":"2024-01-07T10:00:00Z"}"#);
        assert_eq!(unknown.unwrap_err().reason, inflight_engine::DeadReason::Invalid);
    }
}
