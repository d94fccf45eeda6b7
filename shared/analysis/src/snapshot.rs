//! [`SnapshotBuilder`]: memory by stack for a [`Snapshot`], built one batch of events at a
//! time, so a caller can replay a large recording in slices (the viewer yields to the browser
//! between event chunks) and stop early once the snapshot's span is over.

use crate::replay::Heap;
use crate::totals::{Slot, ThreadStackMap};
use crate::{
    AddressMap, BlockCount, EntryAllocators, Event, EventFilter, Op, Recording, Snapshot,
    StackTotals, ThreadStackTotals,
};

/// What is being built, for every thread (the filter applies when it is finished).
enum Kind {
    /// Bytes of every allocation made in `[t0, t1]`.
    Allocated { t0: u64, t1: u64, map: ThreadStackMap },
    /// The live heap once every event up to `t` is applied.
    LiveAt { t: u64, heap: Heap },
    /// The live heap at the highest point within `[t0, t1]` (see [`PeakState`]).
    Peak { t0: u64, t1: u64, state: Box<PeakState> },
}

/// Live memory at a high-water mark of the whole heap, in one pass (a thread filter applies
/// to the result: what the threads held at that moment).
///
/// Blocks are tagged with the index of their allocation. At the end, the blocks live at the
/// peak are those still live that were allocated before it, plus those freed after it; the
/// latter are logged as they are freed, and the log is cleared whenever a new peak makes it
/// stale. An object re-created in a block (a free and an alloc of the block, at one time)
/// moves it like a free and an allocation would: it never makes a new peak, and after the
/// peak the block as it was is logged. The heap as the span starts is a candidate too: a span where memory only falls
/// peaks at its start.
struct PeakState {
    blocks: BlockCount,
    live: AddressMap<(u64, Slot, usize)>,
    bytes: u64,
    /// (bytes, time) of the best point so far, once the span has started.
    peak: Option<(u64, u64)>,
    /// Events applied at the best point.
    peak_index: usize,
    freed_after_peak: Vec<(u64, Slot)>,
}

impl PeakState {
    fn new(blocks: BlockCount) -> Self {
        PeakState {
            blocks,
            live: AddressMap::default(),
            bytes: 0,
            peak: None,
            peak_index: 0,
            freed_after_peak: Vec::new(),
        }
    }

