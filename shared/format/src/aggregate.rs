//! [`Aggregator`]: builds base intervals ([`Interval`]) from events as they come, the way the
//! writer does while recording and `memlens check` does to verify a file; [`Pyramid`] folds
//! base intervals into the nodes above them, for the writer and for readers of a file that
//! was not closed (whose nodes above the base are only in the digest at its end).
//!
//! Per event the aggregator costs an index into a dense per-(thread, stack, allocator) array
//! and a push onto a log of the changes since the interval's high-water mark (cleared
//! whenever a new one is reached, so the changes before the peak are folded away only when
//! the peak moves). Cutting an interval sorts its touched entries; the pyramid folds them
//! into the open node of each level.

use rustc_hash::FxHashMap;

use crate::addr_hash::AddressMap;
use crate::intervals::{KindFigures, CHURN_MAX_LIFETIME_NS, CHURN_MIN_SIZE, FANOUT, MAX_LEVEL};
use crate::{
    AllocatorKind, BlockCount, EntryDelta, Event, Interval, IntervalEntry, Op, StackId, ThreadId,
    Totals,
};

/// A dense id for a (thread, stack, allocator) triple, handed out in order of first use.
pub(crate) type Key = u32;

/// The allocator part of a key: a kind's code (0-7), or [`NO_KIND`] for the entries of
/// files older than format 8, which do not say (it shares the last-key slot of kind 7,
/// which is never a key's: see [`EntryAllocators`]).
type KindCode = u8;
const NO_KIND: KindCode = u8::MAX;

fn kind_code(kind: Option<AllocatorKind>) -> KindCode {
    kind.map_or(NO_KIND, |k| k as u8)
}

/// (thread, stack, allocator) triples and their dense keys.
#[derive(Default)]
pub(crate) struct KeyTable {
    ids: FxHashMap<(u32, u32, KindCode), Key>,
    triples: Vec<(ThreadId, StackId, Option<AllocatorKind>)>,
    /// The last (stack, key) looked up on each thread for each allocator (by its code, the
    /// last slot for none): a loop allocates at one stack, often through two allocators in
    /// turn (an object and its buffer).
    last: Vec<[(u32, Key); 8]>,
}

impl KeyTable {
    #[inline]
    pub(crate) fn key(
        &mut self,
        thread: ThreadId,
        stack: StackId,
        kind: Option<AllocatorKind>,
    ) -> Key {
        let code = kind_code(kind);
        if let Some(last) = self.last.get(thread.index()) {
            let (s, k) = last[usize::from(code & 7)];
            if s == stack.0 {
                return k;
            }
        }
        self.key_slow(thread, stack, kind)
    }

    #[cold]
    fn key_slow(&mut self, thread: ThreadId, stack: StackId, kind: Option<AllocatorKind>) -> Key {
        let code = kind_code(kind);
        let next = self.triples.len() as Key;
        let k = *self.ids.entry((thread.0, stack.0, code)).or_insert(next);
        if k == next {
            self.triples.push((thread, stack, kind));
        }
        if thread.index() >= self.last.len() {
            self.last.resize(thread.index() + 1, [(u32::MAX, 0); 8]);
        }
        self.last[thread.index()][usize::from(code & 7)] = (stack.0, k);
        k
    }

    /// The (thread, stack, allocator) `key` stands for.
    fn triple(&self, key: Key) -> (ThreadId, StackId, Option<AllocatorKind>) {
        self.triples[key as usize]
    }

    pub(crate) fn pair(&self, key: Key) -> (ThreadId, StackId) {
        let (t, s, _) = self.triple(key);
        (t, s)
    }

    fn len(&self) -> usize {
        self.triples.len()
    }
}

/// The heap scalars of a node being built.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    t_first: u64,
    t_last: u64,
    heap_start: u64,
    heap_min: u64,
    t_min: u64,
    heap_max: u64,
    t_max: u64,
    heap_end: u64,
}

/// What one key did within a node: allocated, freed, moved (see [`IntervalEntry::moved`]).
#[derive(Debug, Clone, Copy, Default)]
struct Change {
    alloc: Totals,
    freed: Totals,
    moved: (i64, i64),
}

