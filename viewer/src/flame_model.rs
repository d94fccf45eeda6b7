//! The flame graph's model, below the components that show it: the tree of one recording
//! in one mode ([`FlameData`]), the worker question and answer it is built from, and the row
//! height every flame chart (and its keyboard) lays rows out by. The flame graph, the
//! differential flame graph and the call-site table use it; it uses none of them.

use memlens_analysis::{FlameOptions, FlameTree, Snapshot, StackTotals};
use memlens_format::{Frame, Totals};

use crate::load::{Directory, Loaded};
use crate::protocol::{Answer, Request};
use crate::url_state::{FlameMode, ZoomStep};
use crate::use_worker::Query;
use crate::ByPtr;

/// Row height in CSS pixels.
pub(crate) const ROW_H: f64 = 20.0;
/// What a flame mode shows (`None`: a range mode without a range yet).
pub(crate) fn snapshot_for(mode: FlameMode, range: Option<(u64, u64)>) -> Option<Snapshot> {
    Some(match (mode, range) {
        (FlameMode::AtPeak, _) => Snapshot::AtPeak,
        (FlameMode::Leaks, _) => Snapshot::AtEnd,
        (FlameMode::Total, _) => Snapshot::TotalAllocated,
        (FlameMode::Range, Some((a, b))) => Snapshot::PeakInRange(a, b),
        (FlameMode::Range, None) => return None,
    })
}

/// The mode that shows `snapshot`.
pub(crate) fn mode_of(snapshot: Snapshot) -> FlameMode {
    match snapshot {
        Snapshot::AtPeak => FlameMode::AtPeak,
        Snapshot::AtEnd => FlameMode::Leaks,
        Snapshot::TotalAllocated => FlameMode::Total,
        _ => FlameMode::Range,
    }
}

/// The worker question for the memory by stack of `loaded` in `mode` (`None`: a range mode
/// without a range). `view` names who asks.
pub(crate) fn totals_query(
    view: &str,
    loaded: &Loaded,
    generation: u32,
    mode: FlameMode,
    range: Option<(u64, u64)>,
    thread: Option<u32>,
) -> Option<Query> {
    let snapshot = snapshot_for(mode, range)?;
    Some(Query {
        view: format!("{view}:{}", loaded.rec),
        request: Request::Totals { rec: loaded.rec, snapshot, thread },
        generation,
    })
}

/// The stack totals in a worker answer.
pub(crate) fn totals_of(answer: &Answer) -> Result<&StackTotals, String> {
    match answer {
        Answer::Totals(t) => Ok(t),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// The flame tree of one recording for one mode.
pub struct FlameData {
    /// The directory that names the tree's frames.
    pub dir: ByPtr<Directory>,
    pub tree: FlameTree,
    /// Memory by stack the tree was built from (the call-site table uses it too).
    pub totals: ByPtr<Answer>,
    /// Whether internal frames are hidden (the call-site table follows the tree).
    pub hide_internal: bool,
}

/// Which frames the flame tree leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hidden {
    /// CPython's internals (the import system, the interpreter's native frames) and
    /// memlens's own frames.
    pub internal: bool,
    /// Native (C, C++, Rust) frames.
    pub native: bool,
}

impl FlameData {
    /// The tree of the worker's `totals` answer.
    pub fn new(
        dir: ByPtr<Directory>,
        totals: ByPtr<Answer>,
        hidden: Hidden,
    ) -> Result<FlameData, String> {
        let options = FlameOptions {
            merge_lines: false,
            hide_internal: hidden.internal,
            hide_native: hidden.native,
        };
        let tree = FlameTree::build(&dir.0.recording, totals_of(&totals.0)?, &options);
        Ok(FlameData { dir, tree, totals, hide_internal: hidden.internal })
    }

    /// Whether a node's frame is a native function's.
    pub fn is_native(&self, node: u32) -> bool {
        let frame = self.tree.nodes.get(node as usize).and_then(|n| n.frame);
        frame.is_some_and(|f| self.dir.0.recording.is_native_frame(f))
    }

    /// Memory by stack the tree was built from.
    pub fn stack_totals(&self) -> &StackTotals {
        totals_of(&self.totals.0).expect("checked when built")
    }

    /// The node that holds the most memory for `frame` (a frame can appear on many paths).
    pub fn largest_node_of(&self, frame: memlens_format::FrameId) -> Option<u32> {
        let nodes = self.tree.nodes.iter().enumerate();
        let mine = nodes.filter(|(_, n)| n.frame == Some(frame));
        mine.max_by_key(|(i, n)| (n.total.bytes, std::cmp::Reverse(*i))).map(|(i, _)| i as u32)
    }

    pub fn frame(&self, node: u32) -> Option<&Frame> {
        let rec = &self.dir.0.recording;
        self.tree.nodes.get(node as usize)?.frame.and_then(|f| rec.frame(f))
    }

    /// Function name, file and line of a node (`("all", "", 0)` for the root).
    pub fn names(&self, node: u32) -> (&str, &str, u32) {
        let rec = &self.dir.0.recording;
        match self.frame(node) {
            Some(f) => (rec.string(f.function), rec.string(f.file), f.line),
            None => ("all", "", 0),
        }
    }

    /// The URL zoom path for a node.
    pub fn zoom_path(&self, node: u32) -> Vec<ZoomStep> {
        self.tree
            .path(node)
            .into_iter()
            .skip(1)
            .map(|n| {
                let (function, file, _) = self.names(n);
                ZoomStep { function: function.to_string(), file: file.to_string() }
            })
            .collect()
    }

    /// The node a URL zoom path leads to (as deep as it still matches).
    pub fn resolve(&self, path: &[ZoomStep]) -> u32 {
        let keys: Vec<(String, String)> =
            path.iter().map(|s| (s.function.clone(), s.file.clone())).collect();
        self.tree.find_path(&self.dir.0.recording, &keys)
    }

    pub fn root_total(&self) -> Totals {
        self.tree.nodes.first().map(|n| n.total).unwrap_or_default()
    }
}
