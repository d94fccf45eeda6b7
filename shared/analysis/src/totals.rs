//! What analyses compute: memory by stack ([`StackTotals`]) for a moment or span
//! ([`Snapshot`]) of the allocations a filter admits ([`EventFilter`]).

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{AllocatorKind, Event, StackId, ThreadId, Totals};

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

    /// Whether allocations of `thread` are looked at.
    pub fn admits_thread(&self, thread: ThreadId) -> bool {
        self.threads.as_ref().is_none_or(|t| t.contains(&thread))
    }

    pub(crate) fn admits(&self, e: &Event) -> bool {
        e.kind.counts_in_heap() && self.admits_thread(e.thread)
    }
}

/// Memory attributed to each stack, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StackTotals {
    /// One entry per stack with memory, sorted by bytes (descending), then stack id.
    pub stacks: Vec<(StackId, Totals)>,
    /// The sum over all stacks.
    pub total: Totals,
}

impl StackTotals {
    /// The stacks of the threads `filter` admits, summed over those threads.
    pub(crate) fn from_threads(map: &ThreadStackMap, filter: &EventFilter) -> Self {
        let mut by_stack: FxHashMap<StackId, Totals> = FxHashMap::default();
        for (&(thread, stack, _), &t) in map {
            if filter.admits_thread(thread) {
                by_stack.entry(stack).or_default().merge(t);
            }
        }
        Self::from_map(by_stack)
    }

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

/// Who holds memory: the allocating thread, the stack and the allocator, as the aggregates
/// keep it apart (`None` in recordings older than format 8, whose aggregates do not; see
/// [`crate::Recording::entry_allocators`]).
pub(crate) type Slot = (ThreadId, StackId, Option<AllocatorKind>);

/// Memory per [`Slot`] while it is being summed.
pub(crate) type ThreadStackMap = FxHashMap<Slot, Totals>;

/// Memory attributed to each (allocating thread, stack, allocator), largest first: what
/// [`StackTotals`] sums over threads and allocators, for outputs that keep them apart
/// (pprof's labels).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadStackTotals {
    /// One entry per (thread, stack, allocator) with memory, sorted by bytes (descending),
    /// then thread, stack and allocator. The allocator is `None` for recordings older than
    /// format 8 (one entry per thread and stack).
    pub entries: Vec<(ThreadId, StackId, Option<AllocatorKind>, Totals)>,
}

impl ThreadStackTotals {
    pub(crate) fn from_map(map: ThreadStackMap) -> Self {
        let mut entries: Vec<_> = map
            .into_iter()
            .filter(|(_, t)| t.count > 0)
            .map(|((th, s, a), t)| (th, s, a, t))
            .collect();
        entries.sort_by(|a, b| {
            b.3.bytes.cmp(&a.3.bytes).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        });
        ThreadStackTotals { entries }
    }
}

/// What moment or span a [`StackTotals`] describes.
///
/// With a thread filter, the peaks ([`Snapshot::AtPeak`], [`Snapshot::PeakInRange`]) are
/// those of the whole heap: the result is what the chosen threads held at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Snapshot {
    /// Live at the traced heap's high-water mark.
    AtPeak,
    /// Still live when the recording ended (leaks).
    AtEnd,
    /// Live at a time (ns): every event up to and including that time applied.
    AtTime(u64),
    /// Live at the highest point of the heap within a time span (ns, inclusive).
    PeakInRange(u64, u64),
    /// Everything ever allocated (bytes and counts of all allocations).
    TotalAllocated,
    /// Everything allocated within a time span (ns, inclusive).
    AllocatedInRange(u64, u64),
}
