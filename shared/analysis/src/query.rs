//! Analyses answered from the interval aggregates (format 4): a snapshot is a sum over a few
//! pyramid nodes, plus a replay of at most the two base intervals a time range cuts through.
//! Each function here gives what [`crate::replay`] gives on the same recording; tests check
//! it on real recordings.

use rustc_hash::FxHashMap;

use crate::totals::{Slot, ThreadStackMap};
use crate::{
    BlockCount, EntryAllocators, Error, Event, EventFilter, Interval, Op, Recording, Snapshot,
    StackId, StackTotals, Totals,
};

/// Live bytes and blocks per slot (thread, stack, allocator): sums of net changes.
pub(crate) type LiveMap = FxHashMap<Slot, (i64, i64)>;

fn add_to(map: &mut LiveMap, key: Slot, bytes: i64, count: i64) {
    let v = map.entry(key).or_default();
    v.0 = v.0.wrapping_add(bytes);
    v.1 = v.1.wrapping_add(count);
}

/// Adds a node's net changes.
fn add_net(map: &mut LiveMap, node: &Interval) {
    for e in &node.entries {
        let (b, c) = e.net();
        add_to(map, (e.thread, e.stack, e.allocator), b, c);
    }
}

/// The events the aggregates' figures are completed with: each counts in its slot as the
/// aggregates count it (its block counting [`Recording::block_count`], in the allocator
/// [`Recording::entry_allocator`] says).
struct Replayed {
    blocks: BlockCount,
    allocators: EntryAllocators,
}

impl Replayed {
    fn new(rec: &Recording) -> Self {
        Replayed { blocks: rec.block_count(), allocators: rec.entry_allocators() }
    }

    fn slot(&self, e: &Event) -> Slot {
        (e.thread, e.stack, self.allocators.of(e.kind))
    }

    /// Adds one event's change (heap allocators only; the halves of an object's re-creation
    /// move its block from one slot to another).
    fn add(&self, map: &mut LiveMap, e: &Event) {
        if !e.kind.counts_in_heap() {
            return;
        }
        let sign = if e.op == Op::Alloc { 1 } else { -1 };
        let count = (self.blocks.of(e.size) as i64).wrapping_mul(sign);
        add_to(map, self.slot(e), sign * e.size as i64, count);
    }
}

/// The slots of a live map that hold blocks, each one alone (`by_allocator`) or summed per
/// (thread, stack) first, as figures that do not split allocators are (a block an object
/// was re-created in moves between allocators' slots only in odd cases, which could leave
/// one slot below zero and its neighbour above).
fn live_slots(map: &LiveMap, by_allocator: bool) -> ThreadStackMap {
    let mut summed = LiveMap::default();
    let map = if by_allocator {
        map
    } else {
        for (&(t, s, _), &(b, c)) in map {
            add_to(&mut summed, (t, s, None), b, c);
        }
        &summed
    };
    map.iter()
        .filter(|(_, &(_, count))| count > 0)
        .map(|(&key, &(bytes, count))| {
            (key, Totals { bytes: bytes.max(0) as u64, count: count as u64 })
        })
        .collect()
}

/// The live map before base interval `k`: the net changes of every interval before it.
pub(crate) fn live_before(rec: &Recording, k: usize) -> Result<LiveMap, Error> {
    let mut map = LiveMap::default();
    for (level, index) in rec.cover(0, k as u64) {
        add_net(&mut map, &*rec.node(level, index)?);
    }
    Ok(map)
}

/// The first base interval with an event at or after `t`, and the first with its first event
/// after `t`: the intervals `a..b` hold every event of `[t0, t1]` for `(a, _) = bounds(t0)`,
/// `(_, b) = bounds(t1)`.
pub(crate) fn first_ending_at_or_after(rec: &Recording, t: u64) -> usize {
    rec.base_shapes().partition_point(|s| s.t_last < t)
}

pub(crate) fn first_starting_after(rec: &Recording, t: u64) -> usize {
    rec.base_shapes().partition_point(|s| s.t_first <= t)
}

/// The events of base interval `k` (its event chunk).
fn events_of(rec: &Recording, k: usize) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    if k < rec.event_chunk_count() {
        rec.decode_event_chunk(k, &mut events)?;
    }
    Ok(events)
}

/// Live memory at time `t` (every event up to `t` applied).
fn live_at(rec: &Recording, t: u64) -> Result<LiveMap, Error> {
    let k = rec.base_shapes().partition_point(|s| s.t_last <= t);
    let mut map = live_before(rec, k)?;
    if k < rec.base_count() && rec.base_shapes()[k].t_first <= t {
        let replayed = Replayed::new(rec);
        for e in events_of(rec, k)?.iter().take_while(|e| e.time_ns <= t) {
            replayed.add(&mut map, e);
        }
    }
    Ok(map)
}

/// Where the heap's high-water mark within a span is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PeakAt {
    /// At the span's start, after the events before it: before base interval `k` and its
    /// first `n` events.
    Start { k: usize, n: usize },
    /// After event `n` (0-based) of base interval `k`.
    Event { k: usize, n: usize },
    /// At base interval `k`'s own high-water mark.
    Interval(usize),
}

