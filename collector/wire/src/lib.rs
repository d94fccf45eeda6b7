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
//! - **Small records**: every traced allocation crosses a ring, the drain's copy, a pipe
//!   and a decoder, so the usual allocation (below 8 KiB, at an address below 2^48) is 9
//!   bytes and a free 8; others take 17 and 9. Records carry no time or thread of their
//!   own:
//!   - in a thread's ring, a [`Record::Seq`] starts each *stretch* of that thread's
//!     records; its `seq` comes from one process-wide logical clock that a thread
//!     advances whenever another thread (or the drain) used it last, so sorting
//!     stretches by `seq` puts a free after the allocation it frees, even across
//!     threads. Its `ticks` are the stretch's start time;
//!   - on the pipe, a [`Record::Stretch`] gives the time and thread of the records
//!     after it ([`Decoder`]).
//! - **Sizes from the tag**: the drain splits rings into stretches without decoding
//!   ([`record_len`], [`peek_seq`]).
//! - **Streaming decode**: [`decode`] says "incomplete" instead of failing when a
//!   record is cut at the end of a read, and never panics on bad bytes.
//! - This is an in-process/IPC protocol between a parent and a child built from the
//!   same source tree; it is not a file format and is not versioned beyond [`Hello`]'s
//!   protocol number.
//!
//! Layout of one record (all integers little-endian): a tag byte, then for variable-size
//! records (tags 32 and up: names, strings, census lists) a `u32` payload length, then
//! the payload; strings are a `u32` length then raw bytes. A full-size allocation's or
//! free's tag holds its [`AllocKind`]; the packed ones hold it in their payload.
//!
//! ```
//! use memlens_wire::{AllocKind, Decoder, Header, Record};
//! let mut buf = [0u8; 64];
//! let mut n = Record::Stretch(Header { time_ns: 5, thread: 1 }).encode_into(&mut buf).unwrap();
//! let rec = Record::Alloc { address: 0x1000, size: 64, kind: AllocKind::Malloc };
//! n += rec.encode_into(&mut buf[n..]).unwrap();
//! let (h, r, used) = Decoder::default().next(&buf[..n]).unwrap().unwrap();
//! assert_eq!((h, r, used), (Header { time_ns: 5, thread: 1 }, rec, n));
//! ```
#![forbid(unsafe_code)]

mod codec;
mod end_report;
mod error;
pub mod handshake;
mod layout;
mod record;

pub use codec::{decode, decode_hot, peek_seq, record_len, Decoder, Hot};
pub use end_report::{
    decode_exec, encode_exec, EndReport, END_REPORT_LEN, EXEC_REPORT_MAX, EXEC_TAG,
};
pub use error::WireError;
pub use record::{
    AllocKind, CensusCache, CensusType, Header, Hello, Record, MAX_BLOB_LEN, PROTOCOL,
};
