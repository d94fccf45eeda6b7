//! The flame tree: a call tree with total and self memory per node, built from [`StackTotals`],
//! plus its layout into rectangles and hit testing, so the viewer only draws.

use rustc_hash::FxHashMap;

use crate::tree::{row_hit, RowRect, TreeNode};
use crate::{FrameId, Recording, StackId, StackTotals, Totals};

/// Options for [`FlameTree::build`].
#[derive(Debug, Clone, Default)]
pub struct FlameOptions {
    /// Merge frames of the same function at different lines into one node.
    pub merge_lines: bool,
    /// Drop frames of Python's import machinery (`<frozen importlib._bootstrap>` and friends),
    /// of the interpreter's own C code (native stacks) and of memlens itself
    /// ([`is_internal_frame`]); their memory goes to the nearest kept caller.
    pub hide_internal: bool,
    /// Drop native frames (C, C++, Rust functions of `memlens run --native-stacks`): their
    /// memory goes to the Python line that called into native code.
    pub hide_native: bool,
}

/// One node of a [`FlameTree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlameNode {
    /// The frame (for merged lines, the first frame seen). `None` for the root.
    pub frame: Option<FrameId>,
    /// Parent node index (the root is its own parent).
    pub parent: u32,
    /// Depth below the root (root = 0).
    pub depth: u32,
    /// Children, largest total first.
    pub children: Vec<u32>,
    /// Memory of this node and everything it called.
    pub total: Totals,
    /// Memory allocated directly in this node.
    pub self_: Totals,
}

/// A call tree of memory. Node 0 is the root ("all").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlameTree {
    /// Nodes; children always come after their parent.
    pub nodes: Vec<FlameNode>,
}

/// Whether `frame` is one that views hide unless asked to show internals: the import
/// system's, memlens's own ([`is_internal_file`]), or a native function of the interpreter or
/// the C library (CPython's internals between a Python line and the C code it called, under
/// `--native-stacks`).
pub fn is_internal_frame(rec: &Recording, frame: FrameId) -> bool {
    rec.is_runtime_frame(frame)
        || rec.frame(frame).is_some_and(|f| is_internal_file(rec.string(f.file)))
}

/// Whether a frame belongs to the interpreter's import system or to memlens itself
/// ([`is_memlens_file`]).
pub fn is_internal_file(file: &str) -> bool {
    file.starts_with("<frozen importlib")
        || file.starts_with("<frozen zipimport")
        || is_memlens_file(file)
}

/// Whether a frame is memlens's own (its bootstrap, census, markers, spans, pytest and
/// IPython helpers), from the package `memlens run` writes to a temporary `memlens-py-*`
/// folder or from an installed wheel. The collector leaves these frames out of the stacks
/// it records; older recordings have them.
pub fn is_memlens_file(file: &str) -> bool {
    file.contains("/memlens-py-")
        || file == "<memlens>"
        || [
            "/memlens/__init__.py",
            "/memlens/__main__.py",
            "/memlens/_bootstrap.py",
            "/memlens/_census.py",
            "/memlens/_follow.py",
            "/memlens/_cli.py",
            "/memlens/_layout.py",
            "/memlens/ipython.py",
            "/memlens/pytest_plugin.py",
        ]
        .iter()
        .any(|f| file.ends_with(f))
}

impl FlameTree {
    /// Builds the tree for `totals` (from [`crate::stack_totals`]).
    pub fn build(rec: &Recording, totals: &StackTotals, options: &FlameOptions) -> FlameTree {
        let root = FlameNode {
            frame: None,
            parent: 0,
            depth: 0,
            children: Vec::new(),
            total: Totals::default(),
            self_: Totals::default(),
        };
        let mut tree = FlameTree { nodes: vec![root] };
        // Node for each stack id, memoized: the stack table is a prefix tree, so each stack's
        // node is a child of its parent stack's node.
        let mut memo: FxHashMap<StackId, u32> = FxHashMap::default();
        memo.insert(StackId::ROOT, 0);
        let mut child_of: FxHashMap<(u32, (u32, u32, u32)), u32> = FxHashMap::default();
        let mut path = Vec::new();
        for &(stack, t) in &totals.stacks {
            // Walk up to the nearest memoized ancestor, then come back down creating nodes.
            path.clear();
            let mut at = stack;
            let mut node = loop {
                if let Some(&n) = memo.get(&at) {
                    break n;
                }
                match rec.stack(at) {
                    Some(s) => {
                        path.push((at, s.frame));
                        at = s.parent;
                    }
                    None => break 0,
                }
            };
            for &(sid, frame_id) in path.iter().rev() {
                if let Some(frame) = rec.frame(frame_id) {
                    let hidden = (options.hide_internal && is_internal_frame(rec, frame_id))
                        || (options.hide_native && rec.is_native_frame(frame_id));
                    if !hidden {
                        let line = if options.merge_lines { 0 } else { frame.line };
                        let key = (node, (frame.function.0, frame.file.0, line));
                        node = *child_of.entry(key).or_insert_with(|| {
                            let depth = tree.nodes[node as usize].depth + 1;
                            tree.nodes.push(FlameNode {
                                frame: Some(frame_id),
                                parent: node,
                                depth,
                                children: Vec::new(),
                                total: Totals::default(),
                                self_: Totals::default(),
                            });
                            let id = (tree.nodes.len() - 1) as u32;
                            tree.nodes[node as usize].children.push(id);
                            id
                        });
                    }
                }
                memo.insert(sid, node);
            }
            tree.nodes[node as usize].self_.merge(t);
        }
        // Totals bottom-up: children come after parents, so one reverse pass suffices.
        for i in (0..tree.nodes.len()).rev() {
            let n = &mut tree.nodes[i];
            n.total.merge(n.self_);
            let (parent, total) = (n.parent as usize, n.total);
            if i != 0 {
                tree.nodes[parent].total.merge(total);
            }
        }
        let nodes = &mut tree.nodes;
        for i in 0..nodes.len() {
            let mut children = std::mem::take(&mut nodes[i].children);
            children.sort_by(|&a, &b| {
                nodes[b as usize].total.bytes.cmp(&nodes[a as usize].total.bytes).then(a.cmp(&b))
            });
            nodes[i].children = children;
        }
        tree
    }

