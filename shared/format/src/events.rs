//! Event chunks: allocations and frees stored column by column, delta-encoded, so a chunk
//! compresses well and decodes on its own (see FORMAT.md, "Event chunks").
//!
//! Since format 4 every event names the block it is about in full: a free carries the size,
//! thread and stack of the allocation it ends, either through the allocation it points back
//! at in the same chunk or in columns of its own. A chunk's effect on the heap, per stack, is
//! then known from the chunk alone and the heap at its start: what lets a reader replay one
//! chunk (an interval) without the ones before it.
//!
//! An object re-created in a live block (kind 7, [`AllocatorKind::Recreated`]) is a pair: a
//! free of the block as it was (its size, thread and stack, like any free), then an alloc by
//! the block's new owner that writes no address or size (they are the free's).

use crate::varint::{put_i64, put_u64, Cursor};
use crate::{AllocatorKind, Event, Op, StackId, ThreadId};

/// Event times are stored at this resolution. Nanosecond clocks give noise in the low bits that
/// costs about a byte per event after compression; a microsecond is finer than any timeline.
pub const EVENT_TIME_QUANTUM_NS: u64 = 1_000;

/// `time_ns` rounded down to the resolution events are stored at.
pub(crate) fn quantize(time_ns: u64) -> u64 {
    time_ns / EVENT_TIME_QUANTUM_NS * EVENT_TIME_QUANTUM_NS
}

// Event header byte: bits 0-1 op, bits 2-4 allocator kind, bit 5 thread follows,
// bit 6 stack follows (allocs: as a delta from the previous alloc's stack in this chunk since
// format 3, else the same stack; explicit frees since format 4: as a delta from the previous
// explicit free's), bit 7 time advanced (otherwise the previous event's time).
const OP_ALLOC: u8 = 0;
const OP_FREE: u8 = 1;
/// A free of a block allocated earlier in this chunk: the address column holds how many
/// allocations ago (0 = the latest). Python frees most objects soon after allocating them.
const OP_FREE_RECENT: u8 = 2;
/// An alloc at an address freed earlier in this chunk: the address column says which free,
/// counting back (see [`EventEncoder::push`]). pymalloc hands out the block freed last first.
const OP_ALLOC_REUSE: u8 = 3;
const KIND_SHIFT: u8 = 2;
const HAS_THREAD: u8 = 1 << 5;
const HAS_STACK: u8 = 1 << 6;
const HAS_TIME: u8 = 1 << 7;

/// The column streams of an event chunk, in payload order after the header bytes. Formats 1
/// to 3 have the first five.
const COLUMNS: usize = 7;
const COLUMNS_V3: usize = 5;
const TIME: usize = 0;
const THREAD: usize = 1;
const ADDRESS: usize = 2;
const SIZE: usize = 3;
const STACK: usize = 4;
/// Format 4: the size of the block an explicit free ends.
const FREE_SIZE: usize = 5;
/// Format 4: its stack, as a delta from the previous explicit free's.
const FREE_STACK: usize = 6;

/// Predicts the address of an explicit alloc (one that does not reuse a block freed earlier in
/// the chunk) from the previous explicit alloc of the same class: allocators carve fresh
/// blocks of one size class one after another, so the next block usually starts where the
/// last one ended, while the previous explicit address of any class is often in another pool.
/// Classes: pymalloc's 32 size classes (object and mem domains share its pools), then glibc
/// malloc (larger blocks, the raw domain and native allocations), mmap, and pymalloc arenas.
/// Format version 3; before it, every explicit address was a delta from the previous explicit
/// address, which is also the guess for a class not seen yet in the chunk.
#[derive(Clone)]
struct AddressPredictor {
    next: [u64; PREDICTOR_CLASSES],
    seen: u64,
}

const PYMALLOC_CLASSES: usize = 32;
const PREDICTOR_CLASSES: usize = PYMALLOC_CLASSES + 3;
/// The class of a block freed with an explicit address: its size is not in the chunk.
const UNKNOWN_CLASS: u8 = u8::MAX;

impl Default for AddressPredictor {
    fn default() -> Self {
        AddressPredictor { next: [0; PREDICTOR_CLASSES], seen: 0 }
    }
}

