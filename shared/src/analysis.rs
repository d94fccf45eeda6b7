//! Replays of the event stream: the live heap over time, its peak, and which stacks hold the
//! memory at a chosen moment. Everything here is pure and shared by the CLI and the viewer.

use std::ops::ControlFlow;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::addr_hash::AddressMap;
use crate::{Error, Event, Op, Recording, SnapshotBuilder, StackId, Summary, ThreadId};

/// Which allocations an analysis looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only allocations made by these threads (all threads when `None`). A block is attributed
    /// to the thread that allocated it, whichever thread frees it.
    pub threads: Option<FxHashSet<ThreadId>>,
}

impl EventFilter {
    /// A filter for one thread.
    pub fn thread(id: ThreadId) -> Self {
        EventFilter { threads: Some(std::iter::once(id).collect()) }
    }

    pub(crate) fn admits(&self, e: &Event) -> bool {
        e.kind.counts_in_heap() && self.threads.as_ref().is_none_or(|t| t.contains(&e.thread))
    }

    /// What `e` does to the heap this filter sees: a re-created object's block leaves the
    /// heap of whichever thread held it for the re-creating thread's, so under a filter
    /// that does not admit that thread it is a free.
    #[inline]
    pub(crate) fn op(&self, e: &Event) -> Op {
        if e.is_recreation() && !self.admits(e) {
            Op::Free
        } else {
            e.op
        }
    }
}

/// Bytes and number of allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Totals {
    /// Bytes.
    pub bytes: u64,
    /// Allocations.
    pub count: u64,
}

impl Totals {
    /// Adds one allocation of `bytes`.
    pub fn add(&mut self, bytes: u64) {
        // Saturating: sizes come from untrusted files.
        self.bytes = self.bytes.saturating_add(bytes);
        self.count = self.count.saturating_add(1);
    }

    /// Adds other totals.
    pub fn merge(&mut self, other: Totals) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.count = self.count.saturating_add(other.count);
    }
}

/// Memory attributed to each stack, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackTotals {
    /// One entry per stack with memory, sorted by bytes (descending), then stack id.
    pub stacks: Vec<(StackId, Totals)>,
    /// The sum over all stacks.
    pub total: Totals,
}

impl StackTotals {
    pub(crate) fn from_map(map: FxHashMap<StackId, Totals>) -> Self {
        let mut stacks: Vec<_> = map.into_iter().filter(|(_, t)| t.count > 0).collect();
        stacks.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
        let mut total = Totals::default();
        for (_, t) in &stacks {
            total.merge(*t);
        }
        StackTotals { stacks, total }
    }
}

/// What moment or span a [`StackTotals`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// Live at the traced heap's high-water mark.
    AtPeak,
    /// Still live when the recording ended (leaks).
    AtEnd,
    /// Live at a time (ns).
    AtTime(u64),
    /// Live at the highest point of the heap within a time span (ns, inclusive).
    PeakInRange(u64, u64),
    /// Everything ever allocated (bytes and counts of all allocations).
    TotalAllocated,
    /// Everything allocated within a time span (ns, inclusive).
    AllocatedInRange(u64, u64),
}

/// Live allocations during a replay.
/// Byte sums use wrapping arithmetic: exact for any real recording, and a hostile file with
/// absurd sizes gives absurd numbers instead of a panic.
#[derive(Default)]
pub(crate) struct Heap {
    live: AddressMap<(u64, StackId)>,
    bytes: u64,
}

