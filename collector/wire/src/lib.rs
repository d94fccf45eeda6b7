//! The raw record protocol between a traced Python process and the memlens parent.
//!
//! The tracer (`libmemlens_tracer.so`, inside the traced process) appends these
//! records to per-thread ring buffers from inside allocator hooks, a drain thread
//! merges them by time and writes them to a pipe, and the parent's recorder decodes
//! them and replays them into a `memlens_format::RecordingWriter`.
//!
//! Design constraints:
//! - **No dependencies, no allocation when encoding**: [`Record::encode_into`] writes
//!   into a caller-provided slice, so it is usable from inside `malloc`.
//! - **Fixed header, time at a fixed offset**: the drain thread reads the timestamp
//!   of a record without decoding it ([`peek_time`]) to merge rings by time.
//! - **Streaming decode**: [`decode`] says "incomplete" instead of failing when a
//!   record is cut at the end of a read, and never panics on bad bytes.
//! - This is an in-process/IPC protocol between a parent and a child built from the
//!   same source tree; it is not a file format and is not versioned beyond [`Hello`]'s
//!   protocol number.
//!
//! Layout of one record (all integers little-endian):
//!
//! | bytes | field                                                   |
//! |-------|---------------------------------------------------------|
//! | 4     | `len`: number of bytes that follow this field           |
//! | 8     | `time`: CLOCK_MONOTONIC nanoseconds (absolute)          |
//! | 4     | `thread`: tracer-assigned thread index                  |
//! | 1     | `tag` (see [`Record`])                                  |
//! | ...   | payload; strings are a `u32` length then raw bytes      |
//!
//! ```
//! use memlens_wire::{decode, Header, Record, AllocKind};
//! let rec = Record::Alloc { address: 0x1000, size: 64, kind: AllocKind::Malloc };
//! let hdr = Header { time_ns: 5, thread: 1 };
//! let mut buf = [0u8; 64];
//! let n = rec.encode_into(hdr, &mut buf).unwrap();
//! let (h, r, used) = decode(&buf[..n]).unwrap().unwrap();
//! assert_eq!((h, r, used), (hdr, rec, n));
//! ```
#![forbid(unsafe_code)]

mod error;
mod record;

pub use error::WireError;
pub use record::{
    decode, peek_time, set_time, AllocKind, CensusCache, CensusType, Header, Hello, Record,
    HEADER_LEN, MAX_BLOB_LEN, PROTOCOL,
};
