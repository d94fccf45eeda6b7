//! # memlens-format
//!
//! The memlens recording format, shared by the collector (which writes recordings), the CLI
//! and the WebAssembly viewer (which read them); the analyses over it live in
//! `memlens-analysis`.
//!
//! Design constraints:
//! - **No I/O**: recordings are written to any [`std::io::Write`] and read through a
//!   [`ByteSource`] (a buffer, a file, a browser `Blob` or URL), so the crate builds for
//!   `wasm32-unknown-unknown` and never touches files, clocks or the OS.
//! - **Seekable and crash-safe**: a file is a header and a stream of tagged, length-prefixed,
//!   checksummed, independently compressed chunks. A file cut anywhere reads up to its last
//!   whole chunk; unknown tags are skipped; a trailer indexes the chunks. See `FORMAT.md`.
//! - **Opens in constant time**: besides the events, the writer keeps interval aggregates
//!   ([`Interval`]) from which the standard views are sums of a few nodes; a reader fetches
//!   only the chunks a view needs.
//! - **Decoding never panics** on bad bytes and never allocates more than a bounded multiple of
//!   its input (fuzzed in `shared/fuzz`).
//!
//! ```
//! use memlens_format::*;
//! let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
//! w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 42, name: "MainThread".into() });
//! let f = w.intern_frame("load", "app.py", 10);
//! let s = w.intern_stack(StackId::ROOT, f);
//! w.alloc(1_000, ThreadId(0), s, 0x10, 1 << 20, AllocatorKind::Malloc).unwrap();
//! w.free(2_000, ThreadId(0), 0x10, AllocatorKind::Malloc).unwrap();
//! let bytes = w.finish(ProcessEnd { time_ns: 3_000, exit_code: Some(0), signal: None }).unwrap();
//!
//! let rec = Recording::open(&bytes).unwrap();
//! assert_eq!(rec.summary().peak_heap, 1 << 20);
//! // One base interval (the one event chunk), holding the allocation and its free.
//! let interval = rec.node(0, 0).unwrap();
//! assert_eq!((interval.heap_max, interval.heap_end), (1 << 20, 0));
//! assert_eq!(interval.entries[0].alloc, Totals { bytes: 1 << 20, count: 1 });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr_hash;
mod aggregate;
mod chunk;
mod error;
mod events;
mod ids;
mod intervals;
mod live;
mod native;
mod processes;
mod recording;
mod records;
mod sampling;
mod source;
mod tables;
mod varint;
mod verify;
mod writer;

pub use addr_hash::AddressMap;
pub use aggregate::{Aggregator, EntryAllocators, PyramidBuilder};
pub use chunk::{
    Codec, Tag, CHUNK_HEADER_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_CHUNK_RAW_LEN,
    MAX_EXPANSION, MAX_EXPANSION_SLACK,
};
pub use error::Error;
pub use events::EVENT_TIME_QUANTUM_NS;
pub use ids::{AllocatorKind, FrameId, StackId, StringId, ThreadId};
pub use intervals::{
    encode_intervals, EntryDelta, Interval, IntervalEntry, KindFigures, CHURN_MAX_LIFETIME_NS,
    CHURN_MIN_SIZE, FANOUT,
};
pub use native::{NativeChunk, NativeModule};
pub use processes::Piece;
pub use recording::{ChunkRef, Recording, Truncation};
pub use records::{
    census_trigger, CacheCensus, CaptureOptions, Census, CensusTrigger, DictUsage, Event, Frame,
    GcEvent, IndexEntry, Marker, MemorySample, Meta, Op, ProcessEnd, SpanEdge, SpanSide, StackNode,
    Summary, ThreadInfo, Totals, Trailer, TypeCensus, TypeSite, META_NATIVE_STACKS, META_PPID,
    META_PROCESS, META_SAMPLE_BYTES,
};
pub use sampling::{sample_weight, sampled_blocks, BlockCount};
pub use source::ByteSource;
pub use verify::{ChunkVerification, DamagedChunk};
pub use writer::{RecordingWriter, WriterOptions};
