//! Encoding of the interned tables (strings, frames, stacks) and of event chunks.
//!
//! Tables are appended to in batches: each table chunk says which id its first entry has, and
//! that id must equal the number of entries the reader already holds, so a chunk can be neither
//! skipped nor replayed twice without the reader noticing.

use crate::varint::{put_i64, put_u64, Cursor};
use crate::{AllocatorKind, Event, FrameId, Op, StackId, StringId, ThreadId};
use crate::{Frame, StackNode};

/// Event times are stored at this resolution. Nanosecond clocks give noise in the low bits that
/// costs about a byte per event after compression; a microsecond is finer than any timeline.
pub const EVENT_TIME_QUANTUM_NS: u64 = 1_000;

pub(crate) fn encode_strings(first: u32, items: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u64(&mut out, first.into());
    put_u64(&mut out, items.len() as u64);
    for s in items {
        put_u64(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// Frames, format 2: each field as the difference from the previous frame's (the first
/// from zero), so a run of lines of one function costs a few equal bytes.
pub(crate) fn encode_frames(first: u32, items: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u64(&mut out, first.into());
    put_u64(&mut out, items.len() as u64);
    let mut prev = [0i64; 3];
    for f in items {
        let cur = [f.function.0.into(), f.file.0.into(), f.line.into()];
        for (p, c) in prev.iter_mut().zip(cur) {
            put_i64(&mut out, c - *p);
            *p = c;
        }
    }
    out
}

/// Stack nodes, format 2: the parent as how many ids back it is (1: the node made just
/// before, as along a new call chain), the frame as the difference from the previous node's.
pub(crate) fn encode_stacks(first: u32, items: &[StackNode]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u64(&mut out, first.into());
    put_u64(&mut out, items.len() as u64);
    let mut prev_frame = 0i64;
    for (id, s) in (first..).zip(items) {
        put_u64(&mut out, (id - s.parent.0).into());
        put_i64(&mut out, i64::from(s.frame.0) - prev_frame);
        prev_frame = s.frame.0.into();
    }
    out
}

/// A table id read as a difference from `base`, checked to be a valid `u32`.
fn id_from(base: i64, delta: i64) -> Result<u32, String> {
    base.checked_add(delta)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| "table entry id out of range".to_owned())
}

/// Reads a table chunk's first id and count, checking the id continues the table.
fn table_head(c: &mut Cursor, have: usize) -> Result<usize, String> {
    let first = c.u64()?;
    if first != have as u64 {
        return Err(format!("table batch starts at id {first}, expected {have}"));
    }
    let count = c.u64()?;
    // Every entry takes at least one byte, so a count past the remaining bytes is corrupt;
    // checking it first keeps a bad count from reserving huge vectors.
    if count > c.remaining() as u64 {
        return Err(format!("table batch claims {count} entries"));
    }
    Ok(count as usize)
}

pub(crate) fn decode_strings(raw: &[u8], table: &mut Vec<String>) -> Result<(), String> {
    let mut c = Cursor::new(raw);
    let n = table_head(&mut c, table.len())?;
    table.reserve(n);
    for _ in 0..n {
        let len = c.u64()?;
        let bytes = c.bytes(usize::try_from(len).map_err(|_| "string length overflow")?)?;
        table.push(String::from_utf8_lossy(bytes).into_owned());
    }
    Ok(())
}

/// Reads a frame table chunk of a file in format `version` (1: plain varints; 2: deltas).
pub(crate) fn decode_frames(
    raw: &[u8],
    table: &mut Vec<Frame>,
    strings: usize,
    version: u16,
) -> Result<(), String> {
    let mut c = Cursor::new(raw);
    let n = table_head(&mut c, table.len())?;
    table.reserve(n);
    let mut prev = [0i64; 3];
    for _ in 0..n {
        let [function, file, line] = if version >= 2 {
            for p in &mut prev {
                *p = id_from(*p, c.i64()?)?.into();
            }
            prev.map(|v| v as u32)
        } else {
            [c.u32()?, c.u32()?, c.u32()?]
        };
        let (function, file) = (StringId(function), StringId(file));
        if function.index() >= strings || file.index() >= strings {
            return Err("frame refers to an undefined string".into());
        }
        table.push(Frame { function, file, line });
    }
    Ok(())
}

/// Reads a stack table chunk of a file in format `version` (1: plain varints; 2: deltas).
pub(crate) fn decode_stacks(
    raw: &[u8],
    table: &mut Vec<StackNode>,
    frames: usize,
    version: u16,
) -> Result<(), String> {
    // Stack ids start at 1: id 0 is the implicit root, so `table[i]` holds `StackId(i + 1)`.
    let mut c = Cursor::new(raw);
    let n = table_head(&mut c, table.len() + 1)?;
    table.reserve(n);
    let mut prev_frame = 0i64;
    for _ in 0..n {
        let (parent, frame) = if version >= 2 {
            let id = table.len() as i64 + 1;
            let back = i64::try_from(c.u64()?).map_err(|_| "stack parent out of range")?;
            let frame = id_from(prev_frame, c.i64()?)?;
            prev_frame = frame.into();
            (StackId(id_from(id, -back)?), FrameId(frame))
        } else {
            (StackId(c.u32()?), FrameId(c.u32()?))
        };
        // Parents come before children, which also rules out cycles.
        if parent.index() > table.len() || frame.index() >= frames {
            return Err("stack node refers to an undefined parent or frame".into());
        }
        table.push(StackNode { parent, frame });
    }
    Ok(())
}

// Event header byte: bits 0-1 op, bits 2-4 allocator kind, bit 5 thread follows,
// bit 6 stack follows (allocs only, as a delta from the previous alloc's stack in this chunk
// since format 3; otherwise the same stack),
// bit 7 time advanced (otherwise the previous event's time).
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

/// The column streams of an event chunk, in payload order after the header bytes.
const COLUMNS: usize = 5;
const TIME: usize = 0;
const THREAD: usize = 1;
const ADDRESS: usize = 2;
const SIZE: usize = 3;
const STACK: usize = 4;

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
const PREDICTOR_CLASSES: usize = PYMALLOC_CLASSES + 4;
/// The class of a block freed with an explicit address: its size is not in the chunk.
const UNKNOWN_CLASS: u8 = u8::MAX;

impl Default for AddressPredictor {
    fn default() -> Self {
        AddressPredictor { next: [0; PREDICTOR_CLASSES], seen: 0 }
    }
}

impl AddressPredictor {
    /// The class of an alloc and the bytes its block takes in its allocator.
    fn class(kind: AllocatorKind, size: u64) -> (usize, u64) {
        let pymalloc = matches!(kind, AllocatorKind::PymallocObject | AllocatorKind::PyMem);
        if pymalloc && size <= 16 * PYMALLOC_CLASSES as u64 {
            let class = size.saturating_sub(1) / 16;
            return (class as usize, (class + 1) * 16);
        }
        // glibc malloc: an 8-byte header, 16-byte alignment, 32 bytes at least.
        let block = (size.saturating_add(8 + 15) & !15).max(32);
        match kind {
            AllocatorKind::Mmap => (PYMALLOC_CLASSES + 1, block),
            AllocatorKind::PymallocArena => (PYMALLOC_CLASSES + 2, block),
            // Blocks objects were re-created in: at no particular distance from each other.
            AllocatorKind::Recreated => (PYMALLOC_CLASSES + 3, block),
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

/// Delta-encodes events into a chunk payload, column by column: like values sit together, so
/// the chunk compressor finds far more repeats than in row order. Times must not decrease (the
/// writer clamps).
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

    pub(crate) fn push(&mut self, e: &Event, address: AddressRef) {
        let t = e.time_ns / EVENT_TIME_QUANTUM_NS;
        if self.count == 0 {
            self.first_time = t;
            self.last_time = t;
        }
        let (op, recent) = match (e.op, address) {
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
        if e.thread.0 != self.prev_thread {
            head |= HAS_THREAD;
            put_u64(&mut self.columns[THREAD], e.thread.0.into());
            self.prev_thread = e.thread.0;
        }
        match recent {
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
        if e.op == Op::Alloc {
            put_u64(&mut self.columns[SIZE], e.size);
            if e.stack.0 != self.prev_stack {
                head |= HAS_STACK;
                put_i64(
                    &mut self.columns[STACK],
                    i64::from(e.stack.0) - i64::from(self.prev_stack),
                );
                self.prev_stack = e.stack.0;
            }
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

/// Decodes an event chunk payload, appending to `out`. Ids are checked against table sizes
/// (`threads`, `stacks`) so analyses can index tables without bounds failures.
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
    let mut lens = [0usize; COLUMNS];
    for len in &mut lens {
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
    let (mut thread, mut prev_address, mut stack) = (0u32, 0u64, 0u32);
    let v3 = version >= 3;
    let mut predictor = AddressPredictor::default();
    // This chunk's allocs (address, class) and the frees an alloc can reuse, by class. Before
    // format 3 there is one class, and every free is in it.
    let mut allocs: Vec<(u64, u8)> = Vec::new();
    let mut frees: Vec<Vec<u64>> = vec![Vec::new(); PREDICTOR_CLASSES];
    fn ago<T: Copy>(list: &[T], n: u64) -> Result<T, String> {
        usize::try_from(n)
            .ok()
            .and_then(|n| list.len().checked_sub(n + 1))
            .map(|i| list[i])
            .ok_or_else(|| format!("event refers to a block {n} back of {}", list.len()))
    }
    out.reserve(heads.len());
    for &head in heads {
        let code = head & 3;
        let op = if code == OP_ALLOC || code == OP_ALLOC_REUSE { Op::Alloc } else { Op::Free };
        let kind =
            AllocatorKind::from_code((head >> KIND_SHIFT) & 7).ok_or("unknown allocator kind")?;
        if head & HAS_TIME != 0 {
            t = t.checked_add(cols[TIME].u64()?).ok_or("event time overflows")?;
        }
        if head & HAS_THREAD != 0 {
            thread = cols[THREAD].u32()?;
            if thread as usize >= threads {
                return Err(format!("event refers to undefined thread {thread}"));
            }
        }
        let (size, st) = if op == Op::Alloc {
            let size = cols[SIZE].u64()?;
            if head & HAS_STACK != 0 {
                stack = if v3 {
                    let delta = cols[STACK].i64()?;
                    i64::from(stack)
                        .checked_add(delta)
                        .and_then(|s| u32::try_from(s).ok())
                        .ok_or("stack id out of range")?
                } else {
                    cols[STACK].u32()?
                };
                if stack as usize >= stacks {
                    return Err(format!("event refers to undefined stack {stack}"));
                }
            }
            (size, stack)
        } else {
            (0, 0)
        };
        let (class, block) = if v3 { AddressPredictor::class(kind, size) } else { (0, 0) };
        let address = match code {
            OP_FREE_RECENT => {
                let (address, class) = ago(&allocs, cols[ADDRESS].u64()?)?;
                frees[class as usize].push(address);
                address
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
            allocs.push((address, class as u8));
        }
        out.push(Event {
            op,
            kind,
            time_ns: t.saturating_mul(EVENT_TIME_QUANTUM_NS),
            thread: ThreadId(thread),
            address,
            size,
            stack: StackId(st),
        });
    }
    if cols.iter().any(|c| !c.is_empty()) {
        return Err("column bytes left over after the last event".into());
    }
    Ok(())
}
