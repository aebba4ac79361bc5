//! Event time: milliseconds since the Unix epoch, parsed from and formatted as RFC 3339, and the
//! duration strings the CLI accepts ("1s", "250ms", "2m").

use chrono::DateTime;

/// Event time and durations in milliseconds; timely's timestamp type for every inflight dataflow.
pub type Millis = u64;

/// Parses an RFC 3339 timestamp ("2024-01-07T10:00:00Z", fractions and offsets allowed) into
/// milliseconds since the epoch; times before 1970 are rejected because event time is unsigned.
pub fn parse_rfc3339(text: &str) -> Result<Millis, String> {
    if let Some(ms) = parse_utc_fast(text.as_bytes()) {
        return Ok(ms);
    }
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| format!("timestamp {text:?} is not RFC 3339: {e}"))?;
    u64::try_from(parsed.timestamp_millis()).map_err(|_| format!("timestamp {text:?} is before 1970-01-01"))
}

/// The common fixed form `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` read directly; None for anything else
/// (offsets, leap seconds, a lowercase `t`, out-of-range fields), which chrono then parses or rejects.
///
/// Hand-written: chrono's general RFC 3339 parser was about 450 instructions of every market
/// tick's ~7,600. The date and hour are checked and converted once per hour of input per thread
/// (consecutive events share them); the rest costs about 60. Tests check it against chrono.
pub fn parse_utc_fast(b: &[u8]) -> Option<Millis> {
    if b.len() < 20 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    // Fixed-size views, so the positions below need no bounds checks.
    let head: [u8; 13] = b.get(..13)?.try_into().ok()?;
    let f: &[u8; 19] = b.get(..19)?.try_into().ok()?;
    let (cached, start) = HOUR.get();
    let hour_start = if cached == head {
        start
    } else {
        let start = hour_start(&head)?;
        HOUR.set((head, start));
        start
    };
    let d = |at: usize| Millis::from(f[at].wrapping_sub(b'0'));
    if !(f[14].is_ascii_digit() && f[15].is_ascii_digit() && f[17].is_ascii_digit() && f[18].is_ascii_digit()) {
        return None;
    }
    let (minute, second) = (d(14) * 10 + d(15), d(17) * 10 + d(18));
    let (mut ms, mut at) = (0, 19);
    if b[19] == b'.' {
        at = 20;
        while at < b.len() && b[at].is_ascii_digit() {
            // Milliseconds are the first three digits; finer ones are truncated, as chrono's are.
            if at < 23 {
                ms = ms * 10 + Millis::from(b[at] - b'0');
            }
            at += 1;
        }
        if !(21..=29).contains(&at) {
            return None;
        }
        ms *= [100, 10, 1][(at - 21).min(2)];
    }
    if at + 1 != b.len() || !matches!(b[at], b'Z' | b'z') || minute > 59 || second > 59 {
        return None;
    }
    Some(hour_start + minute * 60_000 + second * 1000 + ms)
}

thread_local! {
    /// The hour [`parse_utc_fast`] read last: its text `YYYY-MM-DDTHH` and its start (checked).
    static HOUR: std::cell::Cell<([u8; 13], Millis)> = const { std::cell::Cell::new(([0; 13], 0)) };
}

/// The start of the hour `YYYY-MM-DDTHH` in ms since the epoch, if it is a valid one (1970 on).
fn hour_start(f: &[u8; 13]) -> Option<Millis> {
    if f[4] != b'-' || f[7] != b'-' || f[10] != b'T' {
        return None;
    }
    let digit = |at: usize| f[at].is_ascii_digit();
    let date = digit(0) && digit(1) && digit(2) && digit(3) && digit(5) && digit(6) && digit(8) && digit(9);
    if !(date && digit(11) && digit(12)) {
        return None;
    }
    let d = |at: usize| Millis::from(f[at] - b'0');
    let two = |at: usize| d(at) * 10 + d(at + 1);
    let year = two(0) * 100 + two(2);
    let (month, day, hour) = (two(5), two(8), two(11));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > month_days[(month - 1) as usize] || hour > 23 {
        return None;
    }
    Some((days_from_civil(year, month, day) * 24 + hour) * 3_600_000)
}