impl Change {
    fn merge(&mut self, other: &Change) {
        self.alloc.merge(other.alloc);
        self.freed.merge(other.freed);
        self.moved =
            (self.moved.0.wrapping_add(other.moved.0), self.moved.1.wrapping_add(other.moved.1));
    }
}

/// A finished node, by key (before it is sorted and named for the file).
#[derive(Clone)]
struct Node {
    level: u8,
    index: u32,
    shape: Shape,
    entries: Vec<(Key, Change)>,
    since_max: Vec<(Key, i64, i64)>,
    churn: Vec<(Key, i64, i64)>,
    kinds: Vec<KindFigures>,
}

/// The open node of one pyramid level above the base.
#[derive(Default)]
struct Level {
    children: u32,
    written: u32,
    shape: Shape,
    acc: FxHashMap<Key, Change>,
    churn: FxHashMap<Key, (i64, i64)>,
    kinds: Vec<KindFigures>,
}

fn add_delta(map: &mut FxHashMap<Key, (i64, i64)>, key: Key, bytes: i64, count: i64) {
    let d = map.entry(key).or_default();
    d.0 = d.0.wrapping_add(bytes);
    d.1 = d.1.wrapping_add(count);
}

impl Level {
    fn fold(&mut self, child: &Node) {
        let s = &child.shape;
        if self.children == 0 {
            self.shape = *s;
            self.kinds = child.kinds.clone();
        } else {
            self.shape.t_last = s.t_last;
            self.shape.heap_end = s.heap_end;
            if s.heap_min < self.shape.heap_min {
                (self.shape.heap_min, self.shape.t_min) = (s.heap_min, s.t_min);
            }
            let new_max = s.heap_max > self.shape.heap_max;
            if new_max {
                (self.shape.heap_max, self.shape.t_max) = (s.heap_max, s.t_max);
            }
            // A kind seen once is in every later node's list.
            for k in &child.kinds {
                let i = match self.kinds.binary_search_by_key(&k.kind, |f| f.kind) {
                    Ok(i) => i,
                    Err(i) => {
                        let zero = KindFigures { kind: k.kind, end: 0, at_max: 0, max: 0 };
                        self.kinds.insert(i, zero);
                        i
                    }
                };
                let f = &mut self.kinds[i];
                (f.end, f.max) = (k.end, f.max.max(k.max));
                if new_max {
                    f.at_max = k.at_max;
                }
            }
        }
        for (k, change) in &child.entries {
            self.acc.entry(*k).or_default().merge(change);
        }
        for &(k, b, c) in &child.churn {
            add_delta(&mut self.churn, k, b, c);
        }
        self.children += 1;
    }

    fn take(&mut self, level: u8) -> Node {
        let nonzero = |m: &mut FxHashMap<Key, (i64, i64)>| -> Vec<(Key, i64, i64)> {
            m.drain().filter(|(_, d)| *d != (0, 0)).map(|(k, (b, c))| (k, b, c)).collect()
        };
        let node = Node {
            level,
            index: self.written,
            shape: self.shape,
            entries: self.acc.drain().collect(),
            // A high-water mark is found among the base intervals, whose figures every reader
            // holds: a node above needs only where it is, not what changed after it.
            since_max: Vec::new(),
            churn: nonzero(&mut self.churn),
            kinds: std::mem::take(&mut self.kinds),
        };
        self.children = 0;
        self.written += 1;
        node
    }
}

/// What one key did in the base interval being built.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    change: Change,
    /// Whether the key is in `touched`.
    touched: bool,
    /// Live bytes and blocks changed since the interval's high-water mark.
    since: (i64, i64),
    /// Whether the key is in `since_touched`.
    since_listed: bool,
}

