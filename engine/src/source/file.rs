//! Reading a file in parallel: the file is cut into fixed-size chunks aligned to line starts, chunk
//! `k` goes to worker `k % peers` (as Kafka partitions do), and each chunk is a partition with its
//! own watermark. Because chunk bounds do not depend on the number of workers, neither does which
//! records are late, so a run gives the same output on one worker or many.
//!
//! A chunk's first line number is the number of newlines before it. Counting them all up front
//! made every worker read the whole file from memory before parsing a line (7 % of a one-worker
//! run, twice that at two). Instead a worker learns the count of its own chunks by parsing them
//! and publishes it in the process's [`LineCounts`]; it counts another worker's chunk only when it
//! needs that count before the owner has published it (at two workers, about one chunk in two:
//! counting each chunk just before parsing it, for the next worker, measured no faster).

use super::lines::{Batch, first_event_time, parse_lines};
use super::operator::{Feed, FeedState};
use super::{Restart, SplitState};
use crate::dead_letter::{Position, SourceName};
use crate::event::Event;
use crate::time::{Millis, wall_nanos};
use crate::watermark::Watermark;
use memmap2::Mmap;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// Newlines in chunks of a file, by the chunk's byte range: shared by the workers of a process so
/// that each chunk is counted (or parsed) once where possible.
#[derive(Default, Debug)]
pub struct LineCounts(Mutex<HashMap<(usize, usize), u64>>);

impl LineCounts {
    /// The newlines in `bytes[start..end]`, counted now unless known.
    fn of(&self, bytes: &[u8], start: usize, end: usize) -> u64 {
        if let Some(n) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&(start, end)) {
            return *n;
        }
        let n = memchr::memchr_iter(b'\n', &bytes[start..end]).count() as u64;
        self.publish(start, end, n);
        n
    }

    fn publish(&self, start: usize, end: usize, newlines: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).entry((start, end)).or_insert(newlines);
    }
}

/// One chunk of the file owned by this worker.
struct Chunk {
    /// Its index in the file (the same whatever the number of workers).
    id: usize,
    /// End of the chunk's byte range (at a line start).
    end: usize,
    /// Start of the chunk's byte range.
    start: usize,
    /// Where the next unread line starts (`line` 0 until the newlines before it are known).
    next: Position,
    /// The chunk's first line, when this worker read it from its start (to publish its count).
    first_line: Option<u64>,
    wm: Watermark,
}

/// The chunks of a file that belong to one worker, read in order.
pub(crate) struct FileFeed<E> {
    map: Arc<Mmap>,
    name: SourceName,
    chunks: Vec<Chunk>,
    chunk_size: usize,
    lines: Arc<LineCounts>,
    /// How far newlines are counted: the first chunk not counted, and the newlines before it.
    counted: (usize, u64),
    /// `unstarted_low[i]`: the lowest starting watermark of chunks i.. (lower bound for unstarted chunks).
    unstarted_low: Vec<Millis>,
    current: usize,
    batch_bytes: usize,
    /// See [`Feed::skew_bound`].
    skew: Option<Millis>,
    _event: PhantomData<E>,
}

/// The first line start at or after `at`.
fn line_start(bytes: &[u8], at: usize) -> usize {
    if at == 0 {
        return 0;
    }
    if at >= bytes.len() {
        return bytes.len();
    }
    memchr::memchr(b'\n', &bytes[at - 1..]).map_or(bytes.len(), |i| at + i)
}

