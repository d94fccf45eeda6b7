//! Interval aggregates (format 4): what happened to the heap in a stretch of the recording,
//! per (thread, stack), so that readers answer the standard views from a few of them instead
//! of replaying every event.
//!
//! The recording is cut into *base intervals* (level 0): one per event chunk, or one per time
//! slice in an aggregate-only recording. Above them sits a pyramid: a node of level `j` and
//! index `i` sums the base intervals `i * 8^j .. (i + 1) * 8^j`. Any range of base intervals is
//! covered by at most 7 nodes of each level, so the live heap at an interval boundary (the sum
//! of the net changes before it) or everything allocated in a range costs O(stacks x log
//! intervals). Each node also keeps the heap's lowest and highest points within it, and a base
//! interval what changed after its highest point (`since_max`), so the live set at the
//! high-water mark of any range of whole intervals is a sum of nodes too, with no event
//! replayed.

use serde::{Deserialize, Serialize};

use crate::varint::{put_i64, put_u64, Cursor};
use crate::{AllocatorKind, StackId, ThreadId, Totals};

/// Children per pyramid node.
pub const FANOUT: u32 = 8;

/// Highest pyramid level: 8^10 base intervals is a billion chunks, beyond any recording.
pub const MAX_LEVEL: u8 = 10;

/// Short-lived large allocations, counted per stack in intervals for the churn finding: blocks
/// of at least this many bytes...
pub const CHURN_MIN_SIZE: u64 = 64 << 10;
/// ...freed within this many nanoseconds of their allocation (event times as stored).
pub const CHURN_MAX_LIFETIME_NS: u64 = 10_000_000;

/// The first format whose interval entries name their allocator.
pub(crate) const ALLOCATOR_ENTRIES_VERSION: u16 = 8;

/// What one (thread, stack, allocator) did within an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IntervalEntry {
    /// The thread that allocated the blocks.
    pub thread: ThreadId,
    /// The stack that allocated them.
    pub stack: StackId,
    /// The allocator they came from: a kind that counts in the heap. `None` in files older
    /// than format 8, whose entries are per (thread, stack) only.
    pub allocator: Option<AllocatorKind>,
    /// Blocks allocated within the interval.
    pub alloc: Totals,
    /// Blocks freed within the interval (allocated then or earlier).
    pub freed: Totals,
    /// Live blocks that changed hands within the interval, (bytes, blocks): those an object
    /// was re-created in by this thread and stack ([`AllocatorKind::Recreated`]), less those
    /// it held that an object was re-created in by another. Neither allocated nor freed.
    pub moved: (i64, i64),
}

impl IntervalEntry {
    /// Live bytes and blocks gained over the interval (negative when more was freed or
    /// moved away).
    pub fn net(&self) -> (i64, i64) {
        (
            (self.alloc.bytes as i64)
                .wrapping_sub(self.freed.bytes as i64)
                .wrapping_add(self.moved.0),
            (self.alloc.count as i64)
                .wrapping_sub(self.freed.count as i64)
                .wrapping_add(self.moved.1),
        )
    }
}

/// A change of one entry's live bytes and blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EntryDelta {
    /// Index into [`Interval::entries`].
    pub entry: u32,
    /// Change of live bytes.
    pub bytes: i64,
    /// Change of live blocks.
    pub count: i64,
}

/// The live bytes of one allocator kind within a node: what the heap figures say for all heap
/// kinds together, for one kind (including kinds outside the heap: reserved address space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindFigures {
    /// The allocator kind.
    pub kind: AllocatorKind,
    /// Live bytes of the kind after the node's last event.
    pub end: u64,
    /// ... at the node's high-water mark of the heap.
    pub at_max: u64,
    /// ... at their own highest within the node.
    pub max: u64,
}