/// Days from 1970-01-01 to (year, month, day), year ≥ 1970: Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: Millis, month: Millis, day: Millis) -> Millis {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC with millisecond precision.
pub fn format_rfc3339(ms: Millis) -> String {
    // The text straight from its bytes: `to_string` through `Display` cost five times as much.
    let text = Stamp(ms).bytes().and_then(|b| std::str::from_utf8(&b).ok().map(str::to_owned));
    text.unwrap_or_else(|| Stamp(ms).to_string())
}

/// A time that displays and serializes as RFC 3339 text without allocating: decisions carry
/// several (event time, departures, arrivals, decided_at), and formatting them was a large part
/// of a decision's cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(pub Millis);

impl Stamp {
    /// The text, or None after year 9999 (RFC 3339 has four-digit years).
    ///
    /// Hand-written: chrono's formatter cost a third of a decision, and the several times of a
    /// decision fall on different days, so no cache helps. The date is Howard Hinnant's
    /// `civil_from_days`; tests check the text against chrono.
    fn bytes(self) -> Option<[u8; 24]> {
        const DAY_MS: Millis = 86_400_000;
        let (days, of_day) = (self.0 / DAY_MS, self.0 % DAY_MS);
        let (year, month, day) = civil_from_days(days);
        if year > 9999 {
            return None;
        }
        // Two digits at a time from a table: a digit at a time was most of a stamp's cost.
        const PAIRS: &[u8; 200] = b"\
            00010203040506070809101112131415161718192021222324252627282930313233343536373839\
            40414243444546474849505152535455565758596061626364656667686970717273747576777879\
            8081828384858687888990919293949596979899";
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut pair = |at: usize, n: Millis| {
            let i = (n % 100) as usize * 2;
            out[at] = PAIRS[i];
            out[at + 1] = PAIRS[i + 1];
        };
        pair(0, year / 100);
        pair(2, year);
        pair(5, month);
        pair(8, day);
        pair(11, of_day / 3_600_000);
        pair(14, of_day / 60_000 % 60);
        pair(17, of_day / 1000 % 60);
        pair(21, of_day);
        out[20] = b'0' + (of_day / 100 % 10) as u8;
        Some(out)
    }
}

impl Stamp {
    /// Appends the text [`Display`](std::fmt::Display) writes, without the formatting machinery
    /// (a decision writes several).
    pub fn push_to(self, out: &mut String) {
        match self.bytes() {
            Some(b) => out.push_str(std::str::from_utf8(&b).unwrap_or_default()),
            None => {
                out.push_str(itoa::Buffer::new().format(self.0));
                out.push_str("ms");
            }
        }
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bytes() {
            Some(b) => f.write_str(std::str::from_utf8(&b).map_err(|_| std::fmt::Error)?),
            None => write!(f, "{}ms", self.0),
        }
    }
}

impl serde::Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.bytes() {
            Some(b) => s.serialize_str(std::str::from_utf8(&b).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

/// (year, month, day) of the day `days` after 1970-01-01 in the proleptic Gregorian calendar.
fn civil_from_days(days: Millis) -> (Millis, Millis, Millis) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + Millis::from(month <= 2);
    (year, month, day)
}

/// Parses a duration such as "1s", "250ms", "1m 30s" or "0" into milliseconds.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    let d = humantime::parse_duration(text).map_err(|e| match e {
        // humantime suggests `45sec`; our flags' examples say `45s`, and `m` is minutes.
        humantime::DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("{text:?} needs a unit: {value}ms, {value}s or {value}m")
        }
        e => format!("{text:?} is not a duration like 1s, 250ms or 2m: {e}"),
    })?;
    u64::try_from(d.as_millis()).map_err(|_| format!("duration {text:?} is too long"))
}