/// Builds [`Interval`] nodes from events (see the module documentation).
#[derive(Default)]
pub struct Aggregator {
    /// What each block counts (sampled recordings, see [`BlockCount`]).
    blocks: BlockCount,
    /// The allocators [`Aggregator::event`] keys blocks by (the writer names them itself).
    allocators: EntryAllocators,
    keys: KeyTable,
    heap: u64,
    started: bool,
    shape: Shape,
    /// Per key, for the base interval being built.
    acc: Vec<Acc>,
    /// Keys with allocations, frees or moves in the base interval.
    touched: Vec<Key>,
    /// Keys whose `since` may be non-zero: changed since the interval's high-water mark.
    since_touched: Vec<Key>,
    churn: FxHashMap<Key, (i64, i64)>,
    /// Allocation times of live blocks big enough for churn.
    big: AddressMap<u64>,
    /// Per allocator kind (by code): live bytes now, their highest in the base interval,
    /// and at the interval's high-water mark of the heap; which kinds were ever seen.
    kind_live: [u64; KINDS],
    kind_max: [u64; KINDS],
    kind_at_max: [u64; KINDS],
    kinds_seen: u16,
    base_written: u32,
    pyramid: Pyramid,
}

/// Allocator kinds are 3-bit codes.
const KINDS: usize = 8;

/// The allocator charged with the blocks objects are re-created in (see [`Aggregator::event`]
/// and [`crate::RecordingWriter::recreate`]).
pub(crate) const RECREATED_BLOCKS: AllocatorKind = AllocatorKind::PymallocObject;

/// Which allocator a recording's aggregates charge each heap event's block to (see
/// [`IntervalEntry::allocator`]): the event's kind, or for the two halves of an object's
/// re-creation (which say only that they are one) [`RECREATED_BLOCKS`], objects being
/// allocated in the object domain; none at all in files older than format 8, whose
/// aggregates do not keep allocators apart ([`crate::Recording::entry_allocators`]). Every
/// reader that replays events to complete or check the aggregates asks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryAllocators {
    apart: bool,
}

impl EntryAllocators {
    /// Allocators kept apart (format 8 and later; the writer).
    pub const APART: EntryAllocators = EntryAllocators { apart: true };
    /// Allocators not kept apart (before format 8).
    pub const NONE: EntryAllocators = EntryAllocators { apart: false };

    /// The allocator a block of an event of `kind` is charged to.
    #[inline]
    pub fn of(self, kind: AllocatorKind) -> Option<AllocatorKind> {
        self.apart.then_some(if kind == AllocatorKind::Recreated { RECREATED_BLOCKS } else { kind })
    }
}

impl Default for EntryAllocators {
    fn default() -> Self {
        EntryAllocators::APART
    }
}

/// Folds base intervals into the pyramid nodes above them.
#[derive(Default)]
pub struct Pyramid {
    /// `levels[j - 1]` is the open node of level `j`.
    levels: Vec<Level>,
}

impl Pyramid {
    /// Folds a base interval in; returns the nodes it completes, lowest level first.
    fn fold(&mut self, keys: &KeyTable, mut node: Node) -> Vec<Interval> {
        let mut out = Vec::new();
        for level in 1..=MAX_LEVEL {
            let j = usize::from(level) - 1;
            if j == self.levels.len() {
                self.levels.push(Level::default());
            }
            self.levels[j].fold(&node);
            if self.levels[j].children < FANOUT {
                break;
            }
            node = self.levels[j].take(level);
            out.push(named(keys, node.clone()));
        }
        out
    }
}

/// Builds the nodes above the base from base intervals read from a file, for a reader.
#[derive(Default)]
pub struct PyramidBuilder {
    keys: KeyTable,
    pyramid: Pyramid,
}

