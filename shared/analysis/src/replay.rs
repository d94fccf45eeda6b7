//! Full replays of the event stream: the way to answer every analysis for recordings
//! without aggregates (format 3 and older, or damaged ones), `memlens summary --replay`, and
//! the reference the aggregates are tested against.

use std::ops::ControlFlow;

use crate::buckets::{downsample, Bucket};
use crate::totals::ThreadStackMap;
use crate::{
    AddressMap, AllocatorKind, BlockCount, EntryAllocators, Error, Event, EventFilter, Insight,
    InsightOptions, InsightsBuilder, Op, Recording, Snapshot, SnapshotBuilder, StackId,
    StackTotals, ThreadId, ThreadStackTotals, Totals,
};

/// Live allocations during a replay. An object re-created in a block is a free of the block
/// and an alloc of it (with the filter, it may leave or join the threads looked at).
/// Byte sums use wrapping arithmetic: exact for any real recording, and a hostile file with
/// absurd sizes gives absurd numbers instead of a panic.
pub(crate) struct Heap {
    live: AddressMap<(u64, StackId, ThreadId, Option<AllocatorKind>)>,
    bytes: u64,
    blocks: BlockCount,
    allocators: EntryAllocators,
}

impl Heap {
    /// An empty heap of `rec`'s blocks: counting as its aggregates count them
    /// ([`Recording::block_count`]), charged to the allocators they charge them to
    /// ([`Recording::entry_allocators`]).
    pub(crate) fn new(rec: &Recording) -> Self {
        Heap {
            live: AddressMap::default(),
            bytes: 0,
            blocks: rec.block_count(),
            allocators: rec.entry_allocators(),
        }
    }

    /// Applies one event; returns whether the heap changed.
    #[inline]
    pub(crate) fn apply(&mut self, e: &Event, filter: &EventFilter) -> bool {
        match e.op {
            Op::Alloc if filter.admits(e) => {
                let block = (e.size, e.stack, e.thread, self.allocators.of(e.kind));
                if let Some((old, ..)) = self.live.insert(e.address, block) {
                    self.bytes = self.bytes.wrapping_sub(old);
                }
                self.bytes = self.bytes.wrapping_add(e.size);
                true
            }
            Op::Free if e.kind.counts_in_heap() => match self.live.remove(&e.address) {
                Some((size, ..)) => {
                    self.bytes = self.bytes.wrapping_sub(size);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    pub(crate) fn by_thread_stack(&self) -> ThreadStackMap {
        let mut map = ThreadStackMap::default();
        for &(size, stack, thread, allocator) in self.live.values() {
            let slot = (thread, stack, allocator);
            map.entry(slot).or_default().add_blocks(size, self.blocks.of(size));
        }
        map
    }
}

/// Runs `f` on every event with its global index.
fn each_event(
    rec: &Recording,
    mut f: impl FnMut(usize, &Event) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut index = 0;
    rec.for_each_event_chunk(|events| {
        for e in events {
            f(index, e)?;
            index += 1;
        }
        ControlFlow::Continue(())
    })
}

/// Memory by stack for a snapshot, by one replay of every event (see [`SnapshotBuilder`] to
/// replay in slices).
pub fn stack_totals(
    rec: &Recording,
    snapshot: Snapshot,
    filter: &EventFilter,
) -> Result<StackTotals, Error> {
    Ok(replay(rec, SnapshotBuilder::new(rec, snapshot, filter))?.finish())
}

/// The heap's high-water mark within `[t0, t1]`: (bytes, time), by replay (see
/// [`crate::peak_in`]).
pub fn peak_in(rec: &Recording, t0: u64, t1: u64) -> Result<(u64, u64), Error> {
    let all = EventFilter::default();
    let builder = replay(rec, SnapshotBuilder::new(rec, Snapshot::PeakInRange(t0, t1), &all))?;
    Ok(builder.peak().unwrap_or_default())
}

/// Memory by (allocating thread, stack) for a snapshot, by one replay of every event.
pub fn thread_stack_totals(
    rec: &Recording,
    snapshot: Snapshot,
) -> Result<ThreadStackTotals, Error> {
    let builder = SnapshotBuilder::new(rec, snapshot, &EventFilter::default());
    Ok(replay(rec, builder)?.finish_by_thread())
}

/// Feeds every event chunk to `builder`, stopping once it is done.
fn replay(rec: &Recording, mut builder: SnapshotBuilder) -> Result<SnapshotBuilder, Error> {
    rec.for_each_event_chunk(|events| {
        builder.feed(events);
        if builder.is_done() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(builder)
}

/// The traced heap over `[t0, t1)` in `n` buckets (min/max per bucket, so the peak shows), by
/// replay.
pub fn heap_timeline(
    rec: &Recording,
    filter: &EventFilter,
    t0: u64,
    t1: u64,
    n: usize,
) -> Result<Vec<Bucket>, Error> {
    let mut heap = Heap::new(rec);
    let mut points = Vec::new();
    let mut moving = false;
    each_event(rec, |_, e| {
        let changed = heap.apply(e, filter);
        // Every point, even within one microsecond: a peak between two events stamped alike
        // must still show. But a re-created object's block leaves its owner and joins its new
        // one at once: the point is after both.
        if e.is_recreation() {
            moving |= changed;
            if e.op == Op::Alloc && std::mem::take(&mut moving) {
                points.push((e.time_ns, heap.bytes));
            }
        } else if changed {
            points.push((e.time_ns, heap.bytes));
        }
        ControlFlow::Continue(())
    })?;
    Ok(downsample(points, t0, t1, n))
}

/// Bytes and counts allocated by each thread over the whole recording, indexed by thread id,
/// by replay.
pub fn thread_totals(rec: &Recording) -> Result<Vec<Totals>, Error> {
    let mut out = vec![Totals::default(); rec.threads().len()];
    let blocks = rec.block_count();
    each_event(rec, |_, e| {
        if e.op == Op::Alloc && e.kind.counts_in_heap() && !e.is_recreation() {
            if let Some(t) = out.get_mut(e.thread.index()) {
                t.add_blocks(e.size, blocks.of(e.size));
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Everything the recording shows (see [`crate::insights`]), by one replay of every event.
pub fn insights(rec: &Recording, o: &InsightOptions) -> Result<Vec<Insight>, Error> {
    let mut b = InsightsBuilder::new(rec, o);
    if b.needs_events() {
        rec.for_each_event_chunk(|events| {
            b.feed(events);
            ControlFlow::Continue(())
        })?;
    }
    Ok(b.finish())
}

/// Memory by allocator kind (see [`crate::kind_usage`]), by one replay of every event.
pub fn kind_usage(rec: &Recording) -> Result<Vec<crate::KindUsage>, Error> {
    crate::kinds::replayed(rec)
}