impl AddressPredictor {
    /// The class of an alloc and the bytes its block takes in its allocator. A block an
    /// object was re-created in is one of the object allocator's.
    #[inline]
    fn class(kind: AllocatorKind, size: u64) -> (usize, u64) {
        let pymalloc = matches!(
            kind,
            AllocatorKind::PymallocObject | AllocatorKind::PyMem | AllocatorKind::Recreated
        );
        if pymalloc && size <= 16 * PYMALLOC_CLASSES as u64 {
            let class = size.saturating_sub(1) / 16;
            return (class as usize, (class + 1) * 16);
        }
        // glibc malloc: an 8-byte header, 16-byte alignment, 32 bytes at least.
        let block = (size.saturating_add(8 + 15) & !15).max(32);
        match kind {
            AllocatorKind::Mmap | AllocatorKind::Reserved => (PYMALLOC_CLASSES + 1, block),
            AllocatorKind::PymallocArena => (PYMALLOC_CLASSES + 2, block),
            _ => (PYMALLOC_CLASSES, block),
        }
    }

    fn predict(&self, class: usize, fallback: u64) -> u64 {
        if self.seen & (1 << class) != 0 {
            self.next[class]
        } else {
            fallback
        }
    }

    fn update(&mut self, class: usize, address: u64, block: u64) {
        self.seen |= 1 << class;
        self.next[class] = address.wrapping_add(block);
    }
}

/// Delta-encodes events into a chunk payload (format 4), column by column: like values sit
/// together, so the chunk compressor finds far more repeats than in row order. Times must not
/// decrease (the writer clamps). A free's thread, stack and size must be those of the
/// allocation it ends. A re-creation's alloc must follow its free, with the same address and
/// size.
pub(crate) struct EventEncoder {
    heads: Vec<u8>,
    columns: [Vec<u8>; COLUMNS],
    pub(crate) count: u64,
    pub(crate) first_time: u64,
    pub(crate) last_time: u64,
    prev_thread: u32,
    prev_address: u64,
    predictor: AddressPredictor,
    prev_stack: u32,
    prev_free_stack: u32,
    /// The class of each alloc pushed in this chunk, by alloc number.
    alloc_class: Vec<u8>,
    /// For each free pushed in this chunk, by free number: the class of the freed block (if
    /// it was allocated in this chunk) and how many frees of that class came before it.
    free_rank: Vec<(u8, u32)>,
    class_frees: [u32; PREDICTOR_CLASSES],
    /// Number of chunks finished so far: tells the writer whether an index it kept is from
    /// the chunk being built.
    pub(crate) chunk: u32,
}

/// How an event's address is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressRef {
    /// As a delta from the previous explicit address.
    Explicit,
    /// A free of the block allocated by this chunk's alloc number `n`.
    Allocated(u32),
    /// An alloc at the address freed by this chunk's free number `n`.
    Freed(u32),
}

impl Default for EventEncoder {
    fn default() -> Self {
        EventEncoder {
            heads: Vec::new(),
            columns: Default::default(),
            count: 0,
            first_time: 0,
            last_time: 0,
            prev_thread: 0,
            prev_address: 0,
            predictor: AddressPredictor::default(),
            prev_stack: 0,
            prev_free_stack: 0,
            alloc_class: Vec::new(),
            free_rank: Vec::new(),
            class_frees: [0; PREDICTOR_CLASSES],
            chunk: 0,
        }
    }
}

impl EventEncoder {
    /// Allocs pushed in this chunk: the number the next alloc's [`AddressRef`]s will name.
    pub(crate) fn allocs(&self) -> u32 {
        self.alloc_class.len() as u32
    }

    /// Frees pushed in this chunk, likewise.
    pub(crate) fn frees(&self) -> u32 {
        self.free_rank.len() as u32
    }

