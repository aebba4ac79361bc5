//! Turning a block of lines into events and dead letters: parse, check lateness against the
//! partition's watermark, and remember each line's position.

use super::SourceStats;
use crate::dead_letter::{DeadLetter, DeadReason, Position};
use crate::event::{Event, Sourced};
use crate::watermark::Watermark;
use std::sync::Arc;

/// What one source activation produced.
pub(crate) struct Batch<E> {
    pub events: Vec<Sourced<E>>,
    pub dead: Vec<DeadLetter>,
    pub stats: SourceStats,
}

impl<E> Batch<E> {
    pub fn new() -> Self {
        Batch {
            events: Vec::new(),
            dead: Vec::new(),
            stats: SourceStats::default(),
        }
    }
}

/// Trims the line terminator's `\r` and reports blank lines, which carry no record.
fn record(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(line)
    }
}

/// The first event time among the lines of `bytes`, used as a partition's starting watermark.
pub(crate) fn first_event_time<E: Event>(bytes: &[u8]) -> Option<u64> {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(record)
        .find_map(|line| E::parse(line).ok().map(|e| e.event_time()))
}

/// Parses the complete lines of `bytes`, which start at byte `offset` and line `line` of partition
/// `partition`, into `out`. Returns the position just after `bytes`.
pub(crate) fn parse_lines<E: Event>(
    bytes: &[u8],
    mut pos: Position,
    wm: &mut Watermark,
    name: &Arc<str>,
    ingest_ns: u64,
    out: &mut Batch<E>,
) -> Position {
    let mut start = 0;
    let len = bytes.len();
    while start < len {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(len, |i| start + i);
        let line_pos = Position {
            offset: pos.offset + start as u64,
            ..pos
        };
        if let Some(line) = record(&bytes[start..end]) {
            match E::parse(line) {
                Ok(event) => {
                    if wm.observe(event.event_time()) {
                        out.stats.events += 1;
                        out.events.push(Sourced {
                            event,
                            pos: line_pos,
                            ingest_ns,
                        });
                    } else {
                        out.stats.late += 1;
                        let msg = format!(
                            "event time {} is older than the watermark {} of its partition",
                            crate::time::format_rfc3339(event.event_time()),
                            crate::time::format_rfc3339(wm.current())
                        );
                        out.dead
                            .push(DeadLetter::new(DeadReason::Late, msg, name, line_pos, line));
                    }
                }
                Err(e) => {
                    out.stats.bad += 1;
                    out.dead
                        .push(DeadLetter::new(e.reason, e.message, name, line_pos, line));
                }
            }
        }
        pos.line += 1;
        start = end + 1;
    }
    out.stats.bytes += len as u64;
    pos.offset += len as u64;
    pos
}