/// A duration as the flags take it: `1s`, `500ms`, `1m 30s`.
pub fn format_duration(ms: Millis) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
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
    use super::{Millis, parse_rfc3339};
    use serde::{Deserializer, Serializer, de};

    /// Writes the time as RFC 3339 text.
    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&super::Stamp(*ms), s)
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
                Some(ms) => s.serialize_some(&super::super::Stamp(*ms)),
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
    use chrono::{SecondsFormat, Utc};

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
    fn fast_path_agrees_with_chrono() {
        let chrono_ms =
            |t: &str| DateTime::parse_from_rfc3339(t).ok().and_then(|p| u64::try_from(p.timestamp_millis()).ok());
        // Every fixed-form text the fast path takes must read as chrono reads it; what it declines
        // (None) goes to chrono anyway.
        let start = 1_704_671_999_000u64;
        let times = (0..20_000u64).flat_map(|i| [start + i * 3_600_007, start - i * 2_700_013]);
        for ms in times.chain([0, 999, 951_782_400_000, 253_402_300_799_999]) {
            let text = format_rfc3339(ms);
            assert_eq!(parse_utc_fast(text.as_bytes()), Some(ms), "{text}");
            for variant in [text.replace('Z', "456Z"), format!("{}Z", &text[..19])] {
                assert_eq!(parse_utc_fast(variant.as_bytes()), chrono_ms(&variant), "{variant}");
            }
        }
        let cases = [
            "2024-01-07T10:00:00Z",
            "2024-01-07T10:00:00.1Z",
            "2024-01-07T10:00:00.12Z",
            "2024-01-07T10:00:00.123456789Z",
            "2024-01-07T10:00:00.999999z",
            "2024-02-29T23:59:59Z",
            "2000-02-29T00:00:00Z",
        ];
        for t in cases {
            assert_eq!(parse_utc_fast(t.as_bytes()), chrono_ms(t), "{t}");
            assert!(parse_utc_fast(t.as_bytes()).is_some(), "{t}");
        }
        // Declined: chrono decides (accepts some, rejects others).
        let declined = [
            "2024-01-07T10:00:00+01:00",
            "2024-01-07t10:00:00Z",
            "2024-01-07 10:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-07T24:00:00Z",
            "2024-01-07T10:60:00Z",
            "2016-12-31T23:59:60Z",
            "2024-01-07T10:00:00.Z",
            "2024-01-07T10:00:00.1234567890Z",
            "2024-01-07T10:00:00ZZ",
            "1969-12-31T23:59:59Z",
            "+024-01-07T10:00:00Z",
            "2024-01-07T10:00:0xZ",
        ];
        for t in declined {
            assert_eq!(parse_utc_fast(t.as_bytes()), None, "{t}");
        }
        assert_eq!(parse_rfc3339("2024-01-07T10:00:00+01:00"), Ok(1_704_618_000_000));
        assert!(parse_rfc3339("2023-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_rfc3339(1_704_621_600_123), "2024-01-07T10:00:00.123Z");
        assert_eq!(parse_rfc3339(&format_rfc3339(1_704_621_600_123)), Ok(1_704_621_600_123));
    }

    #[test]
    fn formats_like_chrono_across_seconds_and_days() {
        // The cached day must never leak into another one: check against chrono itself, around a
        // day boundary, over years (leap days included), alternating between far-apart times.
        let start = 1_704_671_999_000; // 2024-01-07T23:59:59Z, a day boundary a second later
        let years = (0..20_000u64).flat_map(|i| [start + i * 3_600_007, start - i * 2_700_013]);
        let edges = [0, 999, 1000, 59_999, 951_782_400_000, 253_402_300_799_999];
        for ms in (start..start + 3_000).step_by(7).chain(years).chain(edges) {
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
        assert_eq!(format_duration(90_000), "1m 30s");
        assert_eq!(parse_duration("45"), Err("\"45\" needs a unit: 45ms, 45s or 45m".to_string()));
    }
}