    /// Appends one event. Inlined, as are the live-block table's and the aggregates' work
    /// per event, into the writer's `alloc` and `free`, and those into the recorder's loop,
    /// which runs for each of tens of millions of events: that took 27% off the recorder's
    /// instructions (callgrind of `memlens run` on churn.py, 1.1 million events: 749 to 548
    /// million).
    #[inline(always)]
    pub(crate) fn push(&mut self, e: &Event, address: AddressRef) {
        let t = e.time_ns / EVENT_TIME_QUANTUM_NS;
        if self.count == 0 {
            self.first_time = t;
            self.last_time = t;
        }
        let recreated = e.op == Op::Alloc && e.kind == AllocatorKind::Recreated;
        let (op, recent) = match (e.op, address) {
            // Its address and size are its free's, the event before it.
            (Op::Alloc, _) if recreated => {
                let (class, _) = AddressPredictor::class(e.kind, e.size);
                self.alloc_class.push(class as u8);
                (OP_ALLOC, None)
            }
            (Op::Alloc, address) => {
                let (class, _) = AddressPredictor::class(e.kind, e.size);
                self.alloc_class.push(class as u8);
                let guessed = self.predictor.predict(class, self.prev_address) == e.address;
                match address {
                    // A fresh block, or a reused one just where the next fresh one would be.
                    _ if guessed => (OP_ALLOC, None),
                    // Counted back among the frees of the alloc's class: the allocator hands a
                    // class's blocks out again latest freed first. A block freed as another
                    // class is written as an explicit address: it is mostly a fresh carve.
                    AddressRef::Freed(n) => match self.free_rank.get(n as usize) {
                        Some(&(c, rank)) if c as usize == class => {
                            (OP_ALLOC_REUSE, Some(self.class_frees[class] - 1 - rank))
                        }
                        _ => (OP_ALLOC, None),
                    },
                    _ => (OP_ALLOC, None),
                }
            }
            (Op::Free, AddressRef::Allocated(n)) if (n as usize) < self.alloc_class.len() => {
                let class = self.alloc_class[n as usize];
                self.free_rank.push((class, self.class_frees[class as usize]));
                self.class_frees[class as usize] += 1;
                (OP_FREE_RECENT, Some(self.alloc_class.len() as u32 - 1 - n))
            }
            (Op::Free, _) => {
                self.free_rank.push((UNKNOWN_CLASS, 0));
                (OP_FREE, None)
            }
        };
        let mut head = op | ((e.kind as u8) << KIND_SHIFT);
        if t > self.last_time {
            head |= HAS_TIME;
            put_u64(&mut self.columns[TIME], t - self.last_time);
            self.last_time = t;
        }
        // A free of a recent block takes its thread, stack and size from that block's alloc.
        if op != OP_FREE_RECENT && e.thread.0 != self.prev_thread {
            head |= HAS_THREAD;
            put_u64(&mut self.columns[THREAD], e.thread.0.into());
            self.prev_thread = e.thread.0;
        }
        match recent {
            _ if recreated => {}
            Some(ago) => put_u64(&mut self.columns[ADDRESS], ago.into()),
            None => {
                let mut guess = self.prev_address;
                if e.op == Op::Alloc {
                    let (class, block) = AddressPredictor::class(e.kind, e.size);
                    guess = self.predictor.predict(class, guess);
                    self.predictor.update(class, e.address, block);
                }
                put_i64(&mut self.columns[ADDRESS], e.address.wrapping_sub(guess) as i64);
                self.prev_address = e.address;
            }
        }
        match op {
            OP_ALLOC | OP_ALLOC_REUSE => {
                if !recreated {
                    put_u64(&mut self.columns[SIZE], e.size);
                }
                if e.stack.0 != self.prev_stack {
                    head |= HAS_STACK;
                    put_i64(&mut self.columns[STACK], delta(self.prev_stack, e.stack.0));
                    self.prev_stack = e.stack.0;
                }
            }
            OP_FREE => {
                put_u64(&mut self.columns[FREE_SIZE], e.size);
                if e.stack.0 != self.prev_free_stack {
                    head |= HAS_STACK;
                    put_i64(&mut self.columns[FREE_STACK], delta(self.prev_free_stack, e.stack.0));
                    self.prev_free_stack = e.stack.0;
                }
            }
            _ => {}
        }
        self.heads.push(head);
        self.count += 1;
    }

