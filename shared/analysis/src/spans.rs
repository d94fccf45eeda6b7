//! Memory used within time spans of one recording (one span per test, per notebook cell, per
//! `with memlens.span(...)` block), all computed in a single replay.
//!
//! Only blocks *allocated inside* a span count toward it: a span's peak is the high-water mark
//! of its own live blocks (frees of older blocks do not lower it), and its leaks are its own
//! blocks still live when it ends. That makes a test's figures independent of what earlier
//! tests left behind.
//!
//! ```
//! use memlens_format::*;
//! use memlens_analysis::*;
//! let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
//! w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
//! let f = w.intern_frame("f", "t.py", 1);
//! let s = w.intern_stack(StackId::ROOT, f);
//! w.alloc(10_000, ThreadId(0), s, 0x10, 100, AllocatorKind::Malloc).unwrap();
//! w.alloc(20_000, ThreadId(0), s, 0x20, 50, AllocatorKind::Malloc).unwrap();
//! w.free(21_000, ThreadId(0), 0x10, AllocatorKind::Malloc).unwrap();
//! let bytes = w.finish(ProcessEnd { time_ns: 30_000, exit_code: Some(0), signal: None }).unwrap();
//! let rec = Recording::open(&bytes).unwrap();
//! let [u] = &span_usage(&rec, &[(5_000, 25_000)]).unwrap()[..] else { panic!() };
//! assert_eq!((u.peak.bytes, u.leaked.total.bytes, u.allocated.bytes), (150, 50, 150));
//! ```

use memlens_format::{SpanEdge, SpanSide, ThreadId};
use rustc_hash::FxHashMap;

use crate::{AddressMap, BlockCount, Error, Op, Recording, StackId, StackTotals, Totals};

/// A span of a recording: from where it began to where it ended, on one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The name it was given.
    pub name: String,
    /// The thread it began and ended on.
    pub thread: ThreadId,
    /// When it began, in nanoseconds since the start of the recording.
    pub start_ns: u64,
    /// When it ended.
    pub end_ns: u64,
}

/// A span that began and has not ended: the program died inside it (a test it was running
/// when it was killed), or the recording is still being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSpan {
    /// The name it was given.
    pub name: String,
    /// The thread it began on.
    pub thread: ThreadId,
    /// When it began, in nanoseconds since the start of the recording.
    pub start_ns: u64,
}

/// The spans of a recording, each begin paired with the next end of the same name on the same
/// thread, in the order they began; and the spans that began and have not ended, in the order
/// they began.
pub fn spans(rec: &Recording) -> (Vec<Span>, Vec<OpenSpan>) {
    pair_spans(rec.span_edges())
}

fn pair_spans(edges: &[SpanEdge]) -> (Vec<Span>, Vec<OpenSpan>) {
    let mut open: Vec<&SpanEdge> = Vec::new();
    let mut closed = Vec::new();
    for e in edges {
        match e.side {
            SpanSide::Begin => open.push(e),
            SpanSide::End => {
                if let Some(i) = open.iter().rposition(|o| o.name == e.name && o.thread == e.thread)
                {
                    let begin = open.remove(i);
                    closed.push(Span {
                        name: begin.name.clone(),
                        thread: begin.thread,
                        start_ns: begin.time_ns,
                        end_ns: e.time_ns,
                    });
                }
            }
        }
    }
    closed.sort_by_key(|s| s.start_ns);
    let open = open
        .into_iter()
        .map(|o| OpenSpan { name: o.name.clone(), thread: o.thread, start_ns: o.time_ns })
        .collect();
    (closed, open)
}

/// What one span used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanUsage {
    /// The high-water mark of the span's own live blocks (bytes and number of blocks).
    pub peak: Totals,
    /// The span's own blocks live at that high-water mark, by stack.
    pub at_peak: StackTotals,
    /// The span's own blocks still live when it ended, by stack.
    pub leaked: StackTotals,
    /// Everything allocated within the span.
    pub allocated: Totals,
}

/// The span being replayed.
struct Active {
    index: usize,
    /// What each block counts ([`Recording::block_count`]).
    blocks: BlockCount,
    /// Blocks allocated in the span and still live: (size, stack, event number).
    live: AddressMap<(u64, StackId, u64)>,
    now: Totals,
    peak: Totals,
    /// Event number just after the peak was reached.
    peak_at: u64,
    /// Blocks live at the peak that were freed later (see `live_at_peak` in analysis.rs).
    freed_after_peak: Vec<(u64, StackId)>,
    allocated: Totals,
}