/// A node of the interval pyramid (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Interval {
    /// Pyramid level: 0 for a base interval.
    pub level: u8,
    /// Index within its level: the node covers base intervals `index * 8^level` onwards.
    pub index: u32,
    /// Time of its first event (ns; for an empty interval, its start).
    pub t_first: u64,
    /// Time of its last event (ns).
    pub t_last: u64,
    /// Traced heap before its first event.
    pub heap_start: u64,
    /// Lowest heap within it, and when (the start counts).
    pub heap_min: u64,
    /// When the lowest point was first reached.
    pub t_min: u64,
    /// Highest heap within it (the start counts).
    pub heap_max: u64,
    /// When the highest point was first reached.
    pub t_max: u64,
    /// Traced heap after its last event.
    pub heap_end: u64,
    /// Per (thread, stack), sorted by thread then stack.
    pub entries: Vec<IntervalEntry>,
    /// Base intervals: what changed after the highest point, per entry (sorted by entry): the
    /// live set at the high-water mark is the one at the end minus these. Empty above the base.
    pub since_max: Vec<EntryDelta>,
    /// Short-lived large blocks ([`CHURN_MIN_SIZE`], [`CHURN_MAX_LIFETIME_NS`]) freed within
    /// the interval, per entry (sorted by entry): `bytes` and `count` are both non-negative.
    pub churn: Vec<EntryDelta>,
    /// Per allocator kind seen so far in the recording (ascending): its live bytes.
    pub kinds: Vec<KindFigures>,
}

impl Interval {
    /// Number of base intervals a node of `level` spans.
    pub fn span(level: u8) -> u64 {
        u64::from(FANOUT).saturating_pow(level.into())
    }

    /// The base intervals it covers.
    pub fn base_range(&self) -> std::ops::Range<u64> {
        let span = Self::span(self.level);
        let start = u64::from(self.index).saturating_mul(span);
        start..start.saturating_add(span)
    }

    /// The node without its entries: its heap figures (what a Digest keeps of a base
    /// interval).
    pub fn figures(&self) -> Interval {
        Interval { entries: Vec::new(), since_max: Vec::new(), churn: Vec::new(), ..self.clone() }
    }

    /// Whether its heap figures agree with its entries: the heap at its end is the heap at
    /// its start plus the entries' net change. (A base interval in a [`crate::Tag::Digest`]
    /// has its figures only.)
    pub fn is_consistent(&self) -> bool {
        let net: i64 = self.entries.iter().map(|e| e.net().0).fold(0, i64::wrapping_add);
        self.heap_start.wrapping_add(net as u64) == self.heap_end
            && self.heap_min <= self.heap_start.min(self.heap_end)
            && self.heap_max >= self.heap_start.max(self.heap_end)
            && self.t_first <= self.t_min.min(self.t_max)
            && self.t_last >= self.t_min.max(self.t_max)
    }
}

/// An Intervals (or Digest) chunk payload: the number of nodes, then each node (FORMAT.md,
/// "Interval aggregates").
pub fn encode_intervals(nodes: &[Interval]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u64(&mut out, nodes.len() as u64);
    for n in nodes {
        encode_node(&mut out, n);
    }
    out
}

/// Appends one node (see FORMAT.md, "Intervals chunks").
pub(crate) fn encode_node(out: &mut Vec<u8>, n: &Interval) {
    put_u64(out, n.level.into());
    put_u64(out, n.index.into());
    put_u64(out, n.t_first);
    for t in [n.t_last, n.t_min, n.t_max] {
        put_u64(out, t.wrapping_sub(n.t_first));
    }
    put_u64(out, n.heap_start);
    for h in [n.heap_min, n.heap_max, n.heap_end] {
        put_i64(out, h.wrapping_sub(n.heap_start) as i64);
    }
    put_u64(out, n.entries.len() as u64);
    let (mut thread, mut stack) = (0u32, 0u32);
    for e in &n.entries {
        debug_assert!((e.thread.0, e.stack.0) >= (thread, stack), "entries are sorted");
        put_u64(out, (e.thread.0 - thread).into());
        if e.thread.0 != thread {
            stack = 0;
        }
        put_u64(out, (e.stack.0 - stack).into());
        (thread, stack) = (e.thread.0, e.stack.0);
        // The writer names every entry's allocator (format 8).
        put_u64(out, e.allocator.map_or(0, |k| k as u64));
        put_u64(out, e.alloc.count);
        put_u64(out, e.alloc.bytes);
        // What was freed, as a difference from what was allocated: often nothing.
        put_i64(out, e.freed.count.wrapping_sub(e.alloc.count) as i64);
        put_i64(out, e.freed.bytes.wrapping_sub(e.alloc.bytes) as i64);
    }
    let moved: Vec<EntryDelta> = (0u32..)
        .zip(&n.entries)
        .filter(|(_, e)| e.moved != (0, 0))
        .map(|(entry, e)| EntryDelta { entry, bytes: e.moved.0, count: e.moved.1 })
        .collect();
    for deltas in [&n.since_max, &n.churn, &moved] {
        put_u64(out, deltas.len() as u64);
        let mut entry = 0u32;
        for d in deltas {
            put_u64(out, (d.entry - entry).into());
            entry = d.entry;
            put_i64(out, d.count);
            put_i64(out, d.bytes);
        }
    }
    put_u64(out, n.kinds.len() as u64);
    for k in &n.kinds {
        put_u64(out, (k.kind as u8).into());
        put_u64(out, k.end);
        put_u64(out, k.at_max);
        put_u64(out, k.max);
    }
}