    /// The chunk payload: count, first time, the column lengths, the header bytes, the columns.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let body: usize = self.heads.len() + self.columns.iter().map(Vec::len).sum::<usize>();
        let mut raw = Vec::with_capacity(body + 64);
        put_u64(&mut raw, self.count);
        put_u64(&mut raw, self.first_time);
        for c in &self.columns {
            put_u64(&mut raw, c.len() as u64);
        }
        raw.extend_from_slice(&self.heads);
        for c in &self.columns {
            raw.extend_from_slice(c);
        }
        let mut spare = std::mem::take(self);
        spare.heads.clear();
        spare.columns.iter_mut().for_each(Vec::clear);
        spare.alloc_class.clear();
        spare.free_rank.clear();
        *self = EventEncoder {
            heads: spare.heads,
            columns: spare.columns,
            alloc_class: spare.alloc_class,
            free_rank: spare.free_rank,
            chunk: spare.chunk + 1,
            ..Default::default()
        };
        raw
    }
}

fn delta(from: u32, to: u32) -> i64 {
    i64::from(to) - i64::from(from)
}

/// An allocation of the chunk being decoded, as later events refer to it.
#[derive(Clone, Copy)]
struct Allocated {
    address: u64,
    class: u8,
    thread: u32,
    stack: u32,
    size: u64,
}