/// The high-water mark of `[t0, t1]` in a pass over heap figures alone: (bytes, time, where).
/// `None` when the span has no event (see [`Snapshot::PeakInRange`] for what that means).
fn find_peak(rec: &Recording, t0: u64, t1: u64) -> Result<Option<(u64, u64, PeakAt)>, Error> {
    let shapes = rec.base_shapes();
    let a = first_ending_at_or_after(rec, t0);
    let b = first_starting_after(rec, t1);
    if a >= b {
        return Ok(None);
    }
    // The span's start: the heap after the events before t0.
    let mut heap = shapes[a].heap_start;
    let mut start = PeakAt::Start { k: a, n: 0 };
    let mut first = a;
    let mut partial_a = Vec::new();
    if shapes[a].t_first < t0 {
        partial_a = events_of(rec, a)?;
        let before = partial_a.iter().take_while(|e| e.time_ns < t0);
        let mut n = 0;
        for e in before {
            heap = apply(heap, e);
            n += 1;
        }
        start = PeakAt::Start { k: a, n };
    }
    let mut best = (heap, t0, start);
    // Whether any event of the span was seen: without one, the span never started.
    let mut started = false;
    let mut consider = |heap: u64, time: u64, at: PeakAt| {
        started = true;
        if heap > best.0 {
            best = (heap, time, at);
        }
    };
    if let PeakAt::Start { n, .. } = start {
        if !partial_a.is_empty() {
            for (i, e) in partial_a.iter().enumerate().skip(n) {
                if e.time_ns > t1 {
                    break;
                }
                heap = apply(heap, e);
                consider(heap, e.time_ns, PeakAt::Event { k: a, n: i });
            }
            first = a + 1;
        }
    }
    // Whole intervals, then the last one if t1 cuts through it.
    let mut last = b;
    if b > first && shapes[b - 1].t_last > t1 {
        last = b - 1;
    }
    for (k, s) in shapes.iter().enumerate().take(last).skip(first) {
        consider(s.heap_max, s.t_max, PeakAt::Interval(k));
    }
    if last < b {
        let mut heap = shapes[last].heap_start;
        for (i, e) in events_of(rec, last)?.iter().enumerate() {
            if e.time_ns > t1 {
                break;
            }
            heap = apply(heap, e);
            consider(heap, e.time_ns, PeakAt::Event { k: last, n: i });
        }
    }
    Ok(started.then_some(best))
}

/// The heap after `e`. An object's re-creation leaves it as it is (between the free and the
/// alloc of its block too: no low point there).
fn apply(heap: u64, e: &Event) -> u64 {
    if e.is_recreation() {
        return heap;
    }
    match (e.op, e.kind.counts_in_heap()) {
        (Op::Alloc, true) => heap.wrapping_add(e.size),
        (Op::Free, true) => heap.wrapping_sub(e.size),
        _ => heap,
    }
}

/// The live map at a high-water mark found by [`find_peak`].
fn live_at_peak(rec: &Recording, at: PeakAt) -> Result<LiveMap, Error> {
    let (k, upto) = match at {
        PeakAt::Start { k, n } => (k, n),
        PeakAt::Event { k, n } => (k, n + 1),
        PeakAt::Interval(k) => {
            let mut map = live_before(rec, k)?;
            let node = rec.node(0, k as u32)?;
            add_net(&mut map, &node);
            for d in &node.since_max {
                let e = &node.entries[d.entry as usize];
                add_to(
                    &mut map,
                    (e.thread, e.stack, e.allocator),
                    d.bytes.wrapping_neg(),
                    d.count.wrapping_neg(),
                );
            }
            return Ok(map);
        }
    };
    let mut map = live_before(rec, k)?;
    if upto > 0 {
        let replayed = Replayed::new(rec);
        for e in events_of(rec, k)?.iter().take(upto) {
            replayed.add(&mut map, e);
        }
    }
    Ok(map)
}

/// The heap's high-water mark within `[t0, t1]`: (bytes, time). A span where memory only
/// falls peaks at its start; a span without events holds the heap as it was.
pub(crate) fn peak_in(rec: &Recording, t0: u64, t1: u64) -> Result<(u64, u64), Error> {
    Ok(match find_peak(rec, t0, t1)? {
        Some((bytes, time, _)) => (bytes, time),
        None => {
            let live = live_at(rec, t1)?;
            (live.values().fold(0u64, |sum, &(b, _)| sum.wrapping_add(b as u64)), 0)
        }
    })
}

/// Memory by stack for a snapshot.
pub(crate) fn stack_totals(
    rec: &Recording,
    snapshot: Snapshot,
    filter: &EventFilter,
) -> Result<StackTotals, Error> {
    Ok(StackTotals::from_threads(&thread_stack_map(rec, snapshot, false)?, filter))
}