impl Heap {
    /// Applies one event; returns whether the heap changed.
    #[inline]
    pub(crate) fn apply(&mut self, e: &Event, filter: &EventFilter) -> bool {
        match filter.op(e) {
            Op::Alloc if filter.admits(e) => {
                if let Some((old, _)) = self.live.insert(e.address, (e.size, e.stack)) {
                    self.bytes = self.bytes.wrapping_sub(old);
                }
                self.bytes = self.bytes.wrapping_add(e.size);
                true
            }
            Op::Free if e.kind.counts_in_heap() => match self.live.remove(&e.address) {
                Some((size, _)) => {
                    self.bytes = self.bytes.wrapping_sub(size);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    pub(crate) fn by_stack(&self) -> StackTotals {
        let mut map: FxHashMap<StackId, Totals> = FxHashMap::default();
        for &(size, stack) in self.live.values() {
            map.entry(stack).or_default().add(size);
        }
        StackTotals::from_map(map)
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

/// Memory by stack for a snapshot (one replay; see [`SnapshotBuilder`] to replay in slices).
pub fn stack_totals(
    rec: &Recording,
    snapshot: Snapshot,
    filter: &EventFilter,
) -> Result<StackTotals, Error> {
    Ok(replay(rec, SnapshotBuilder::new(snapshot, filter))?.finish())
}

/// The heap's high-water mark under a filter, within `[t0, t1]`: (bytes, time). A span where
/// memory only falls peaks at its start.
pub fn peak_in(
    rec: &Recording,
    filter: &EventFilter,
    t0: u64,
    t1: u64,
) -> Result<(u64, u64), Error> {
    let builder = replay(rec, SnapshotBuilder::new(Snapshot::PeakInRange(t0, t1), filter))?;
    Ok(builder.peak().unwrap_or_default())
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

/// Recomputes the trailer's aggregates by replaying a recording (used when it has none).
pub(crate) fn summarize(rec: &Recording) -> Result<Summary, Error> {
    let mut s = Summary::default();
    let mut heap = Heap::default();
    let all = EventFilter::default();
    each_event(rec, |_, e| {
        if heap.apply(e, &all) {
            match e.op {
                Op::Alloc if e.is_recreation() => {}
                Op::Alloc => {
                    s.alloc_count += 1;
                    s.alloc_bytes = s.alloc_bytes.wrapping_add(e.size);
                    if heap.bytes > s.peak_heap {
                        s.peak_heap = heap.bytes;
                        s.peak_heap_time_ns = e.time_ns;
                    }
                }
                Op::Free => s.free_count += 1,
            }
        }
        s.duration_ns = s.duration_ns.max(e.time_ns);
        ControlFlow::Continue(())
    })?;
    for sample in rec.samples() {
        if sample.rss > s.peak_rss {
            s.peak_rss = sample.rss;
            s.peak_rss_time_ns = sample.time_ns;
        }
        s.duration_ns = s.duration_ns.max(sample.time_ns);
    }
    if let Some(end) = rec.end() {
        s.duration_ns = s.duration_ns.max(end.time_ns);
    }
    s.end_heap = heap.bytes;
    s.end_live_count = heap.live.len() as u64;
    Ok(s)
}

/// One bucket of a downsampled series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bucket {
    /// Start of the bucket (ns).
    pub t0: u64,
    /// End of the bucket (ns, exclusive).
    pub t1: u64,
    /// Lowest value in the bucket.
    pub min: u64,
    /// Highest value in the bucket: the peak is never lost to downsampling.
    pub max: u64,
    /// Value at the end of the bucket.
    pub last: u64,
}

/// Downsamples a step series (`(time, value)` in time order; each value holds until the next)
/// into `n` equal buckets over `[t0, t1)`, keeping each bucket's min and max.
pub fn downsample(
    points: impl IntoIterator<Item = (u64, u64)>,
    t0: u64,
    t1: u64,
    n: usize,
) -> Vec<Bucket> {
    let n = n.max(1);
    let span = t1.saturating_sub(t0).max(1);
    let edge = |i: usize| t0 + (span as u128 * i as u128 / n as u128) as u64;
    let mut out: Vec<Bucket> =
        (0..n).map(|i| Bucket { t0: edge(i), t1: edge(i + 1), ..Default::default() }).collect();
    let mut current = 0u64;
    let mut points = points.into_iter().peekable();
    for b in out.iter_mut() {
        // The value carried into the bucket counts for it too.
        while let Some(&(t, v)) = points.peek() {
            if t >= b.t0 {
                break;
            }
            current = v;
            points.next();
        }
        b.min = current;
        b.max = current;
        while let Some(&(t, v)) = points.peek() {
            if t >= b.t1 {
                break;
            }
            current = v;
            b.min = b.min.min(v);
            b.max = b.max.max(v);
            points.next();
        }
        b.last = current;
    }
    out
}

/// The traced heap over `[t0, t1)` in `n` buckets (min/max per bucket, so the peak shows).
pub fn heap_timeline(
    rec: &Recording,
    filter: &EventFilter,
    t0: u64,
    t1: u64,
    n: usize,
) -> Result<Vec<Bucket>, Error> {
    let mut heap = Heap::default();
    let mut points = Vec::new();
    each_event(rec, |_, e| {
        if heap.apply(e, filter) {
            match points.last_mut() {
                Some((t, v)) if *t == e.time_ns => *v = heap.bytes,
                _ => points.push((e.time_ns, heap.bytes)),
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(downsample(points, t0, t1, n))
}

/// Process RSS over `[t0, t1)` in `n` buckets.
pub fn rss_timeline(rec: &Recording, t0: u64, t1: u64, n: usize) -> Vec<Bucket> {
    downsample(rec.samples().iter().map(|s| (s.time_ns, s.rss)), t0, t1, n)
}

/// Bytes and counts allocated by each thread over the whole recording, indexed by thread id.
pub fn thread_totals(rec: &Recording) -> Result<Vec<Totals>, Error> {
    let mut out = vec![Totals::default(); rec.threads().len()];
    each_event(rec, |_, e| {
        if e.op == Op::Alloc && e.kind.counts_in_heap() && !e.is_recreation() {
            if let Some(t) = out.get_mut(e.thread.index()) {
                t.add(e.size);
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}