impl Active {
    fn new(index: usize, blocks: BlockCount) -> Self {
        Active {
            index,
            blocks,
            live: AddressMap::default(),
            now: Totals::default(),
            peak: Totals::default(),
            peak_at: 0,
            freed_after_peak: Vec::new(),
            allocated: Totals::default(),
        }
    }

    /// A block allocated in the span, or (`allocated` false) a block an object was
    /// re-created in: the span's own from now on, but not allocated by it.
    fn alloc(&mut self, n: u64, address: u64, size: u64, stack: StackId, allocated: bool) {
        if let Some(old) = self.live.insert(address, (size, stack, n)) {
            self.drop_block(old);
        }
        let count = self.blocks.of(size);
        self.now.add_blocks(size, count);
        if allocated {
            self.allocated.add_blocks(size, count);
        }
        if self.now.bytes > self.peak.bytes {
            self.peak = self.now;
            self.peak_at = n + 1;
            self.freed_after_peak.clear();
        }
    }

    fn free(&mut self, address: u64) {
        if let Some(old) = self.live.remove(&address) {
            self.drop_block(old);
        }
    }

    fn drop_block(&mut self, (size, stack, n): (u64, StackId, u64)) {
        self.now.bytes = self.now.bytes.wrapping_sub(size);
        self.now.count = self.now.count.saturating_sub(self.blocks.of(size));
        if n < self.peak_at {
            self.freed_after_peak.push((size, stack));
        }
    }

    fn finish(self) -> SpanUsage {
        let mut leaked: FxHashMap<StackId, Totals> = FxHashMap::default();
        let mut at_peak: FxHashMap<StackId, Totals> = FxHashMap::default();
        let blocks = self.blocks;
        for &(size, stack, n) in self.live.values() {
            leaked.entry(stack).or_default().add_blocks(size, blocks.of(size));
            if n < self.peak_at {
                at_peak.entry(stack).or_default().add_blocks(size, blocks.of(size));
            }
        }
        for (size, stack) in self.freed_after_peak {
            at_peak.entry(stack).or_default().add_blocks(size, blocks.of(size));
        }
        SpanUsage {
            peak: self.peak,
            at_peak: StackTotals::from_map(at_peak),
            leaked: StackTotals::from_map(leaked),
            allocated: self.allocated,
        }
    }
}