impl PyramidBuilder {
    /// Folds the next base interval in (entries included); returns the nodes it completes.
    pub fn add(&mut self, base: &Interval) -> Vec<Interval> {
        let keys = &mut self.keys;
        let mut key = |e: &IntervalEntry| keys.key(e.thread, e.stack, e.allocator);
        let by_entry = |list: &[EntryDelta], key: &mut dyn FnMut(&IntervalEntry) -> Key| {
            list.iter()
                .filter_map(|d| {
                    base.entries.get(d.entry as usize).map(|e| (key(e), d.bytes, d.count))
                })
                .collect()
        };
        let node = Node {
            level: 0,
            index: base.index,
            shape: Shape {
                t_first: base.t_first,
                t_last: base.t_last,
                heap_start: base.heap_start,
                heap_min: base.heap_min,
                t_min: base.t_min,
                heap_max: base.heap_max,
                t_max: base.t_max,
                heap_end: base.heap_end,
            },
            since_max: by_entry(&base.since_max, &mut key),
            churn: by_entry(&base.churn, &mut key),
            entries: base
                .entries
                .iter()
                .map(|e| (key(e), Change { alloc: e.alloc, freed: e.freed, moved: e.moved }))
                .collect(),
            kinds: base.kinds.clone(),
        };
        self.pyramid.fold(&self.keys, node)
    }
}

impl Aggregator {
    /// An aggregator starting from an empty heap, every block counting 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// An aggregator whose blocks count `blocks` ([`crate::Recording::block_count`] of the
    /// recording the events come from).
    pub fn counting(blocks: BlockCount) -> Self {
        Aggregator { blocks, ..Self::default() }
    }

    /// An aggregator of `rec`'s events that makes the base intervals its writer made: its
    /// blocks counting as [`crate::Recording::block_count`] says, charged to the allocators
    /// [`crate::Recording::entry_allocators`] says (`memlens check`).
    pub fn reading(rec: &crate::Recording) -> Self {
        Aggregator {
            blocks: rec.block_count(),
            allocators: rec.entry_allocators(),
            ..Self::default()
        }
    }

    /// The traced heap after the events so far.
    pub fn heap(&self) -> u64 {
        self.heap
    }

    /// Base intervals cut so far.
    pub fn base_intervals(&self) -> u32 {
        self.base_written
    }

    /// Whether the base interval being built has events.
    pub fn has_events(&self) -> bool {
        self.started
    }

    pub(crate) fn key(&mut self, thread: ThreadId, stack: StackId, kind: AllocatorKind) -> Key {
        self.keys.key(thread, stack, Some(kind))
    }

    pub(crate) fn pair(&self, key: Key) -> (ThreadId, StackId) {
        self.keys.pair(key)
    }

    /// The allocator of `key`'s blocks.
    pub(crate) fn allocator(&self, key: Key) -> Option<AllocatorKind> {
        self.keys.triple(key).2
    }

    /// Adds a decoded event (format 4: a free names its block's size, thread and stack).
    /// Events of allocators outside the heap count only in their kind's figures; the two
    /// halves of an object's re-creation move its block from one key to another.
    pub fn event(&mut self, e: &Event) {
        if !e.kind.counts_in_heap() {
            self.outside(e.kind, e.size, e.op == Op::Alloc);
            return;
        }
        let key = self.keys.key(e.thread, e.stack, self.allocators.of(e.kind));
        match e.op {
            _ if e.is_recreation() => {
                let sign = if e.op == Op::Alloc { 1 } else { -1 };
                self.moved(key, sign, e.size, e.time_ns);
            }
            Op::Alloc => {
                let count = self.blocks.of(e.size);
                self.alloc(key, e.kind, e.size, count, e.time_ns, e.address)
            }
            Op::Free => {
                let count = self.blocks.of(e.size);
                self.free(key, e.kind, e.size, count, e.time_ns, e.address)
            }
        }
    }

    /// A live heap block of `size` bytes moved to `to` from `from` (an object re-created in
    /// it): the heap, the counts and the kinds' figures stay.
    pub(crate) fn recreate(&mut self, from: Key, to: Key, size: u64, time_ns: u64) {
        self.moved(from, -1, size, time_ns);
        self.moved(to, 1, size, time_ns);
    }

    /// Half of a move: a block of `size` bytes joins (`sign` 1) or leaves (-1) `key`.
    #[inline]
    fn moved(&mut self, key: Key, sign: i64, size: u64, time_ns: u64) {
        self.begin(key, time_ns);
        let count = (self.blocks.of(size) as i64).wrapping_mul(sign);
        let bytes = (size as i64).wrapping_mul(sign);
        let m = &mut self.acc[key as usize].change.moved;
        *m = (m.0.wrapping_add(bytes), m.1.wrapping_add(count));
        self.since_max(key, bytes, count);
    }

