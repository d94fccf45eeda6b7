//! Encoding of the interned tables: strings, frames, stacks.
//!
//! Tables are appended to in batches: each table chunk says which id its first entry has, and
//! that id must equal the number of entries the reader already holds, so a chunk can be neither
//! skipped nor replayed twice without the reader noticing.

use crate::varint::{put_i64, put_u64, Cursor};
use crate::{Frame, FrameId, StackId, StackNode, StringId};

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
