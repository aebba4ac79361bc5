//! Event time: milliseconds since the Unix epoch, parsed from and formatted as RFC 3339, and the
//! duration strings the CLI accepts ("1s", "250ms", "2m").

use chrono::{DateTime, SecondsFormat, Utc};

/// Event time and durations in milliseconds; timely's timestamp type for every inflight dataflow.
pub type Millis = u64;

/// Parses an RFC 3339 timestamp ("2024-01-07T10:00:00Z", fractions and offsets allowed) into
/// milliseconds since the epoch; times before 1970 are rejected because event time is unsigned.
pub fn parse_rfc3339(text: &str) -> Result<Millis, String> {
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| format!("timestamp {text:?} is not RFC 3339: {e}"))?;
    u64::try_from(parsed.timestamp_millis()).map_err(|_| format!("timestamp {text:?} is before 1970-01-01"))
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC with millisecond precision.
pub fn format_rfc3339(ms: Millis) -> String {
    thread_local! {
        // The second's text, without "Z": chrono's formatter was a third of a decision's cost,
        // and the decisions of a window (and the lines of a batch) share their second.
        static SECOND: std::cell::RefCell<Option<(Millis, String)>> = const { std::cell::RefCell::new(None) };
    }
    let second = ms / 1000;
    SECOND
        .with_borrow_mut(|cached| {
            if cached.as_ref().is_none_or(|(s, _)| *s != second) {
                let text = i64::try_from(second * 1000)
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))?;
                *cached = Some((second, text.trim_end_matches('Z').to_owned()));
            }
            let (_, prefix) = cached.as_ref()?;
            let frac = ms % 1000;
            let mut out = String::with_capacity(prefix.len() + 5);
            out.push_str(prefix);
            out.push('.');
            for digit in [frac / 100, frac / 10 % 10, frac % 10] {
                out.push(char::from(b'0' + digit as u8));
            }
            out.push('Z');
            Some(out)
        })
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// Parses a duration such as "1s", "250ms", "1m 30s" or "0" into milliseconds.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    let d =
        humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 1s, 250ms or 2m: {e}"))?;
    u64::try_from(d.as_millis()).map_err(|_| format!("duration {text:?} is too long"))
}

/// Wall-clock nanoseconds since the epoch; used to measure end-to-end latency across workers.
pub fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Wall-clock milliseconds since the epoch.
pub fn wall_millis() -> Millis {
    wall_nanos() / 1_000_000
}

/// Serde adapter between RFC 3339 text and milliseconds: `#[serde(with = "rfc3339")]`.
pub mod rfc3339 {
    use super::{Millis, format_rfc3339, parse_rfc3339};
    use serde::{Deserializer, Serializer, de};

    /// Writes the time as RFC 3339 text.
    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*ms))
    }

    /// Reads RFC 3339 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                parse_rfc3339(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }

    /// The same for an optional time (`#[serde(default, with = "rfc3339::option")]`).
    pub mod option {
        use super::Millis;
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes the time as RFC 3339 text, or null.
        pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_some(&super::super::format_rfc3339(*ms)),
                None => s.serialize_none(),
            }
        }

        /// Reads RFC 3339 text or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] Millis);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.25Z"), Ok(1250));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:01+01:00"), Ok(1000));
        assert_eq!(parse_rfc3339("2024-01-07T10:00:00Z"), Ok(1_704_621_600_000));
    }

    #[test]
    fn rejects_bad_and_pre_epoch_timestamps() {
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("2024-01-07 10:00").is_err());
        assert!(parse_rfc3339("1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_rfc3339(1_704_621_600_123), "2024-01-07T10:00:00.123Z");
        assert_eq!(parse_rfc3339(&format_rfc3339(1_704_621_600_123)), Ok(1_704_621_600_123));
    }

    #[test]
    fn formats_like_chrono_across_seconds_and_days() {
        // The cached second must never leak into the next one: check against chrono itself.
        let start = 1_704_671_999_000; // 2024-01-07T23:59:59Z, a day boundary a second later
        for ms in (start..start + 3_000).step_by(7).chain([0, 999, 1000, 59_999, 253_402_300_799_999]) {
            let want = DateTime::<Utc>::from_timestamp_millis(ms as i64)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
            assert_eq!(Some(format_rfc3339(ms)), want, "at {ms}");
        }
        assert_eq!(format_rfc3339(u64::MAX), format!("{}ms", u64::MAX));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(1000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("2m"), Ok(120_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