/// Memory used within each span `(start_ns, end_ns)` (inclusive), in one replay of the event
/// chunks that overlap a span (of every chunk when the file does not say their times). Spans
/// must not overlap (a later span that overlaps an earlier one gets only the events after that
/// one ends); the result is in the order of `spans`.
pub fn span_usage(rec: &Recording, spans: &[(u64, u64)]) -> Result<Vec<SpanUsage>, Error> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans[i]);
    let mut out = vec![SpanUsage::default(); spans.len()];
    let mut next = 0; // position in `order` of the next span to open
    let mut active: Option<Active> = None;
    let mut n = 0u64;
    let wanted = |i: usize| {
        let c = rec.event_chunk(i).copied().unwrap_or_default();
        !rec.event_times_known()
            || spans.iter().any(|&(s, e)| c.last_time_ns >= s && c.first_time_ns <= e)
    };
    let mut events = Vec::new();
    for chunk in (0..rec.event_chunk_count()).filter(|&i| wanted(i)) {
        events.clear();
        rec.decode_event_chunk(chunk, &mut events)?;
        if active.is_none() && next == order.len() {
            break;
        }
        for e in &events {
            n += 1;
            if active.as_ref().is_some_and(|a| e.time_ns > spans[a.index].1) {
                let a = active.take().expect("checked above");
                let i = a.index;
                out[i] = a.finish();
            }
            if active.is_none() {
                while next < order.len() && spans[order[next]].1 < e.time_ns {
                    next += 1; // a span with no events: nothing used
                }
                if next < order.len() && spans[order[next]].0 <= e.time_ns {
                    active = Some(Active::new(order[next], rec.block_count()));
                    next += 1;
                }
            }
            let Some(a) = active.as_mut() else { continue };
            if !e.kind.counts_in_heap() {
                continue;
            }
            match e.op {
                Op::Alloc => a.alloc(n, e.address, e.size, e.stack, !e.is_recreation()),
                Op::Free => a.free(e.address),
            }
        }
    }
    if let Some(a) = active {
        let i = a.index;
        out[i] = a.finish();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::{AllocatorKind, Meta, ProcessEnd, RecordingWriter, ThreadId, ThreadInfo};

    /// Two tests: the first leaks 100 of its 300 bytes and frees a block from before it; the
    /// second peaks at 70 and frees everything.
    #[test]
    fn each_span_counts_only_its_own_blocks() {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let fa = w.intern_frame("a", "t.py", 1);
        let a = w.intern_stack(StackId::ROOT, fa);
        let fb = w.intern_frame("b", "t.py", 2);
        let b = w.intern_stack(StackId::ROOT, fb);
        let t = ThreadId(0);
        let k = AllocatorKind::Malloc;
        w.alloc(1_000, t, a, 0x1, 1_000, k).unwrap(); // before any span
        w.alloc(11_000, t, a, 0x10, 200, k).unwrap();
        w.alloc(12_000, t, b, 0x20, 100, k).unwrap();
        w.free(13_000, t, 0x1, k).unwrap(); // an older block: does not lower the span's figures
        w.free(14_000, t, 0x10, k).unwrap();
        w.alloc(21_000, t, b, 0x30, 70, k).unwrap();
        w.free(22_000, t, 0x30, k).unwrap();
        w.free(23_000, t, 0x20, k).unwrap(); // the first span's leak, freed later
        let bytes =
            w.finish(ProcessEnd { time_ns: 30_000, exit_code: Some(0), signal: None }).unwrap();
        let rec = Recording::open(&bytes).unwrap();
        let u = span_usage(&rec, &[(20_000, 29_000), (10_000, 15_000), (16_000, 17_000)]).unwrap();
        assert_eq!(u[1].peak, Totals { bytes: 300, count: 2 });
        assert_eq!(
            u[1].at_peak.stacks,
            vec![(a, Totals { bytes: 200, count: 1 }), (b, Totals { bytes: 100, count: 1 })]
        );
        assert_eq!(u[1].leaked.stacks, vec![(b, Totals { bytes: 100, count: 1 })]);
        assert_eq!(u[1].allocated, Totals { bytes: 300, count: 2 });
        assert_eq!(u[0].peak, Totals { bytes: 70, count: 1 });
        assert_eq!(u[0].leaked.total, Totals::default());
        assert_eq!(u[2], SpanUsage::default());
    }

    /// The tracer stamps events in stretches, so the events right after a span's edge can
    /// carry the edge's very time, and events are stored to the microsecond: they must still
    /// fall inside a span that begins there and outside one that ends there.
    #[test]
    fn events_stamped_with_a_markers_time_fall_on_its_side() {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let f = w.intern_frame("a", "t.py", 1);
        let s = w.intern_stack(StackId::ROOT, f);
        let (t, k) = (ThreadId(0), AllocatorKind::Malloc);
        w.alloc(10_400, t, s, 0x1, 1, k).unwrap(); // before the span, in the same microsecond
        w.span_edge(10_500, t, SpanSide::Begin, "x");
        w.alloc(10_500, t, s, 0x2, 20, k).unwrap();
        w.alloc(20_100, t, s, 0x3, 300, k).unwrap();
        w.span_edge(20_100, t, SpanSide::End, "x");
        w.alloc(20_100, t, s, 0x4, 4_000, k).unwrap(); // after the span, at its end's time
        let bytes =
            w.finish(ProcessEnd { time_ns: 30_000, exit_code: Some(0), signal: None }).unwrap();
        let rec = Recording::open(&bytes).unwrap();
        let (closed, open) = spans(&rec);
        let ([x], []) = (&closed[..], &open[..]) else { panic!("{closed:?} {open:?}") };
        let u = span_usage(&rec, &[(x.start_ns, x.end_ns)]).unwrap();
        assert_eq!(u[0].allocated, Totals { bytes: 320, count: 2 });
    }

    fn edge(time_ns: u64, thread: u32, side: SpanSide, name: &str) -> SpanEdge {
        SpanEdge { time_ns, thread: ThreadId(thread), side, name: name.into() }
    }

    #[test]
    fn spans_pair_on_their_thread_nest_and_stay_open() {
        use SpanSide::{Begin, End};
        let (closed, open) = pair_spans(&[
            edge(1, 0, Begin, "a"),
            edge(2, 1, End, "a"), // another thread's: does not close it
            edge(3, 1, Begin, "a"),
            edge(4, 0, Begin, "b"),
            edge(5, 0, End, "b"),
            edge(6, 0, End, "a"),
            edge(7, 0, Begin, "c"),
        ]);
        let got: Vec<(&str, u32, u64, u64)> =
            closed.iter().map(|s| (s.name.as_str(), s.thread.0, s.start_ns, s.end_ns)).collect();
        assert_eq!(got, [("a", 0, 1, 6), ("b", 0, 4, 5)]);
        let open: Vec<(&str, u64)> = open.iter().map(|o| (o.name.as_str(), o.start_ns)).collect();
        assert_eq!(open, [("a", 3), ("c", 7)]);
    }
}