impl<E: Event> FileFeed<E> {
    /// The chunks of `map` for worker `index` of `peers`, continuing where `restart` says.
    #[allow(clippy::too_many_arguments)] // one per reading setting; a struct would only rename them
    pub fn new(
        map: Arc<Mmap>,
        lines: Arc<LineCounts>,
        name: SourceName,
        index: usize,
        peers: usize,
        chunk_size: u64,
        lateness: Millis,
        batch_bytes: usize,
        restart: Option<&Restart>,
    ) -> Self {
        let bytes: &[u8] = &map;
        let size = usize::try_from(chunk_size.max(1)).unwrap_or(usize::MAX);
        let count = bytes.len().div_ceil(size);
        let mut chunks = Vec::new();
        // The longest event time between the starts of two consecutive chunks of this worker:
        // what one round of chunks (one per worker) covers.
        let (mut round, mut last_first): (Millis, Option<Millis>) = (0, None);
        for k in (index..count).step_by(peers) {
            let (start, end) = chunk_range(bytes, k, size);
            if start >= end {
                continue;
            }
            let first = first_event_time::<E>(&bytes[start..end]).unwrap_or(Millis::MAX);
            if first != Millis::MAX {
                if let Some(last) = last_first {
                    round = round.max(first.saturating_sub(last));
                }
                last_first = Some(first);
            }
            let mut next = Position { partition: 0, offset: start as u64, line: 0 };
            let mut wm = Watermark::new(lateness, first);
            if let Some(saved) = restart.and_then(|r| r.get(&(k as u64))) {
                next = Position { partition: 0, offset: saved.offset, line: saved.line };
                wm = saved.wm;
            }
            chunks.push(Chunk { id: k, start, end, next, first_line: None, wm });
        }
        // Chunks read to their end before a restart are done.
        let current = chunks.iter().position(|c| (c.next.offset as usize) < c.end).unwrap_or(chunks.len());
        let mut unstarted_low = vec![Millis::MAX; chunks.len() + 1];
        for i in (0..chunks.len()).rev() {
            unstarted_low[i] = unstarted_low[i + 1].min(chunks[i].wm.current());
        }
        let skew = (peers > 1 && round > 0).then(|| round.saturating_mul(2));
        FileFeed {
            map,
            name,
            chunks,
            chunk_size: size,
            lines,
            counted: (0, 0),
            unstarted_low,
            current,
            batch_bytes,
            skew,
            _event: PhantomData,
        }
    }

    /// The newlines before chunk `id`, counting (or looking up) those of the chunks between the
    /// last one counted and it.
    fn lines_before(&mut self, id: usize) -> u64 {
        let bytes: &[u8] = &self.map;
        let (mut next, mut lines) = self.counted;
        while next < id {
            let (start, end) = chunk_range(bytes, next, self.chunk_size);
            if start < end {
                lines += self.lines.of(bytes, start, end);
            }
            next += 1;
        }
        self.counted = (next, lines);
        lines
    }
}

/// The byte range of chunk `k` of size `size`, both ends at line starts (empty if no line starts
/// in it).
fn chunk_range(bytes: &[u8], k: usize, size: usize) -> (usize, usize) {
    (line_start(bytes, k.saturating_mul(size)), line_start(bytes, (k + 1).saturating_mul(size)))
}

impl<E: Event> Feed<E> for FileFeed<E> {
    fn fill(&mut self, floor: Millis, out: &mut Batch<E>) -> FeedState {
        let Some(chunk) = self.chunks.get(self.current) else {
            return FeedState::Done;
        };
        if chunk.next.line == 0 {
            let (id, from_start) = (chunk.id, chunk.next.offset == chunk.start as u64);
            let line = self.lines_before(id) + 1;
            let chunk = &mut self.chunks[self.current];
            chunk.next.line = line;
            chunk.first_line = from_start.then_some(line);
            // Map the chunk's pages in one call rather than one fault per 64 KiB as they are
            // read: at two workers the faults contended for the process's page tables. Advice
            // only: a kernel without it (before Linux 5.14) faults them in as before.
            #[cfg(target_os = "linux")]
            let _ = self.map.advise_range(memmap2::Advice::PopulateRead, chunk.start, chunk.end - chunk.start);
        }
        let chunk = &mut self.chunks[self.current];
        let bytes: &[u8] = &self.map;
        let from = usize::try_from(chunk.next.offset).unwrap_or(usize::MAX).min(chunk.end);
        let to = line_start(bytes, from.saturating_add(self.batch_bytes)).min(chunk.end);
        chunk.next = parse_lines(&bytes[from..to], chunk.next, &mut chunk.wm, floor, &self.name, wall_nanos(), out);
        if to >= chunk.end {
            // Parsing counted the chunk's lines: a line ends at each newline, and a chunk ends
            // just after one (but for the file's last, which no other chunk follows).
            if let Some(first) = chunk.first_line {
                self.lines.publish(chunk.start, chunk.end, chunk.next.line - first);
            }
            self.current += 1;
        }
        if self.current < self.chunks.len() { FeedState::More } else { FeedState::Done }
    }

    fn low_watermark(&self) -> Option<Millis> {
        let chunk = self.chunks.get(self.current)?;
        Some(chunk.wm.current().min(self.unstarted_low[self.current + 1]))
    }

    fn skew_bound(&self) -> Option<Millis> {
        self.skew
    }

