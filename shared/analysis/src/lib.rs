//! # memlens-analysis
//!
//! What a memlens recording says: memory by stack at the peak, at the end, at any moment or
//! over any span ([`stack_totals`]), the heap over time ([`heap_timeline`]), flame trees and
//! their layout, call sites, comparisons of two recordings, object censuses, findings
//! ([`insights`]) and per-span usage ([`span_usage`]). Shared by the CLI and the viewer.
//!
//! Design constraints:
//! - **No I/O**, like `memlens-format`: everything reads a [`Recording`], which fetches what it
//!   needs through its source, and builds for `wasm32-unknown-unknown`.
//! - **Cost independent of the recording's length**: on recordings with interval aggregates
//!   (format 4), an analysis sums a few pyramid nodes and replays at most the two base
//!   intervals a time range cuts through ([`query`](crate) functions); older or damaged
//!   recordings are answered by a full replay of the events ([`replay`]), which also serves
//!   as the reference the aggregates are checked against.
//!
//! ```
//! use memlens_format::*;
//! use memlens_analysis::*;
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

mod buckets;
mod callsites;
mod census;
mod diff;
mod diff_tree;
mod export;
mod family_flame;
mod family_heap;
mod flame;
mod insights;
mod kinds;
mod process_life;
mod processes;
mod query;
pub mod replay;
mod sampling;
mod snapshot;
mod spans;
mod timeline;
mod totals;
mod tree;
mod units;
mod user_code;

/// The sum of counts or bytes read from a recording, saturating: a damaged or hostile file's
/// can overflow.
pub(crate) fn saturating_sum(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0, u64::saturating_add)
}

// The format's types the analyses use throughout (not re-exported: import them from
// `memlens_format`).
use memlens_format::{
    census_trigger, AddressMap, AllocatorKind, BlockCount, Census, EntryAllocators, Error, Event,
    FrameId, GcEvent, Interval, Op, Recording, StackId, StringId, ThreadId, Totals, TypeCensus,
};

pub use buckets::{downsample, Bucket};
pub use callsites::{call_sites, CallSite};
pub use census::{
    census_title, deepest_stack, find_census, last_census, last_census_index, site_growth,
    top_types, type_growth, type_name, SiteGrowth, TypeGrowth, TypeOrder,
};
pub use diff::{
    comparable_file, diff_sites, fold_comprehensions, incomparable_reasons, without_comprehensions,
    SiteDelta,
};
pub use diff_tree::{
    diff_hit, diff_layout, shade, DiffNode, DiffOptions, DiffRect, DiffTree, Presence, Shade,
};
pub use export::{
    pprof, speedscope, write_collapsed, ExportView, PprofOptions, SpeedscopeFile, SpeedscopeFrame,
    SpeedscopeProfile, SpeedscopeShared, NO_PYTHON_FRAME,
};
pub use family_flame::{family_stack_totals, process_label, short_command, FamilyFlame};
pub use family_heap::{family_end, family_heap, family_peak};
pub use flame::{
    flame_hit, flame_layout, is_internal_file, is_internal_frame, is_memlens_file, stack_path,
    FlameNode, FlameOptions, FlameRect, FlameTree,
};
pub use insights::{insights, Insight, InsightKind, InsightOptions, InsightsBuilder};
pub use kinds::{kind_usage, KindUsage};
pub use process_life::{ended_at, heap_ended_at, how_it_ended, started_at};
pub use processes::{
    all_processes, descendants, execed_label, match_processes, not_recorded, not_recorded_label,
    not_recorded_note, outlived_the_program, process_key, python_without_site, ran_another_program,
    started_without_memlens, stopped_early, tree_peak, Process, EXECED_MARKER, NOT_FOLLOWED_MARKER,
    NOT_RECORDED_MARKER, PYTHON_WITHOUT_SITE_MARKER, STILL_RUNNING_MARKER, UNTRACED_MARKER,
};
pub use sampling::{notice_for, sampling_mismatch, sampling_notice};
pub use snapshot::SnapshotBuilder;
pub use spans::{span_usage, spans, OpenSpan, Span, SpanUsage};
pub use timeline::{heap_timeline, rss_timeline};
pub use totals::{EventFilter, Snapshot, StackTotals, ThreadStackTotals};
pub use units::{
    format_bytes, format_bytes_delta, format_count, format_count_delta, format_duration_ns,
};
pub use user_code::{
    frame_label, is_library_file, site_label, user_site, user_sites, UserSite, UserSiteTotals,
};

/// Memory by stack for a snapshot: from the aggregates when the recording has them, else by
/// replaying its events.
pub fn stack_totals(
    rec: &Recording,
    snapshot: Snapshot,
    filter: &EventFilter,
) -> Result<StackTotals, Error> {
    match rec.aggregates_missing() {
        None => query::stack_totals(rec, snapshot, filter),
        Some(_) => replay::stack_totals(rec, snapshot, filter),
    }
}

/// Memory by (allocating thread, stack, allocator) for a snapshot, every thread: from the
/// aggregates when the recording has them, else by replaying its events.
pub fn thread_stack_totals(
    rec: &Recording,
    snapshot: Snapshot,
) -> Result<ThreadStackTotals, Error> {
    match rec.aggregates_missing() {
        None => Ok(ThreadStackTotals::from_map(query::thread_stack_map(rec, snapshot, true)?)),
        Some(_) => replay::thread_stack_totals(rec, snapshot),
    }
}

/// The heap's high-water mark within `[t0, t1]`: (bytes, time). A span where memory only
/// falls peaks at its start; one without events gives the heap as it was, at time 0.
pub fn peak_in(rec: &Recording, t0: u64, t1: u64) -> Result<(u64, u64), Error> {
    match rec.aggregates_missing() {
        None => query::peak_in(rec, t0, t1),
        Some(_) => replay::peak_in(rec, t0, t1),
    }
}

/// Bytes and counts allocated by each thread over the whole recording, indexed by thread id.
pub fn thread_totals(rec: &Recording) -> Result<Vec<Totals>, Error> {
    match rec.aggregates_missing() {
        None => query::thread_totals(rec),
        Some(_) => replay::thread_totals(rec),
    }
}