    /// The path from the root to `node`, root first.
    pub fn path(&self, node: u32) -> Vec<u32> {
        crate::tree::path(&self.nodes, node)
    }

    /// Finds the node reached by following `frames` (as in a URL zoom path) from the root,
    /// matching on function and file; stops at the deepest match.
    pub fn find_path(&self, rec: &Recording, keys: &[(String, String)]) -> u32 {
        let mut at = 0u32;
        for (function, file) in keys {
            let next = self.nodes[at as usize].children.iter().copied().find(|&c| {
                self.nodes[c as usize].frame.and_then(|f| rec.frame(f)).is_some_and(|f| {
                    rec.string(f.function) == function && rec.string(f.file) == file
                })
            });
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        at
    }
}

/// The (function, file) keys from the root down to a stack's innermost frame, as
/// [`FlameTree::find_path`] takes them, leaving out the frames a tree built with
/// `hide_internal` leaves out: the path to the node that stack's memory lands in.
pub fn stack_path(rec: &Recording, stack: StackId, hide_internal: bool) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = rec
        .stack_frames(stack)
        .filter(|&f| !(hide_internal && is_internal_frame(rec, f)))
        .filter_map(|f| rec.frame(f))
        .map(|f| (rec.string(f.function).to_owned(), rec.string(f.file).to_owned()))
        .collect();
    keys.reverse();
    keys
}

/// A laid-out flame graph rectangle, in units of the zoomed node's width (0..1) and rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlameRect {
    /// The node drawn, or `None` for a merged run of frames too small to draw.
    pub node: Option<u32>,
    /// Row (0 = the zoomed node, or the root; ancestors of the zoomed node get negative rows
    /// shown above it as full-width context).
    pub row: i32,
    /// Left edge, 0..1.
    pub x: f64,
    /// Width, 0..1.
    pub w: f64,
    /// Memory the rectangle stands for.
    pub total: Totals,
}

impl TreeNode for FlameNode {
    type Figures = Totals;

    fn parent(&self) -> u32 {
        self.parent
    }

    fn children(&self) -> &[u32] {
        &self.children
    }

    fn weight(&self) -> u64 {
        self.total.bytes
    }

    fn figures(&self) -> Totals {
        self.total
    }

    fn merge(into: &mut Totals, other: Totals) {
        into.merge(other);
    }
}

/// Lays out the subtree under `zoom` to unit width. Children narrower than `min_w` are merged
/// into one rectangle per parent (their memory still counts), so nothing vanishes from totals.
pub fn flame_layout(tree: &FlameTree, zoom: u32, min_w: f64) -> Vec<FlameRect> {
    crate::tree::layout(&tree.nodes, zoom, min_w)
        .into_iter()
        .map(|p| FlameRect { node: p.node, row: p.row, x: p.x, w: p.w, total: p.figures })
        .collect()
}

impl RowRect for FlameRect {
    fn place(&self) -> (i32, f64, f64) {
        (self.row, self.x, self.w)
    }
}

/// The rectangle under point (`x` in 0..1, `row`), if any. `rects` must come from
/// [`flame_layout`] (sorted by row then x).
pub fn flame_hit(rects: &[FlameRect], x: f64, row: i32) -> Option<&FlameRect> {
    row_hit(rects, x, row)
}

#[cfg(test)]
mod tests {
    use super::{is_internal_file, stack_path};
    use crate::{Recording, StackId};
    use memlens_format::{Meta, ProcessEnd, RecordingWriter};

    #[test]
    fn stack_paths_run_from_the_root_and_skip_hidden_frames() {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        let mut s = StackId::ROOT;
        for (function, file) in
            [("<module>", "app.py"), ("_load", "<frozen importlib._bootstrap>"), ("f", "m.py")]
        {
            let frame = w.intern_frame(function, file, 1);
            s = w.intern_stack(s, frame);
        }
        let bytes = w.finish(ProcessEnd::default()).unwrap();
        let rec = Recording::open(&bytes).unwrap();
        let names = |hide| -> Vec<String> {
            stack_path(&rec, s, hide).into_iter().map(|(function, _)| function).collect()
        };
        assert_eq!(names(false), ["<module>", "_load", "f"]);
        assert_eq!(names(true), ["<module>", "f"]);
        assert!(stack_path(&rec, StackId::ROOT, true).is_empty());
    }

    #[test]
    fn internal_files_are_the_import_system_and_memlens_itself() {
        for f in [
            "<frozen importlib._bootstrap>",
            "<frozen importlib._bootstrap_external>",
            "/tmp/memlens-py-4242-17/memlens/__init__.py",
            "/venv/lib/python3.11/site-packages/memlens/_census.py",
            "/venv/lib/python3.12/site-packages/memlens/ipython.py",
            "<memlens>",
        ] {
            assert!(is_internal_file(f), "{f}");
        }
        for f in [
            "app.py",
            "/srv/app/memlens_report.py",
            "<frozen os>",
            "/usr/lib/python3.11/json/decoder.py",
        ] {
            assert!(!is_internal_file(f), "{f}");
        }
    }
}