/// Decodes an event chunk payload of a file in format `version`, appending to `out`. Ids are
/// checked against table sizes (`threads`, `stacks`) so analyses can index tables without
/// bounds failures.
pub(crate) fn decode_events(
    raw: &[u8],
    out: &mut Vec<Event>,
    threads: usize,
    stacks: usize,
    version: u16,
) -> Result<(), String> {
    let mut c = Cursor::new(raw);
    let count = c.u64()?;
    let mut t = c.u64()?;
    let v3 = version >= 3;
    let v4 = version >= 4;
    let mut lens = [0usize; COLUMNS];
    for len in &mut lens[..if v4 { COLUMNS } else { COLUMNS_V3 }] {
        *len = usize::try_from(c.u64()?).map_err(|_| "column length overflow")?;
    }
    let heads = c.bytes(usize::try_from(count).map_err(|_| "event count overflow")?)?;
    let mut cols: [Cursor; COLUMNS] = Default::default();
    for (col, &len) in cols.iter_mut().zip(&lens) {
        *col = Cursor::new(c.bytes(len)?);
    }
    if !c.is_empty() {
        return Err("trailing bytes after the event columns".into());
    }
    let (mut thread, mut prev_address, mut stack, mut free_stack) = (0u32, 0u64, 0u32, 0u32);
    let mut predictor = AddressPredictor::default();
    // This chunk's allocs and the frees an alloc can reuse, by class. Before format 3 there
    // is one class, and every free is in it.
    let mut allocs: Vec<Allocated> = Vec::new();
    let mut frees: Vec<Vec<u64>> = vec![Vec::new(); PREDICTOR_CLASSES];
    // A re-creation's free, (address, size), until its alloc.
    let mut recreating: Option<(u64, u64)> = None;
    fn ago<T: Copy>(list: &[T], n: u64) -> Result<T, String> {
        usize::try_from(n)
            .ok()
            .and_then(|n| list.len().checked_sub(n + 1))
            .map(|i| list[i])
            .ok_or_else(|| format!("event refers to a block {n} back of {}", list.len()))
    }
    let stack_id = |id: u32| -> Result<u32, String> {
        if id as usize >= stacks {
            return Err(format!("event refers to undefined stack {id}"));
        }
        Ok(id)
    };
    let shifted = |from: u32, delta: i64| -> Result<u32, String> {
        i64::from(from)
            .checked_add(delta)
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| "stack id out of range".to_owned())
            .and_then(stack_id)
    };
    out.reserve(heads.len());
    for &head in heads {
        let code = head & 3;
        let op = if code == OP_ALLOC || code == OP_ALLOC_REUSE { Op::Alloc } else { Op::Free };
        let kind =
            AllocatorKind::from_code((head >> KIND_SHIFT) & 7).ok_or("unknown allocator kind")?;
        let recreation = kind == AllocatorKind::Recreated;
        if recreation && !v4 {
            return Err("unknown allocator kind".into());
        }
        // The alloc of a re-creation comes right after its free, at the same time.
        let moved = match recreating.take() {
            Some(block) if recreation && code == OP_ALLOC && head & HAS_TIME == 0 => Some(block),
            Some(_) => return Err("a re-created object's free is not followed by its alloc".into()),
            None if recreation && op == Op::Alloc => {
                return Err("a re-created object's alloc does not follow its free".into())
            }
            None => None,
        };
        if head & HAS_TIME != 0 {
            t = t.checked_add(cols[TIME].u64()?).ok_or("event time overflows")?;
        }
        let recent_free = code == OP_FREE_RECENT && v4;
        if recent_free && head & (HAS_THREAD | HAS_STACK) != 0 {
            return Err("a free of a recent block names a thread or stack".into());
        }
        if head & HAS_THREAD != 0 {
            thread = cols[THREAD].u32()?;
            if thread as usize >= threads {
                return Err(format!("event refers to undefined thread {thread}"));
            }
        }
        let (size, st) = match code {
            OP_ALLOC | OP_ALLOC_REUSE => {
                let size = match moved {
                    Some((_, size)) => size,
                    None => cols[SIZE].u64()?,
                };
                if head & HAS_STACK != 0 {
                    stack = if v3 {
                        shifted(stack, cols[STACK].i64()?)?
                    } else {
                        stack_id(cols[STACK].u32()?)?
                    };
                }
                (size, stack)
            }
            OP_FREE if v4 => {
                let size = cols[FREE_SIZE].u64()?;
                if head & HAS_STACK != 0 {
                    free_stack = shifted(free_stack, cols[FREE_STACK].i64()?)?;
                }
                (size, free_stack)
            }
            _ => (0, 0),
        };
        let (class, block) = if v3 { AddressPredictor::class(kind, size) } else { (0, 0) };
        let mut owner = (thread, st, size);
        let address = match code {
            _ if moved.is_some() => moved.map_or(0, |(address, _)| address),
            OP_FREE_RECENT => {
                let a = ago(&allocs, cols[ADDRESS].u64()?)?;
                frees[a.class as usize].push(a.address);
                if v4 {
                    owner = (a.thread, a.stack, a.size);
                }
                a.address
            }
            OP_ALLOC_REUSE => ago(&frees[class], cols[ADDRESS].u64()?)?,
            OP_ALLOC if v3 => {
                let guess = predictor.predict(class, prev_address);
                prev_address = guess.wrapping_add(cols[ADDRESS].i64()? as u64);
                predictor.update(class, prev_address, block);
                prev_address
            }
            _ => {
                prev_address = prev_address.wrapping_add(cols[ADDRESS].i64()? as u64);
                if op == Op::Free && !v3 {
                    frees[0].push(prev_address);
                }
                prev_address
            }
        };
        if op == Op::Alloc {
            allocs.push(Allocated { address, class: class as u8, thread, stack: st, size });
        }
        let (thread, stack, size) = owner;
        if recreation && op == Op::Free {
            recreating = Some((address, size));
        }
        out.push(Event {
            op,
            kind,
            time_ns: t.saturating_mul(EVENT_TIME_QUANTUM_NS),
            thread: ThreadId(thread),
            address,
            size,
            stack: StackId(stack),
        });
    }
    if cols.iter().any(|c| !c.is_empty()) {
        return Err("column bytes left over after the last event".into());
    }
    if recreating.is_some() {
        return Err("a re-created object's free is not followed by its alloc".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(
        op: Op,
        kind: AllocatorKind,
        t: u64,
        thread: u32,
        address: u64,
        size: u64,
        stack: u32,
    ) -> Event {
        Event {
            op,
            kind,
            time_ns: t * EVENT_TIME_QUANTUM_NS,
            thread: ThreadId(thread),
            address,
            size,
            stack: StackId(stack),
        }
    }

    fn encode(events: &[(Event, AddressRef)]) -> Vec<u8> {
        let mut enc = EventEncoder::default();
        for (e, r) in events {
            enc.push(e, *r);
        }
        enc.finish()
    }

    fn decode(raw: &[u8], version: u16) -> Result<Vec<Event>, String> {
        let mut out = Vec::new();
        decode_events(raw, &mut out, 4, 8, version).map(|()| out)
    }

    const OBJ: AllocatorKind = AllocatorKind::PymallocObject;
    const RE: AllocatorKind = AllocatorKind::Recreated;

    /// A block allocated in this chunk and one from before it, each re-created in by another
    /// thread and stack, then freed: the re-creations' allocs write neither address nor size,
    /// and a later free pointing back at one takes its new owner.
    #[test]
    fn a_recreation_is_a_free_and_an_alloc_without_address_or_size() {
        let events = [
            (ev(Op::Alloc, OBJ, 1, 0, 0x7f00_0000_1000, 48, 1), AddressRef::Explicit),
            (ev(Op::Free, RE, 2, 0, 0x7f00_0000_1000, 48, 1), AddressRef::Allocated(0)),
            (ev(Op::Alloc, RE, 2, 1, 0x7f00_0000_1000, 48, 2), AddressRef::Explicit),
            (ev(Op::Free, RE, 3, 2, 0x7f00_0000_9000, 64, 3), AddressRef::Explicit),
            (ev(Op::Alloc, RE, 3, 1, 0x7f00_0000_9000, 64, 2), AddressRef::Explicit),
            (ev(Op::Free, OBJ, 4, 1, 0x7f00_0000_1000, 48, 2), AddressRef::Allocated(1)),
            (ev(Op::Free, OBJ, 4, 1, 0x7f00_0000_9000, 64, 2), AddressRef::Allocated(2)),
        ];
        let raw = encode(&events);
        let want: Vec<Event> = events.iter().map(|(e, _)| *e).collect();
        assert_eq!(decode(&raw, 4).unwrap(), want);
        // Heads: op | kind << 2 | thread | stack | time. The re-creations' allocs (op 0, kind
        // 7) name their thread and stack, never a time; their frees are op 2 (allocated in
        // this chunk) and op 1 (from before it); the last frees point back at them.
        let mut c = Cursor::new(&raw);
        let (n, _) = (c.u64().unwrap(), c.u64().unwrap());
        let lens: Vec<u64> = (0..COLUMNS).map(|_| c.u64().unwrap()).collect();
        let heads = c.bytes(n as usize).unwrap();
        let k = |kind: AllocatorKind| (kind as u8) << KIND_SHIFT;
        assert_eq!(
            heads,
            [
                OP_ALLOC | k(OBJ) | HAS_STACK,
                OP_FREE_RECENT | k(RE) | HAS_TIME,
                OP_ALLOC | k(RE) | HAS_THREAD | HAS_STACK,
                OP_FREE | k(RE) | HAS_THREAD | HAS_STACK | HAS_TIME,
                OP_ALLOC | k(RE) | HAS_THREAD,
                OP_FREE_RECENT | k(OBJ) | HAS_TIME,
                OP_FREE_RECENT | k(OBJ),
            ]
        );
        // Sizes: the first alloc's alone (48), and the explicit free's (64) in its column.
        assert_eq!((lens[SIZE], lens[FREE_SIZE]), (1, 1));
    }

    #[test]
    fn a_recreation_cut_in_two_is_refused() {
        let alloc = (ev(Op::Alloc, OBJ, 1, 0, 0x1000, 48, 1), AddressRef::Explicit);
        let free_half = (ev(Op::Free, RE, 2, 0, 0x1000, 48, 1), AddressRef::Allocated(0));
        let alloc_half = (ev(Op::Alloc, RE, 2, 1, 0x1000, 48, 2), AddressRef::Explicit);
        let late_half = (ev(Op::Alloc, RE, 3, 1, 0x1000, 48, 2), AddressRef::Explicit);
        let other = (ev(Op::Alloc, OBJ, 2, 0, 0x2000, 48, 1), AddressRef::Explicit);
        for (events, why) in [
            (vec![alloc, free_half], "not followed"),
            (vec![alloc, free_half, other, alloc_half], "not followed"),
            (vec![alloc, alloc_half], "does not follow"),
            (vec![alloc, free_half, late_half], "not followed"),
        ] {
            let err = decode(&encode(&events), 4).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        // Kind 7 is new in format 4: a format-3 chunk of one alloc of kind 7 (count, T0, the
        // five column lengths, the head, an address and a size) is refused.
        let v3 = [1, 0, 0, 0, 1, 1, 0, (RE as u8) << KIND_SHIFT, 0, 0];
        let err = decode(&v3, 3).unwrap_err();
        assert!(err.contains("unknown allocator kind"), "{err}");
        assert!(decode(&[1, 0, 0, 0, 1, 1, 0, (OBJ as u8) << KIND_SHIFT, 0, 0], 3).is_ok());
    }
}
