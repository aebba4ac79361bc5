//! Reading a file in parallel: the file is cut into fixed-size chunks aligned to line starts, chunk
//! `k` goes to worker `k % peers` (as Kafka partitions do), and each chunk is a partition with its
//! own watermark. Because chunk bounds do not depend on the number of workers, neither does which
//! records are late, so a run gives the same output on one worker or many.

use super::lines::{Batch, first_event_time, parse_lines};
use super::operator::{Feed, FeedState};
use super::{Restart, SplitState};
use crate::dead_letter::{Position, SourceName};
use crate::event::Event;
use crate::time::{Millis, wall_nanos};
use crate::watermark::Watermark;
use memmap2::Mmap;
use std::marker::PhantomData;
use std::sync::Arc;

/// One chunk of the file owned by this worker.
struct Chunk {
    /// Its index in the file (the same whatever the number of workers).
    id: usize,
    /// End of the chunk's byte range (at a line start).
    end: usize,
    /// Where the next unread line starts.
    next: Position,
    wm: Watermark,
}

/// The chunks of a file that belong to one worker, read in order.
pub(crate) struct FileFeed<E> {
    map: Arc<Mmap>,
    name: SourceName,
    chunks: Vec<Chunk>,
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
        // Line numbers: count newlines up to each owned chunk (memchr counts ~30 GB/s, so even
        // a large file costs milliseconds).
        let (mut counted_to, mut lines_before) = (0usize, 0u64);
        for k in (index..count).step_by(peers) {
            let start = line_start(bytes, k * size);
            let end = line_start(bytes, (k + 1).saturating_mul(size));
            if start >= end {
                continue;
            }
            lines_before += memchr::memchr_iter(b'\n', &bytes[counted_to..start]).count() as u64;
            counted_to = start;
            let first = first_event_time::<E>(&bytes[start..end]).unwrap_or(Millis::MAX);
            if first != Millis::MAX {
                if let Some(last) = last_first {
                    round = round.max(first.saturating_sub(last));
                }
                last_first = Some(first);
            }
            let mut next = Position { partition: 0, offset: start as u64, line: lines_before + 1 };
            let mut wm = Watermark::new(lateness, first);
            if let Some(saved) = restart.and_then(|r| r.get(&(k as u64))) {
                next = Position { partition: 0, offset: saved.offset, line: saved.line };
                wm = saved.wm;
            }
            chunks.push(Chunk { id: k, end, next, wm });
        }
        // Chunks read to their end before a restart are done.
        let current = chunks.iter().position(|c| (c.next.offset as usize) < c.end).unwrap_or(chunks.len());
        let mut unstarted_low = vec![Millis::MAX; chunks.len() + 1];
        for i in (0..chunks.len()).rev() {
            unstarted_low[i] = unstarted_low[i + 1].min(chunks[i].wm.current());
        }
        let skew = (peers > 1 && round > 0).then(|| round.saturating_mul(2));
        FileFeed { map, name, chunks, unstarted_low, current, batch_bytes, skew, _event: PhantomData }
    }
}

impl<E: Event> Feed<E> for FileFeed<E> {
    fn fill(&mut self, floor: Millis, out: &mut Batch<E>) -> FeedState {
        let Some(chunk) = self.chunks.get_mut(self.current) else {
            return FeedState::Done;
        };
        let bytes: &[u8] = &self.map;
        let from = usize::try_from(chunk.next.offset).unwrap_or(usize::MAX).min(chunk.end);
        let to = line_start(bytes, from.saturating_add(self.batch_bytes)).min(chunk.end);
        chunk.next = parse_lines(&bytes[from..to], chunk.next, &mut chunk.wm, floor, &self.name, wall_nanos(), out);
        if to >= chunk.end {
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
    use crate::source::operator::Feed;
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
        #[allow(unsafe_code)]
        // SAFETY: the temporary file is private to this test and not changed while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        FileFeed::new(Arc::new(map), SourceName::File("t".into()), index, peers, 10, 0, 1 << 10, None)
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
