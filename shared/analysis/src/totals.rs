//! What analyses compute: memory by stack ([`StackTotals`]) for a moment or span
//! ([`Snapshot`]) of the allocations a filter admits ([`EventFilter`]).

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{Event, StackId, ThreadId, Totals};

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