    fn splits(&self) -> Vec<SplitState> {
        let split = |c: &Chunk| SplitState { id: c.id as u64, offset: c.next.offset, line: c.next.line, wm: c.wm };
        self.chunks.iter().map(split).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{FileFeed, line_start};
    use crate::dead_letter::SourceName;
    use crate::event::{Event, ParseError};
    use crate::source::operator::{Feed, FeedState};
    use std::io::Write;
    use std::sync::Arc;

    /// A line that is its own event time, in ms.
    struct At(u64);

    impl Event for At {
        fn parse(line: &[u8]) -> Result<Self, ParseError> {
            std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map(At)
                .ok_or(ParseError::malformed("no time"))
        }
        fn event_time(&self) -> u64 {
            self.0
        }
    }

    /// The feed of worker `index` of `peers` over `lines`, in chunks of 10 bytes.
    fn feed(lines: &[u64], index: usize, peers: usize) -> FileFeed<At> {
        let mut file = tempfile::tempfile().unwrap();
        for t in lines {
            // 9 digits and a newline: one line per 10-byte chunk.
            writeln!(file, "{t:09}").unwrap();
        }
        FileFeed::new(map(&file), Arc::default(), SourceName::File("t".into()), index, peers, 10, 0, 1 << 10, None)
    }

    fn map(file: &std::fs::File) -> Arc<memmap2::Mmap> {
        #[allow(unsafe_code)]
        // SAFETY: the temporary file is private to this test and not changed while mapped.
        Arc::new(unsafe { memmap2::Mmap::map(file) }.unwrap())
    }

    /// Every event's line number is its line in the file, whichever worker reads it and in
    /// whatever order the workers go (so whichever counts the newlines before a chunk).
    #[test]
    fn line_numbers_do_not_depend_on_workers() {
        // Lines of varying length (the event time is the line's number), blank lines among them.
        let mut file = tempfile::tempfile().unwrap();
        let mut expected = Vec::new();
        for n in 1..=400u64 {
            if n % 7 == 0 {
                writeln!(file).unwrap();
            } else {
                writeln!(file, "{}{n}", " ".repeat((n % 5) as usize)).unwrap();
                expected.push((n, n));
            }
        }
        let map = map(&file);
        // Each order: which worker reads a batch next, until all are done.
        let orders: [fn(usize) -> usize; 3] = [|i| i % 2, |_| 0, |i| usize::from(i % 3 == 0)];
        for peers in [1, 2, 3] {
            for next in orders {
                let lines = Arc::new(super::LineCounts::default());
                let mut feeds: Vec<FileFeed<At>> = (0..peers)
                    .map(|w| {
                        let name = SourceName::File("t".into());
                        FileFeed::new(map.clone(), lines.clone(), name, w, peers, 64, 0, 20, None)
                    })
                    .collect();
                let mut seen = Vec::new();
                let (mut done, mut step) = (vec![false; peers], 0);
                while done.iter().any(|d| !d) {
                    let w = (next(step) % peers + step / 50) % peers;
                    step += 1;
                    if done[w] {
                        continue;
                    }
                    let mut batch = crate::source::lines::Batch::new();
                    done[w] = feeds[w].fill(0, &mut batch) == FeedState::Done;
                    seen.extend(batch.events.iter().map(|e| (e.pos.line, e.event.0)));
                }
                seen.sort_unstable();
                assert_eq!(seen, expected, "{peers} workers");
            }
        }
    }

    #[test]
    fn workers_may_run_ahead_by_two_rounds_of_chunks() {
        // Chunks start at 0, 1000, 2000, ... ms; the gap between two chunks of a worker grows.
        let times = [0, 1_000, 2_000, 3_000, 5_000, 9_000];
        // Worker 0 of 2 owns chunks 0, 2, 4 (0, 2000, 5000): rounds of 2000 and 3000 ms.
        assert_eq!(feed(&times, 0, 2).skew_bound(), Some(6_000));
        // Worker 1 owns 1, 3, 5 (1000, 3000, 9000): the longest round is 6000 ms.
        assert_eq!(feed(&times, 1, 2).skew_bound(), Some(12_000));
        // One worker cannot run ahead of another.
        assert_eq!(feed(&times, 0, 1).skew_bound(), None);
        // Out of time order, a chunk that starts earlier is no round.
        assert_eq!(feed(&[5_000, 0, 4_000, 0], 0, 2).skew_bound(), None);
    }

    #[test]
    fn line_starts() {
        let b = b"ab\ncd\n\nef";
        assert_eq!(line_start(b, 0), 0);
        assert_eq!(line_start(b, 1), 3);
        assert_eq!(line_start(b, 3), 3);
        assert_eq!(line_start(b, 4), 6);
        assert_eq!(line_start(b, 6), 6);
        assert_eq!(line_start(b, 7), 7);
        assert_eq!(line_start(b, 8), 9);
        assert_eq!(line_start(b, 100), 9);
    }
}