/// Memory by (thread, stack) for a snapshot, every thread; by allocator too when
/// `by_allocator` (else every slot's allocator is `None`).
pub(crate) fn thread_stack_map(
    rec: &Recording,
    snapshot: Snapshot,
    by_allocator: bool,
) -> Result<ThreadStackMap, Error> {
    let n = rec.base_count();
    let live = match snapshot {
        Snapshot::AtEnd => live_before(rec, n)?,
        Snapshot::AtTime(t) => live_at(rec, t)?,
        Snapshot::AtPeak => match global_peak(rec) {
            Some(k) => live_at_peak(rec, PeakAt::Interval(k))?,
            None => LiveMap::default(),
        },
        Snapshot::PeakInRange(t0, t1) => match find_peak(rec, t0, t1)? {
            Some((_, _, at)) => live_at_peak(rec, at)?,
            // No event in the span: the heap as it was, after everything before it.
            None => live_at(rec, t1)?,
        },
        Snapshot::TotalAllocated => return allocated(rec, 0, u64::MAX, by_allocator),
        Snapshot::AllocatedInRange(t0, t1) => return allocated(rec, t0, t1, by_allocator),
    };
    Ok(live_slots(&live, by_allocator))
}

/// The base interval holding the recording's high-water mark (the first to reach it).
pub(crate) fn global_peak(rec: &Recording) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (k, s) in rec.base_shapes().iter().enumerate() {
        if best.is_none_or(|(b, _)| s.heap_max > b) {
            best = Some((s.heap_max, k));
        }
    }
    best.map(|(_, k)| k)
}

/// Everything allocated within `[t0, t1]`, by (thread, stack), and allocator if
/// `by_allocator`.
fn allocated(
    rec: &Recording,
    t0: u64,
    t1: u64,
    by_allocator: bool,
) -> Result<ThreadStackMap, Error> {
    let shapes = rec.base_shapes();
    let (a, b) = (first_ending_at_or_after(rec, t0), first_starting_after(rec, t1));
    let mut map = ThreadStackMap::default();
    if a >= b {
        return Ok(map);
    }
    let replayed = Replayed::new(rec);
    let slot = |(t, s, a): Slot| (t, s, a.filter(|_| by_allocator));
    let mut add_events = |k: usize| -> Result<(), Error> {
        for e in events_of(rec, k)? {
            let inside = e.time_ns >= t0 && e.time_ns <= t1;
            if inside && e.op == Op::Alloc && !e.is_recreation() && e.kind.counts_in_heap() {
                let count = replayed.blocks.of(e.size);
                map.entry(slot(replayed.slot(&e))).or_default().add_blocks(e.size, count);
            }
        }
        Ok(())
    };
    let (mut first, mut last) = (a, b);
    if shapes[a].t_first < t0 {
        add_events(a)?;
        first = a + 1;
    }
    if last > first && shapes[last - 1].t_last > t1 {
        add_events(last - 1)?;
        last -= 1;
    }
    for (level, index) in rec.cover(first as u64, last as u64) {
        for e in &rec.node(level, index)?.entries {
            if e.alloc.count > 0 {
                map.entry(slot((e.thread, e.stack, e.allocator))).or_default().merge(e.alloc);
            }
        }
    }
    Ok(map)
}

/// Bytes and counts allocated by each thread over the whole recording, by thread id.
pub(crate) fn thread_totals(rec: &Recording) -> Result<Vec<Totals>, Error> {
    let mut out = vec![Totals::default(); rec.threads().len()];
    for (level, index) in rec.cover(0, rec.base_count() as u64) {
        for e in &rec.node(level, index)?.entries {
            if let Some(t) = out.get_mut(e.thread.index()) {
                t.merge(e.alloc);
            }
        }
    }
    Ok(out)
}

/// Live bytes per stack (all threads) at time `t`, for the growth finding.
pub(crate) fn live_bytes_by_stack(
    rec: &Recording,
    t: Option<u64>,
) -> Result<FxHashMap<StackId, u64>, Error> {
    let live = match t {
        Some(t) => live_at(rec, t)?,
        None => live_before(rec, rec.base_count())?,
    };
    let mut out: FxHashMap<StackId, u64> = FxHashMap::default();
    for (&(_, stack, _), &(bytes, _)) in &live {
        let v = out.entry(stack).or_default();
        *v = v.saturating_add(bytes.max(0) as u64);
    }
    Ok(out)
}

/// Short-lived large allocations per stack over the whole recording: (count, bytes).
pub(crate) fn churn_by_stack(rec: &Recording) -> Result<FxHashMap<StackId, (u64, u64)>, Error> {
    let mut out: FxHashMap<StackId, (u64, u64)> = FxHashMap::default();
    for (level, index) in rec.cover(0, rec.base_count() as u64) {
        let node = rec.node(level, index)?;
        for d in &node.churn {
            let c = out.entry(node.entries[d.entry as usize].stack).or_default();
            c.0 = c.0.saturating_add(d.count.max(0) as u64);
            c.1 = c.1.saturating_add(d.bytes.max(0) as u64);
        }
    }
    Ok(out)
}
