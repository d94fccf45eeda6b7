//! Exports to the formats other profilers read: pprof's `profile.proto` ([`pprof`]),
//! speedscope's JSON file format ([`speedscope`]) and collapsed stacks for flamegraph.pl and
//! inferno ([`write_collapsed`]). Each takes totals already computed (from the aggregates, or
//! by replay for older recordings) and encodes them; none reads events or does I/O.
//!
//! Every format shows Python frames (function, file, line), root first, without memlens's
//! own frames (as `summary` and the viewer leave them out); a stack with no Python frame left
//! (a thread created from C, allocations before the first Python call) is shown as one frame
//! named [`NO_PYTHON_FRAME`].

mod collapsed;
mod pprof;
mod speedscope;

pub use collapsed::write_collapsed;
pub use pprof::{pprof, PprofOptions};
pub use speedscope::{
    speedscope, SpeedscopeFile, SpeedscopeFrame, SpeedscopeProfile, SpeedscopeShared,
};

use crate::{is_memlens_file, FrameId, Recording, Snapshot, StackId};

/// The name of the frame that stands for a stack without Python frames.
pub const NO_PYTHON_FRAME: &str = "<no Python frame>";

/// Which memory an export shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportView {
    /// Live at the traced heap's high-water mark.
    Peak,
    /// Still live when the recording ended.
    Leaks,
    /// Everything allocated over the run.
    Total,
    /// Between two times (ns): live at the span's highest point, and allocated within it.
    Range {
        /// Start of the span (ns since the recording started).
        from: u64,
        /// End of the span (ns, inclusive).
        to: u64,
    },
}

impl ExportView {
    /// The live memory ("in use", as pprof calls it) the view is about: at the peak, at the
    /// end (for [`ExportView::Total`] too: what a heap profile taken at exit holds), or at
    /// the range's highest point.
    pub fn in_use(self) -> Snapshot {
        match self {
            ExportView::Peak => Snapshot::AtPeak,
            ExportView::Leaks | ExportView::Total => Snapshot::AtEnd,
            ExportView::Range { from, to } => Snapshot::PeakInRange(from, to),
        }
    }

    /// What was allocated: over the run, or within the range.
    pub fn allocated(self) -> Snapshot {
        match self {
            ExportView::Range { from, to } => Snapshot::AllocatedInRange(from, to),
            _ => Snapshot::TotalAllocated,
        }
    }

    /// What a format with one weight per stack (speedscope's, collapsed stacks) shows: the
    /// live memory, or for [`ExportView::Total`] everything allocated.
    pub fn weight(self) -> Snapshot {
        match self {
            ExportView::Total => self.allocated(),
            _ => self.in_use(),
        }
    }

    /// Whether pprof's default sample type is `inuse_space` (else `alloc_space`).
    fn shows_in_use(self) -> bool {
        self != ExportView::Total
    }

    /// A title: "live at the peak", "allocated over the run", ...
    pub fn title(self) -> String {
        match self {
            ExportView::Peak => "live at the peak".into(),
            ExportView::Leaks => "live at exit (leaks)".into(),
            ExportView::Total => "allocated over the run".into(),
            ExportView::Range { from, to } => format!(
                "live at the highest point between {} and {}",
                crate::format_duration_ns(from),
                crate::format_duration_ns(to)
            ),
        }
    }
}

/// The frames an export shows for `stack`, root first: its frames without memlens's own and
/// without the interpreter's native ones (CPython's call machinery and C API between a
/// Python line and the C code it called, under `--native-stacks`). Empty when none is left
/// (the caller shows [`NO_PYTHON_FRAME`]).
pub(crate) fn export_frames(rec: &Recording, stack: StackId) -> Vec<FrameId> {
    let mut frames: Vec<FrameId> = rec
        .stack_frames(stack)
        .filter(|&f| !rec.is_runtime_frame(f))
        .filter(|&f| rec.frame(f).is_some_and(|f| !is_memlens_file(rec.string(f.file))))
        .collect();
    frames.reverse();
    frames
}

/// (function, file, line) of a frame.
pub(crate) fn frame_parts(rec: &Recording, frame: FrameId) -> (&str, &str, u32) {
    match rec.frame(frame) {
        Some(f) => (rec.string(f.function), rec.string(f.file), f.line),
        None => (NO_PYTHON_FRAME, "", 0),
    }
}