    /// A block of `kind` allocated (`alloc`) or freed: the kind's live bytes.
    #[inline]
    fn kind_change(&mut self, kind: AllocatorKind, size: u64, alloc: bool) {
        let i = kind as usize;
        self.kinds_seen |= 1 << i;
        let v = &mut self.kind_live[i];
        *v = if alloc { v.wrapping_add(size) } else { v.wrapping_sub(size) };
        self.kind_max[i] = self.kind_max[i].max(*v);
    }

    /// A block of an allocator outside the heap (reserved address space, pymalloc's arenas)
    /// allocated or freed.
    #[inline]
    pub(crate) fn outside(&mut self, kind: AllocatorKind, size: u64, alloc: bool) {
        self.kind_change(kind, size, alloc);
    }

    #[inline]
    fn begin(&mut self, key: Key, time_ns: u64) {
        if !self.started {
            self.started = true;
            let h = self.heap;
            self.shape = Shape {
                t_first: time_ns,
                t_last: time_ns,
                heap_start: h,
                heap_min: h,
                t_min: time_ns,
                heap_max: h,
                t_max: time_ns,
                heap_end: h,
            };
        }
        self.shape.t_last = time_ns;
        let k = key as usize;
        if k >= self.acc.len() {
            self.acc.resize(self.keys.len().max(k + 1), Acc::default());
        }
        let a = &mut self.acc[k];
        if !a.touched {
            a.touched = true;
            self.touched.push(key);
        }
    }

    /// Notes a change after the interval's high-water mark.
    #[inline]
    fn since_max(&mut self, key: Key, bytes: i64, count: i64) {
        let a = &mut self.acc[key as usize];
        a.since.0 = a.since.0.wrapping_add(bytes);
        a.since.1 = a.since.1.wrapping_add(count);
        if !a.since_listed {
            a.since_listed = true;
            self.since_touched.push(key);
        }
    }

    /// A new high-water mark: the changes so far all come before it.
    #[inline]
    fn new_max(&mut self, time_ns: u64) {
        (self.shape.heap_max, self.shape.t_max) = (self.heap, time_ns);
        self.kind_at_max = self.kind_live;
        for k in self.since_touched.drain(..) {
            let a = &mut self.acc[k as usize];
            (a.since, a.since_listed) = ((0, 0), false);
        }
    }

    /// Adds a heap allocation of `count` blocks (1 but in a sampled recording) of `size`
    /// bytes in all (`time_ns` as stored: see [`crate::EVENT_TIME_QUANTUM_NS`]).
    #[inline(always)]
    pub(crate) fn alloc(
        &mut self,
        key: Key,
        kind: AllocatorKind,
        size: u64,
        count: u64,
        time_ns: u64,
        address: u64,
    ) {
        self.begin(key, time_ns);
        // A zero-size block still counts: its entry is touched through its count.
        self.acc[key as usize].change.alloc.add_blocks(size, count);
        self.heap = self.heap.wrapping_add(size);
        self.kind_change(kind, size, true);
        if self.heap > self.shape.heap_max {
            self.new_max(time_ns);
        } else {
            self.since_max(key, size as i64, count as i64);
        }
        if size >= CHURN_MIN_SIZE {
            self.big.insert(address, time_ns);
        }
    }

    /// Adds a free of a heap block of `size` bytes (standing for `count` blocks) allocated by
    /// `key`.
    #[inline(always)]
    pub(crate) fn free(
        &mut self,
        key: Key,
        kind: AllocatorKind,
        size: u64,
        count: u64,
        time_ns: u64,
        address: u64,
    ) {
        self.begin(key, time_ns);
        self.acc[key as usize].change.freed.add_blocks(size, count);
        self.heap = self.heap.wrapping_sub(size);
        self.kind_change(kind, size, false);
        self.since_max(key, (size as i64).wrapping_neg(), (count as i64).wrapping_neg());
        if self.heap < self.shape.heap_min {
            (self.shape.heap_min, self.shape.t_min) = (self.heap, time_ns);
        }
        if size >= CHURN_MIN_SIZE {
            if let Some(t) = self.big.remove(&address) {
                if time_ns.saturating_sub(t) <= CHURN_MAX_LIFETIME_NS {
                    add_delta(&mut self.churn, key, size as i64, count as i64);
                }
            }
        }
    }