    fn feed(&mut self, i: usize, e: &Event, slot: Slot, t0: u64) {
        if self.peak.is_none() && e.time_ns >= t0 {
            self.peak = Some((self.bytes, t0));
            self.peak_index = i;
            self.freed_after_peak.clear();
        }
        match e.op {
            Op::Alloc if e.kind.counts_in_heap() => {
                if let Some((old, slot, at)) = self.live.insert(e.address, (e.size, slot, i)) {
                    self.bytes = self.bytes.wrapping_sub(old);
                    if at < self.peak_index {
                        self.freed_after_peak.push((old, slot));
                    }
                }
                self.bytes = self.bytes.wrapping_add(e.size);
                if self.peak.is_some_and(|(p, _)| self.bytes > p) {
                    self.peak = Some((self.bytes, e.time_ns));
                    self.peak_index = i + 1;
                    self.freed_after_peak.clear();
                }
            }
            Op::Free if e.kind.counts_in_heap() => {
                if let Some((size, slot, at)) = self.live.remove(&e.address) {
                    self.bytes = self.bytes.wrapping_sub(size);
                    if at < self.peak_index {
                        self.freed_after_peak.push((size, slot));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Builds [`StackTotals`] for a [`Snapshot`] from events fed in order.
///
/// ```
/// # use memlens_format::*;
/// # use memlens_analysis::*;
/// # let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
/// # w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "main".into() });
/// # w.alloc(1_000, ThreadId(0), StackId::ROOT, 0x10, 64, AllocatorKind::Malloc).unwrap();
/// # let rec = Recording::open(&w.finish(ProcessEnd::default()).unwrap()).unwrap();
/// let mut builder = SnapshotBuilder::new(&rec, Snapshot::AtPeak, &EventFilter::default());
/// let mut events = Vec::new();
/// for chunk in 0..rec.event_chunk_count() {
///     events.clear();
///     rec.decode_event_chunk(chunk, &mut events).unwrap();
///     builder.feed(&events);
///     if builder.is_done() {
///         break;
///     }
///     // (a browser would yield to its event loop here)
/// }
/// assert_eq!(builder.finish().total.bytes, 64);
/// ```
pub struct SnapshotBuilder {
    kind: Kind,
    blocks: BlockCount,
    /// The allocators blocks are charged to ([`Recording::entry_allocators`]).
    allocators: EntryAllocators,
    filter: EventFilter,
    /// Events fed so far.
    index: usize,
    done: bool,
}

impl SnapshotBuilder {
    /// Starts building `snapshot` of `rec` (whose events will be fed) for the allocations
    /// `filter` admits.
    pub fn new(rec: &Recording, snapshot: Snapshot, filter: &EventFilter) -> Self {
        let blocks = rec.block_count();
        let kind = match snapshot {
            Snapshot::TotalAllocated => {
                Kind::Allocated { t0: 0, t1: u64::MAX, map: ThreadStackMap::default() }
            }
            Snapshot::AllocatedInRange(t0, t1) => {
                Kind::Allocated { t0, t1, map: ThreadStackMap::default() }
            }
            Snapshot::AtEnd => Kind::LiveAt { t: u64::MAX, heap: Heap::new(rec) },
            Snapshot::AtTime(t) => Kind::LiveAt { t, heap: Heap::new(rec) },
            Snapshot::AtPeak => {
                Kind::Peak { t0: 0, t1: u64::MAX, state: Box::new(PeakState::new(blocks)) }
            }
            Snapshot::PeakInRange(t0, t1) => {
                Kind::Peak { t0, t1, state: Box::new(PeakState::new(blocks)) }
            }
        };
        let allocators = rec.entry_allocators();
        SnapshotBuilder { kind, blocks, allocators, filter: filter.clone(), index: 0, done: false }
    }

    /// Applies the next events, in recording order.
    pub fn feed(&mut self, events: &[Event]) {
        for e in events {
            if self.done {
                return;
            }
            let slot = (e.thread, e.stack, self.allocators.of(e.kind));
            match &mut self.kind {
                Kind::Allocated { t0, t1, map } => {
                    if e.time_ns > *t1 {
                        self.done = true;
                    } else if e.op == Op::Alloc
                        && !e.is_recreation()
                        && e.time_ns >= *t0
                        && e.kind.counts_in_heap()
                    {
                        let count = self.blocks.of(e.size);
                        map.entry(slot).or_default().add_blocks(e.size, count);
                    }
                }
                Kind::LiveAt { t, heap } => {
                    if e.time_ns > *t {
                        self.done = true;
                    } else {
                        heap.apply(e, &EventFilter::default());
                    }
                }
                Kind::Peak { t0, t1, state } => {
                    if e.time_ns > *t1 {
                        self.done = true;
                    } else {
                        state.feed(self.index, e, slot, *t0);
                    }
                }
            }
            self.index += 1;
        }
    }

    /// Whether later events can no longer change the result (they are past the snapshot's
    /// span), so the caller may stop feeding.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// For peak snapshots: the high-water mark so far, (bytes, time ns).
    pub fn peak(&self) -> Option<(u64, u64)> {
        match &self.kind {
            Kind::Peak { state, .. } => Some(state.peak.unwrap_or((state.bytes, 0))),
            _ => None,
        }
    }

    /// The memory by stack.
    pub fn finish(self) -> StackTotals {
        let filter = self.filter.clone();
        StackTotals::from_threads(&self.finish_map(), &filter)
    }

    /// The memory by (allocating thread, stack), of the threads the filter admits.
    pub fn finish_by_thread(self) -> ThreadStackTotals {
        let filter = self.filter.clone();
        let mut map = self.finish_map();
        map.retain(|&(thread, _, _), _| filter.admits_thread(thread));
        ThreadStackTotals::from_map(map)
    }

    fn finish_map(self) -> ThreadStackMap {
        match self.kind {
            Kind::Allocated { map, .. } => map,
            Kind::LiveAt { heap, .. } => heap.by_thread_stack(),
            Kind::Peak { state, .. } => {
                // A span that never started (no event at or after its start) peaks at the end.
                let peak_index = if state.peak.is_some() { state.peak_index } else { self.index };
                let mut map = ThreadStackMap::default();
                let still_live = state
                    .live
                    .values()
                    .filter(|&&(_, _, at)| at < peak_index)
                    .map(|&(size, slot, _)| (size, slot));
                for (size, slot) in still_live.chain(state.freed_after_peak) {
                    let count = state.blocks.of(size);
                    map.entry(slot).or_default().add_blocks(size, count);
                }
                map
            }
        }
    }
}