/// Decodes an Intervals chunk payload. Thread and stack ids are checked against the table
/// sizes; entries must be sorted and unique, deltas must name entries in order.
pub(crate) fn decode_intervals(
    raw: &[u8],
    threads: usize,
    stacks: usize,
    version: u16,
) -> Result<Vec<Interval>, String> {
    let with_allocator = version >= ALLOCATOR_ENTRIES_VERSION;
    let mut c = Cursor::new(raw);
    let n = c.u64()?;
    // Every node takes more than one byte.
    if n > c.remaining() as u64 {
        return Err(format!("interval chunk claims {n} nodes"));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let level = u8::try_from(c.u64()?).ok().filter(|&l| l <= MAX_LEVEL);
        let level = level.ok_or("interval level out of range")?;
        let index = c.u32()?;
        let t_first = c.u64()?;
        let mut times = [0u64; 3];
        for t in &mut times {
            *t = t_first.checked_add(c.u64()?).ok_or("interval time overflows")?;
        }
        let [t_last, t_min, t_max] = times;
        let heap_start = c.u64()?;
        let heap_min = heap_start.wrapping_add(c.i64()? as u64);
        let heap_max = heap_start.wrapping_add(c.i64()? as u64);
        let heap_end = heap_start.wrapping_add(c.i64()? as u64);
        let count = c.u64()?;
        if count > c.remaining() as u64 {
            return Err(format!("interval claims {count} entries"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let (mut thread, mut stack) = (0u64, 0u64);
        let mut last_allocator = None;
        for i in 0..count {
            let dt = c.u64()?;
            let ds = c.u64()?;
            if dt > 0 {
                stack = 0;
            }
            thread = thread.checked_add(dt).ok_or("thread id overflows")?;
            stack = stack.checked_add(ds).ok_or("stack id overflows")?;
            let allocator = if with_allocator {
                let code = u8::try_from(c.u64()?).ok().and_then(AllocatorKind::from_code);
                let kind = code.filter(|k| k.counts_in_heap() && *k != AllocatorKind::Recreated);
                Some(kind.ok_or("interval entry names an allocator outside the heap")?)
            } else {
                None
            };
            // Sorted by (thread, stack, allocator), each once.
            if i > 0 && dt == 0 && ds == 0 && allocator <= last_allocator {
                return Err("interval entries repeat a (thread, stack, allocator)".into());
            }
            last_allocator = allocator;
            if thread >= threads as u64 || stack >= stacks as u64 {
                return Err("interval entry refers to an undefined thread or stack".into());
            }
            let alloc = Totals { count: c.u64()?, bytes: c.u64()? };
            let freed = Totals {
                count: alloc.count.wrapping_add(c.i64()? as u64),
                bytes: alloc.bytes.wrapping_add(c.i64()? as u64),
            };
            entries.push(IntervalEntry {
                thread: ThreadId(thread as u32),
                stack: StackId(stack as u32),
                allocator,
                alloc,
                freed,
                moved: (0, 0),
            });
        }
        let mut lists = [Vec::new(), Vec::new(), Vec::new()];
        for list in &mut lists {
            let len = c.u64()?;
            if len > entries.len() as u64 {
                return Err("interval deltas outnumber its entries".into());
            }
            let mut entry = 0u64;
            for i in 0..len {
                let d = c.u64()?;
                if i > 0 && d == 0 {
                    return Err("interval deltas repeat an entry".into());
                }
                entry = entry.checked_add(d).ok_or("entry index overflows")?;
                if entry >= entries.len() as u64 {
                    return Err("interval delta refers to a missing entry".into());
                }
                let count = c.i64()?;
                let bytes = c.i64()?;
                list.push(EntryDelta { entry: entry as u32, bytes, count });
            }
        }
        let [since_max, churn, moved] = lists;
        for d in moved {
            entries[d.entry as usize].moved = (d.bytes, d.count);
        }
        let n_kinds = c.u64()?;
        if n_kinds > AllocatorKind::ALL.len() as u64 {
            return Err("interval lists more allocator kinds than exist".into());
        }
        let mut kinds: Vec<KindFigures> = Vec::with_capacity(n_kinds as usize);
        for _ in 0..n_kinds {
            let code = u8::try_from(c.u64()?).ok().and_then(AllocatorKind::from_code);
            let kind = code.ok_or("interval names an unknown allocator kind")?;
            if kinds.last().is_some_and(|k| k.kind >= kind) {
                return Err("interval lists allocator kinds out of order".into());
            }
            kinds.push(KindFigures { kind, end: c.u64()?, at_max: c.u64()?, max: c.u64()? });
        }
        out.push(Interval {
            level,
            index,
            t_first,
            t_last,
            heap_start,
            heap_min,
            t_min,
            heap_max,
            t_max,
            heap_end,
            entries,
            since_max,
            churn,
            kinds,
        });
    }
    if !c.is_empty() {
        return Err("trailing bytes after the intervals".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Interval {
        let e = |thread, stack, a: u64, f: u64| IntervalEntry {
            thread: ThreadId(thread),
            stack: StackId(stack),
            allocator: Some(AllocatorKind::PymallocObject),
            alloc: Totals { bytes: a * 16, count: a },
            freed: Totals { bytes: f * 16, count: f },
            moved: (0, 0),
        };
        Interval {
            level: 2,
            index: 7,
            t_first: 1_000,
            t_last: 9_000,
            heap_start: 4_096,
            heap_min: 4_000,
            t_min: 2_000,
            heap_max: 9_000,
            t_max: 5_000,
            heap_end: 4_096 + 9 * 16,
            // (0, 5) re-created objects in 2 blocks of (0, 1)'s.
            entries: vec![
                IntervalEntry { moved: (-32, -2), ..e(0, 1, 10, 2) },
                IntervalEntry { moved: (32, 2), ..e(0, 5, 3, 3) },
                // One (thread, stack), two allocators: two entries.
                IntervalEntry { allocator: Some(AllocatorKind::Malloc), ..e(0, 5, 1, 1) },
                e(2, 0, 1, 0),
            ],
            since_max: vec![EntryDelta { entry: 1, bytes: -48, count: -3 }],
            churn: vec![EntryDelta { entry: 0, bytes: 1 << 20, count: 2 }],
            kinds: vec![
                KindFigures { kind: AllocatorKind::Malloc, end: 144, at_max: 144, max: 200 },
                KindFigures {
                    kind: AllocatorKind::Reserved,
                    end: 1 << 25,
                    at_max: 0,
                    max: 1 << 25,
                },
            ],
        }
    }

    #[test]
    fn nodes_round_trip() {
        let nodes = vec![node(), Interval { level: 0, index: 0, ..Interval::default() }];
        let raw = encode_intervals(&nodes);
        assert_eq!(decode_intervals(&raw, 3, 6, 8).unwrap(), nodes);
        assert_eq!(nodes[0].base_range(), 448..512);
        assert!(nodes[0].is_consistent());
    }

    #[test]
    fn bad_ids_and_orders_are_refused() {
        let raw = encode_intervals(&[node()]);
        assert!(decode_intervals(&raw, 2, 6, 8).unwrap_err().contains("undefined"));
        assert!(decode_intervals(&raw, 3, 5, 8).unwrap_err().contains("undefined"));
        for cut in 0..raw.len() {
            assert!(decode_intervals(&raw[..cut], 3, 6, 8).is_err(), "cut at {cut}");
        }
        let mut dup = node();
        dup.entries[1] = dup.entries[0];
        let err = decode_intervals(&encode_intervals(&[dup]), 3, 6, 8).unwrap_err();
        assert!(err.contains("repeat"), "{err}");
        // The same (thread, stack) with its allocators out of order.
        let mut swapped = node();
        swapped.entries.swap(1, 2);
        let err = decode_intervals(&encode_intervals(&[swapped]), 3, 6, 8).unwrap_err();
        assert!(err.contains("repeat"), "{err}");
        // An entry of an allocator outside the heap.
        let mut reserved = node();
        reserved.entries[2].allocator = Some(AllocatorKind::Reserved);
        let err = decode_intervals(&encode_intervals(&[reserved]), 3, 6, 8).unwrap_err();
        assert!(err.contains("outside the heap"), "{err}");
    }
}
