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

pub(crate) fn encode_frames(first: u32, items: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u64(&mut out, first.into());
    put_u64(&mut out, items.len() as u64);
    for f in items {
        put_u64(&mut out, f.function.0.into());
        put_u64(&mut out, f.file.0.into());
        put_u64(&mut out, f.line.into());
    }
    out
}

pub(crate) fn encode_stacks(first: u32, items: &[StackNode]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u64(&mut out, first.into());
    put_u64(&mut out, items.len() as u64);
    for s in items {
        put_u64(&mut out, s.parent.0.into());
        put_u64(&mut out, s.frame.0.into());
    }
    out
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

pub(crate) fn decode_frames(
    raw: &[u8],
    table: &mut Vec<Frame>,
    strings: usize,
) -> Result<(), String> {
    let mut c = Cursor::new(raw);
    let n = table_head(&mut c, table.len())?;
    table.reserve(n);
    for _ in 0..n {
        let function = StringId(c.u32()?);
        let file = StringId(c.u32()?);
        if function.index() >= strings || file.index() >= strings {
            return Err("frame refers to an undefined string".into());
        }
        table.push(Frame { function, file, line: c.u32()? });
    }
    Ok(())
}

pub(crate) fn decode_stacks(
    raw: &[u8],
    table: &mut Vec<StackNode>,
    frames: usize,
) -> Result<(), String> {
    // Stack ids start at 1: id 0 is the implicit root, so `table[i]` holds `StackId(i + 1)`.
    let mut c = Cursor::new(raw);
    let n = table_head(&mut c, table.len() + 1)?;
    table.reserve(n);
    for _ in 0..n {
        let parent = StackId(c.u32()?);
        let frame = FrameId(c.u32()?);
        // Parents come before children, which also rules out cycles.
        if parent.index() > table.len() || frame.index() >= frames {
            return Err("stack node refers to an undefined parent or frame".into());
        }
        table.push(StackNode { parent, frame });
    }
    Ok(())
}

// Event header byte: bits 0-1 op, bits 2-4 allocator kind, bit 5 thread follows,
// bit 6 stack follows (allocs only; otherwise the previous alloc's stack in this chunk).
const OP_ALLOC: u8 = 0;
const OP_FREE: u8 = 1;
const KIND_SHIFT: u8 = 2;
const HAS_THREAD: u8 = 1 << 5;
const HAS_STACK: u8 = 1 << 6;

/// Delta-encodes events into a chunk payload. Times must not decrease (the writer clamps).
#[derive(Default)]
pub(crate) struct EventEncoder {
    pub(crate) out: Vec<u8>,
    pub(crate) count: u64,
    pub(crate) first_time: u64,
    pub(crate) last_time: u64,
    prev_thread: u32,
    prev_address: u64,
    prev_stack: u32,
}

impl EventEncoder {
    pub(crate) fn push(&mut self, e: &Event) {
        let t = e.time_ns / EVENT_TIME_QUANTUM_NS;
        if self.count == 0 {
            self.first_time = t;
            self.last_time = t;
        }
        let mut head = match e.op {
            Op::Alloc => OP_ALLOC,
            Op::Free => OP_FREE,
        } | ((e.kind as u8) << KIND_SHIFT);
        if e.thread.0 != self.prev_thread {
            head |= HAS_THREAD;
        }
        if e.op == Op::Alloc && e.stack.0 != self.prev_stack {
            head |= HAS_STACK;
        }
        self.out.push(head);
        put_u64(&mut self.out, t.saturating_sub(self.last_time));
        if head & HAS_THREAD != 0 {
            put_u64(&mut self.out, e.thread.0.into());
        }
        put_i64(&mut self.out, e.address.wrapping_sub(self.prev_address) as i64);
        if e.op == Op::Alloc {
            put_u64(&mut self.out, e.size);
            if head & HAS_STACK != 0 {
                put_u64(&mut self.out, e.stack.0.into());
            }
            self.prev_stack = e.stack.0;
        }
        self.prev_thread = e.thread.0;
        self.prev_address = e.address;
        self.last_time = self.last_time.max(t);
        self.count += 1;
    }

    /// The chunk payload: count, first time, then the events.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.out.len() + 20);
        put_u64(&mut raw, self.count);
        put_u64(&mut raw, self.first_time);
        raw.extend_from_slice(&self.out);
        *self = EventEncoder { out: std::mem::take(&mut self.out), ..Default::default() };
        self.out.clear();
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
) -> Result<(), String> {
    let mut c = Cursor::new(raw);
    let count = c.u64()?;
    // Each event takes at least 3 bytes.
    if count > (c.remaining() / 3 + 1) as u64 {
        return Err(format!("event chunk claims {count} events"));
    }
    let mut t = c.u64()?;
    let (mut thread, mut address, mut stack) = (0u32, 0u64, 0u32);
    out.reserve(count as usize);
    for _ in 0..count {
        let head = c.u8()?;
        let op = match head & 3 {
            OP_ALLOC => Op::Alloc,
            OP_FREE => Op::Free,
            other => return Err(format!("unknown event op {other}")),
        };
        let kind =
            AllocatorKind::from_code((head >> KIND_SHIFT) & 7).ok_or("unknown allocator kind")?;
        t = t.checked_add(c.u64()?).ok_or("event time overflows")?;
        if head & HAS_THREAD != 0 {
            thread = c.u32()?;
            if thread as usize >= threads {
                return Err(format!("event refers to undefined thread {thread}"));
            }
        }
        address = address.wrapping_add(c.i64()? as u64);
        let (size, st) = if op == Op::Alloc {
            let size = c.u64()?;
            if head & HAS_STACK != 0 {
                stack = c.u32()?;
                if stack as usize >= stacks {
                    return Err(format!("event refers to undefined stack {stack}"));
                }
            }
            (size, stack)
        } else {
            (0, 0)
        };
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
    if !c.is_empty() {
        return Err("trailing bytes after the last event".into());
    }
    Ok(())
}