    /// Ends the base interval: returns it and the pyramid nodes it completes (lowest level
    /// first). The interval spans at least `[t_start, t_end]` (its chunk's events, those of
    /// allocators outside the heap included); one without heap events has the heap unchanged.
    pub fn cut(&mut self, t_start: u64, t_end: u64) -> (Interval, Vec<Interval>) {
        if self.started {
            self.shape.t_first = self.shape.t_first.min(t_start);
            self.shape.t_last = self.shape.t_last.max(t_end);
        } else {
            let h = self.heap;
            self.shape = Shape {
                t_first: t_start,
                t_last: t_end.max(t_start),
                heap_start: h,
                heap_min: h,
                t_min: t_start,
                heap_max: h,
                t_max: t_start,
                heap_end: h,
            };
        }
        self.shape.heap_end = self.heap;
        let mut since = Vec::new();
        for k in self.since_touched.drain(..) {
            let a = &mut self.acc[k as usize];
            if a.since != (0, 0) {
                since.push((k, a.since.0, a.since.1));
            }
            (a.since, a.since_listed) = ((0, 0), false);
        }
        let mut entries = Vec::with_capacity(self.touched.len());
        for &k in &self.touched {
            let a = &mut self.acc[k as usize];
            entries.push((k, std::mem::take(&mut a.change)));
            a.touched = false;
        }
        self.touched.clear();
        let churn = std::mem::take(&mut self.churn)
            .into_iter()
            .filter(|(_, d)| *d != (0, 0))
            .map(|(k, (b, c))| (k, b, c))
            .collect();
        let kinds = (0..KINDS)
            .filter(|&i| self.kinds_seen & (1 << i) != 0)
            .filter_map(|i| {
                let kind = AllocatorKind::from_code(i as u8)?;
                let (end, at_max, max) = (self.kind_live[i], self.kind_at_max[i], self.kind_max[i]);
                Some(KindFigures { kind, end, at_max, max })
            })
            .collect();
        // The next interval starts here: its high-water mark is its start until a new one.
        (self.kind_at_max, self.kind_max) = (self.kind_live, self.kind_live);
        let node = Node {
            level: 0,
            index: self.base_written,
            shape: self.shape,
            entries,
            since_max: since,
            churn,
            kinds,
        };
        self.base_written += 1;
        self.started = false;
        let upper = self.pyramid.fold(&self.keys, node.clone());
        (named(&self.keys, node), upper)
    }
}

