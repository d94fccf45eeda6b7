//! # memlens-format
//!
//! The memlens recording format and the analyses over it, shared by the collector (which
//! writes recordings) and the WebAssembly viewer (which reads them).
//!
//! Design constraints:
//! - **No I/O**: recordings are written to any [`std::io::Write`] and read from bytes, so the
//!   crate builds for `wasm32-unknown-unknown` and never touches files, clocks or the OS.
//! - **Seekable and crash-safe**: a file is a header and a stream of tagged, length-prefixed,
//!   checksummed, independently compressed chunks. A file cut anywhere reads up to its last
//!   whole chunk; unknown tags are skipped; a trailer indexes the chunks. See `FORMAT.md`.
//! - **Decoding never panics** on bad bytes and never allocates more than a bounded multiple of
//!   its input (fuzzed in `fuzz/`).
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
//! let at_peak = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
//! assert_eq!(at_peak.stacks, vec![(s, Totals { bytes: 1 << 20, count: 1 })]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr_hash;
mod analysis;
mod callsites;
mod census;
mod chunk;
mod diff;
mod diff_tree;
mod error;
mod flame;
mod ids;
mod insights;
mod live;
mod recording;
mod records;
mod snapshot;
mod spans;
mod tables;
mod units;
mod user_code;
mod varint;
mod writer;

pub use analysis::{
    downsample, heap_timeline, peak_in, rss_timeline, stack_totals, thread_totals, Bucket,
    EventFilter, Snapshot, StackTotals, Totals,
};
pub use callsites::{call_sites, CallSite};
pub use census::{
    census_title, deepest_stack, find_census, last_census, last_census_index, site_growth,
    top_types, type_growth, type_name, SiteGrowth, TypeGrowth, TypeOrder,
};
pub use chunk::{
    Codec, Tag, CHUNK_HEADER_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_CHUNK_RAW_LEN,
};
pub use diff::{comparable_file, diff_sites, incomparable_reasons, SiteDelta};
pub use diff_tree::{
    diff_hit, diff_layout, shade, DiffNode, DiffOptions, DiffRect, DiffTree, Presence, Shade,
};
pub use error::Error;
pub use flame::{
    flame_hit, flame_layout, is_internal_file, is_memlens_file, stack_path, FlameNode,
    FlameOptions, FlameRect, FlameTree,
};
pub use ids::{AllocatorKind, FrameId, StackId, StringId, ThreadId};
pub use insights::{insights, Insight, InsightKind, InsightOptions, InsightsBuilder};
pub use recording::{Recording, Truncation};
pub use records::{
    census_trigger, CacheCensus, CaptureOptions, Census, DictUsage, Event, Frame, GcEvent,
    IndexEntry, Marker, MemorySample, Meta, Op, ProcessEnd, StackNode, Summary, ThreadInfo,
    Trailer, TypeCensus, TypeSite,
};
pub use snapshot::SnapshotBuilder;
pub use spans::{span_usage, SpanUsage};
pub use tables::EVENT_TIME_QUANTUM_NS;
pub use units::{
    format_bytes, format_bytes_delta, format_count, format_count_delta, format_duration_ns,
};
pub use user_code::{
    frame_label, is_library_file, site_label, user_site, user_sites, UserSite, UserSiteTotals,
};
pub use writer::{RecordingWriter, WriterOptions};
