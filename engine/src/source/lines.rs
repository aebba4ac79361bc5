//! Turning a block of lines into events and dead letters: parse, check lateness against the
//! partition's watermark, and remember each line's position.

use super::SourceStats;
use crate::dead_letter::{DeadLetter, DeadReason, Position, SourceName};
use crate::event::{Event, Sourced};
use crate::time::Millis;
use crate::watermark::Watermark;

/// What one source activation produced.
pub(crate) struct Batch<E> {
    pub events: Vec<Sourced<E>>,
    pub dead: Vec<DeadLetter>,
    /// Per dead letter, the time it leaves at: its partition's watermark when it was read, which
    /// (unlike the source's own time) does not depend on how partitions are spread over workers,
    /// so dead letters are written in the same order at any parallelism (with checkpoints, up to
    /// the checkpoint times, which bound it).
    pub dead_at: Vec<Millis>,
    pub stats: SourceStats,
    /// The most events a batch has held.
    last: usize,
}

impl<E> Batch<E> {
    pub fn new() -> Self {
        Batch { events: Vec::new(), dead: Vec::new(), dead_at: Vec::new(), stats: SourceStats::default(), last: 0 }
    }

    /// Makes room for as many events as the last batch had: sending a batch hands its vector to
    /// timely, and growing the next one from nothing cost about 8 % of a tick's instructions.
    pub fn reserve(&mut self) {
        self.events.reserve(self.last);
    }

    /// Remembers the size of the batch about to be sent.
    pub fn sending(&mut self) {
        self.last = self.last.max(self.events.len());
    }
}

/// Trims the line terminator's `\r` and reports blank lines, which carry no record.
fn record(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) { None } else { Some(line) }
}

/// The first event time among the lines of `bytes`, used as a partition's starting watermark.
pub(crate) fn first_event_time<E: Event>(bytes: &[u8]) -> Option<u64> {
    bytes.split(|b| *b == b'\n').filter_map(record).find_map(|line| E::parse(line).ok().map(|e| e.event_time()))
}

/// Turns one record read at `pos`, parsed into `parsed`, into an event, or a dead letter if it is
/// bad or late. A record is late if it is older than its partition's watermark or than `floor`,
/// the source's current time.
#[allow(clippy::too_many_arguments)]
pub(crate) fn accept<E: Event>(
    parsed: Result<E, crate::event::ParseError>,
    record: &[u8],
    pos: Position,
    wm: &mut Watermark,
    floor: Millis,
    name: &SourceName,
    ingest_ns: u64,
    out: &mut Batch<E>,
) -> Option<Millis> {
    match parsed {
        Ok(event) => {
            let time = event.event_time();
            if time >= floor && wm.observe(time) {
                out.stats.events += 1;
                out.events.push(Sourced { event, pos, ingest_ns });
            } else {
                out.stats.late += 1;
                let msg = format!(
                    "event time {} is older than the watermark {} of its partition",
                    crate::time::format_rfc3339(time),
                    crate::time::format_rfc3339(wm.current().max(floor))
                );
                out.dead.push(DeadLetter::new(DeadReason::Late, msg, name, pos, record));
                out.dead_at.push(wm.current().max(floor));
            }
            Some(time)
        }
        Err(e) => {
            out.stats.bad += 1;
            out.dead.push(DeadLetter::new(e.reason, e.message, name, pos, record));
            out.dead_at.push(wm.current().max(floor));
            None
        }
    }
}

/// Parses the complete lines of `bytes`, which start at position `pos`, into `out`. Returns the
/// position just after `bytes`.
pub(crate) fn parse_lines<E: Event>(
    bytes: &[u8],
    mut pos: Position,
    wm: &mut Watermark,
    floor: Millis,
    name: &SourceName,
    ingest_ns: u64,
    out: &mut Batch<E>,
) -> Position {
    let mut start = 0;
    let len = bytes.len();
    while start < len {
        let line_pos = Position { offset: pos.offset + start as u64, ..pos };
        let rest = &bytes[start..];
        // The record must end where a line does (the contract of `parse_prefix`, checked).
        let whole = |(_, n): &(E, usize)| *n > 0 && rest.get(*n).is_none_or(|b| *b == b'\n') && *n <= rest.len();
        if let Some((event, n)) = E::parse_prefix(rest).filter(whole) {
            let _ = accept(Ok(event), &rest[..n], line_pos, wm, floor, name, ingest_ns, out);
            pos.line += 1;
            start += n + 1;
            continue;
        }
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(len, |i| start + i);
        if let Some(line) = record(&bytes[start..end]) {
            let _ = accept(E::parse_with_time(line, None), line, line_pos, wm, floor, name, ingest_ns, out);
        }
        pos.line += 1;
        start = end + 1;
    }
    out.stats.bytes += len as u64;
    pos.offset += len as u64;
    pos
}