/// A node as written: entries by (thread, stack), deltas by entry index.
fn named(keys: &KeyTable, node: Node) -> Interval {
    let mut entries: Vec<(ThreadId, StackId, Option<AllocatorKind>, Key, Change)> = node
        .entries
        .into_iter()
        .map(|(k, change)| {
            let (t, s, a) = keys.triple(k);
            (t, s, a, k, change)
        })
        .collect();
    entries.sort_unstable_by_key(|e| (e.0, e.1, kind_code(e.2)));
    let index: FxHashMap<Key, u32> =
        entries.iter().enumerate().map(|(i, e)| (e.3, i as u32)).collect();
    let deltas = |list: Vec<(Key, i64, i64)>| -> Vec<EntryDelta> {
        let mut v: Vec<EntryDelta> = list
            .into_iter()
            .filter_map(|(k, bytes, count)| {
                Some(EntryDelta { entry: *index.get(&k)?, bytes, count })
            })
            .collect();
        v.sort_unstable_by_key(|d| d.entry);
        v
    };
    let s = node.shape;
    Interval {
        level: node.level,
        index: node.index,
        t_first: s.t_first,
        t_last: s.t_last,
        heap_start: s.heap_start,
        heap_min: s.heap_min,
        t_min: s.t_min,
        heap_max: s.heap_max,
        t_max: s.t_max,
        heap_end: s.heap_end,
        since_max: deltas(node.since_max),
        churn: deltas(node.churn),
        kinds: node.kinds,
        entries: entries
            .into_iter()
            .map(|(thread, stack, allocator, _, c)| IntervalEntry {
                thread,
                stack,
                allocator,
                alloc: c.alloc,
                freed: c.freed,
                moved: c.moved,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AllocatorKind;

    fn ev(op: Op, t: u64, stack: u32, address: u64, size: u64) -> Event {
        Event {
            op,
            kind: AllocatorKind::Malloc,
            time_ns: t,
            thread: ThreadId(0),
            address,
            size,
            stack: StackId(stack),
        }
    }

    /// A base interval keeps its high-water mark and what changed after it; a level-1 node
    /// over [`FANOUT`] of them sums them and keeps the highest point.
    #[test]
    fn nodes_keep_their_high_water_mark() {
        let mut agg = Aggregator::new();
        let (mut base, mut upper) = (Vec::new(), Vec::new());
        for i in 0..u64::from(FANOUT) {
            // Each interval allocates 100 at stack 1 and 10 at stack 2, then frees the 100;
            // interval 3 also allocates 1000 at stack 3 and frees it before its end.
            let t = i * 100;
            agg.event(&ev(Op::Alloc, t, 1, 0x1000 + i * 64, 100));
            agg.event(&ev(Op::Alloc, t + 1, 2, 0x9000 + i * 64, 10));
            if i == 3 {
                agg.event(&ev(Op::Alloc, t + 2, 3, 0x50000, 1000));
                agg.event(&ev(Op::Free, t + 3, 3, 0x50000, 1000));
            }
            agg.event(&ev(Op::Free, t + 4, 1, 0x1000 + i * 64, 100));
            let (b, u) = agg.cut(t, t + 99);
            base.push(b);
            upper.extend(u);
        }
        assert_eq!(upper.len(), 1, "one level-1 node over the base intervals");
        let top = &upper[0];
        assert_eq!((top.level, top.index), (1, 0));
        assert_eq!((top.heap_start, top.heap_max, top.t_max), (0, 30 + 1110, 302));
        assert_eq!(top.heap_end, 10 * u64::from(FANOUT));
        assert!(base.iter().chain(&upper).all(Interval::is_consistent));
        let three = &base[3];
        assert_eq!((three.heap_start, three.heap_max, three.heap_min), (30, 1140, 30));
        // After its peak, interval 3 frees its 1000 and 100.
        let by_stack = |d: &EntryDelta| (three.entries[d.entry as usize].stack.0, d.bytes, d.count);
        let since: Vec<_> = three.since_max.iter().map(by_stack).collect();
        assert_eq!(since, [(1, -100, -1), (3, -1000, -1)]);
        // Every base interval's entries sum to its net change.
        for n in &base {
            assert_eq!(n.heap_end, n.heap_start + 10);
        }
        // A reader folding the base intervals gets the same node.
        let mut builder = PyramidBuilder::default();
        let folded: Vec<Interval> = base.iter().flat_map(|b| builder.add(b)).collect();
        assert_eq!(folded, upper);
    }

    #[test]
    fn short_lived_big_blocks_are_churn() {
        let mut agg = Aggregator::new();
        agg.event(&ev(Op::Alloc, 0, 1, 0x10, 1 << 20));
        agg.event(&ev(Op::Free, 1_000, 1, 0x10, 1 << 20));
        agg.event(&ev(Op::Alloc, 2_000, 2, 0x20, 1 << 20));
        agg.event(&ev(Op::Free, 2_000 + CHURN_MAX_LIFETIME_NS + 1, 2, 0x20, 1 << 20));
        let n = &agg.cut(0, 0).0;
        let churn: Vec<_> =
            n.churn.iter().map(|d| (n.entries[d.entry as usize].stack.0, d.count)).collect();
        assert_eq!(churn, [(1, 1)]);
    }
}
