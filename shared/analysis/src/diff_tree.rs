//! The differential flame tree: two recordings' call trees merged frame by frame, so the
//! viewer can draw one flame graph whose widths are the head's memory and whose colours are
//! the growth or shrinkage since the base. Building, layout, colour classes and hit testing
//! are all here (pure, tested natively); the viewer only paints the rectangles.
//!
//! Frames are matched by function and file along the path from the root, like
//! [`crate::diff_sites`]: not by line, so edits that shift lines still match, and files by
//! [`comparable_file`], so two checkouts in different folders match.

use rustc_hash::FxHashMap;

use crate::tree::{row_hit, RowRect, TreeNode};
use crate::{
    comparable_file, saturating_sum, FlameOptions, FlameTree, Recording, StackTotals, Totals,
};

/// One node of a [`DiffTree`]: a call path present in the base, the head, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffNode {
    /// Qualified function name (`""` for the root).
    pub function: String,
    /// Source file as [`comparable_file`] gives it (`""` for the root).
    pub file: String,
    /// A line of the function seen in the head (else in the base); 0 for the root.
    pub line: u32,
    /// Parent node index (the root is its own parent).
    pub parent: u32,
    /// Depth below the root (root = 0).
    pub depth: u32,
    /// Children: those present in the head (largest head memory first), then those that
    /// vanished (largest base memory first).
    pub children: Vec<u32>,
    /// Memory of this node and its callees in the base.
    pub base: Totals,
    /// Memory of this node and its callees in the head.
    pub head: Totals,
    /// Layout width in bytes: the head's memory, plus the base memory of vanished callees
    /// when they are shown (see [`DiffOptions::show_vanished`]).
    pub weight: u64,
}

impl DiffNode {
    /// Head bytes minus base bytes.
    pub fn delta(&self) -> i64 {
        delta(self.base, self.head)
    }

    /// Whether the path only exists in the head, only in the base, or in both.
    pub fn presence(&self) -> Presence {
        presence(self.base, self.head)
    }
}

/// Where a call path exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// In both recordings.
    Both,
    /// Only in the head: new code or a new path.
    New,
    /// Only in the base: it vanished.
    Gone,
}

fn delta(base: Totals, head: Totals) -> i64 {
    (head.bytes as i128 - base.bytes as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn presence(base: Totals, head: Totals) -> Presence {
    match (base.count > 0, head.count > 0) {
        (false, true) => Presence::New,
        (true, false) => Presence::Gone,
        _ => Presence::Both,
    }
}

/// Options for [`DiffTree::build`].
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// How each side's flame tree is built (lines are always merged: frames match by
    /// function and file).
    pub flame: FlameOptions,
    /// Give vanished paths the width of their base memory, after their present siblings, so
    /// they can be seen and hovered. Without it they have no width (width is the head only).
    pub show_vanished: bool,
}

/// A merged call tree of a base and a head recording. Node 0 is the root ("all").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffTree {
    /// Nodes; children always come after their parent.
    pub nodes: Vec<DiffNode>,
    /// The largest absolute change of any node (the root included): the colour scale's end.
    pub max_abs_delta: u64,
}

/// How to colour a node or rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shade {
    /// The change is within the noise threshold.
    Neutral,
    /// More memory in the head; intensity in (0, 1].
    Grew(f64),
    /// Less memory in the head; intensity in (0, 1].
    Shrank(f64),
    /// Only in the head.
    New,
    /// Only in the base.
    Gone,
}

/// Colour class for a change from `base` to `head`: new and vanished paths always stand out;
/// other changes smaller than `noise_bytes` are neutral; the rest get an intensity relative
/// to `scale` (the largest change), never below a visible floor.
pub fn shade(base: Totals, head: Totals, noise_bytes: u64, scale: u64) -> Shade {
    match presence(base, head) {
        Presence::New if head.bytes > noise_bytes || noise_bytes == 0 => return Shade::New,
        Presence::Gone if base.bytes > noise_bytes || noise_bytes == 0 => return Shade::Gone,
        _ => {}
    }
    let d = delta(base, head);
    if d == 0 || d.unsigned_abs() < noise_bytes.max(1) {
        return Shade::Neutral;
    }
    // Square root: a 1% change next to a 100% one is still visibly coloured.
    let f = (d.unsigned_abs() as f64 / scale.max(1) as f64).sqrt().clamp(0.2, 1.0);
    if d > 0 {
        Shade::Grew(f)
    } else {
        Shade::Shrank(f)
    }
}

/// Function, comparable file ([`comparable_file`]) and line of a flame node; `None` for the
/// root.
fn names<'r>(rec: &'r Recording, tree: &FlameTree, node: u32) -> Option<(&'r str, &'r str, u32)> {
    let frame = tree.nodes.get(node as usize)?.frame.and_then(|f| rec.frame(f))?;
    let file = comparable_file(rec.string(frame.file), &rec.meta().cwd);
    Some((rec.string(frame.function), file, frame.line))
}

impl DiffTree {
    /// Merges the flame trees of `base_totals` and `head_totals` (from
    /// [`crate::stack_totals`] with the same snapshot on each recording).
    pub fn build(
        base: &Recording,
        base_totals: &StackTotals,
        head: &Recording,
        head_totals: &StackTotals,
        options: &DiffOptions,
    ) -> DiffTree {
        let flame = FlameOptions { merge_lines: true, ..options.flame.clone() };
        let bt = FlameTree::build(base, base_totals, &flame);
        let ht = FlameTree::build(head, head_totals, &flame);
        let root = DiffNode {
            function: String::new(),
            file: String::new(),
            line: 0,
            parent: 0,
            depth: 0,
            children: Vec::new(),
            base: bt.nodes[0].total,
            head: ht.nodes[0].total,
            weight: 0,
        };
        let mut nodes = vec![root];
        // (diff node, base flame node, head flame node): pairs still to expand.
        let mut queue = vec![(0u32, Some(0u32), Some(0u32))];
        while let Some((at, b, h)) = queue.pop() {
            // (function, file) -> position in `kids`.
            let mut index: FxHashMap<(&str, &str), usize> = FxHashMap::default();
            let mut kids: Vec<(u32, Option<u32>, Option<u32>)> = Vec::new();
            let sides = [(head, &ht, h, true), (base, &bt, b, false)];
            for (rec, tree, parent, is_head) in sides {
                let Some(parent) = parent else { continue };
                for &child in &tree.nodes[parent as usize].children {
                    let Some((function, file, line)) = names(rec, tree, child) else { continue };
                    let total = tree.nodes[child as usize].total;
                    let pos = *index.entry((function, file)).or_insert_with(|| {
                        let depth = nodes[at as usize].depth + 1;
                        nodes.push(DiffNode {
                            function: function.to_string(),
                            file: file.to_string(),
                            line,
                            parent: at,
                            depth,
                            children: Vec::new(),
                            base: Totals::default(),
                            head: Totals::default(),
                            weight: 0,
                        });
                        kids.push(((nodes.len() - 1) as u32, None, None));
                        kids.len() - 1
                    });
                    let k = &mut kids[pos];
                    let n = &mut nodes[k.0 as usize];
                    if is_head {
                        n.head.merge(total);
                        n.line = line;
                        k.2 = Some(child);
                    } else {
                        n.base.merge(total);
                        k.1 = Some(child);
                    }
                }
            }
            nodes[at as usize].children = kids.iter().map(|k| k.0).collect();
            queue.extend(kids);
        }
        // Children are pushed after parents, so one reverse pass computes weights bottom-up:
        // a node's own (self) bytes on its side, plus its children's widths.
        for i in (0..nodes.len()).rev() {
            let n = &nodes[i];
            let gone = n.presence() == Presence::Gone && i != 0;
            let side = |t: &DiffNode| if gone { t.base.bytes } else { t.head.bytes };
            let children_side =
                saturating_sum(n.children.iter().map(|&c| side(&nodes[c as usize])));
            let self_part = side(n).saturating_sub(children_side);
            let children = saturating_sum(n.children.iter().map(|&c| nodes[c as usize].weight));
            nodes[i].weight =
                if gone && !options.show_vanished { 0 } else { self_part.saturating_add(children) };
        }
        for i in 0..nodes.len() {
            let mut children = std::mem::take(&mut nodes[i].children);
            children.sort_by(|&a, &b| {
                let (na, nb) = (&nodes[a as usize], &nodes[b as usize]);
                let gone = |n: &DiffNode| n.presence() == Presence::Gone;
                gone(na)
                    .cmp(&gone(nb))
                    .then(nb.weight.cmp(&na.weight))
                    .then_with(|| (&na.function, &na.file).cmp(&(&nb.function, &nb.file)))
            });
            nodes[i].children = children;
        }
        let max_abs_delta = nodes.iter().map(|n| n.delta().unsigned_abs()).max().unwrap_or(0);
        DiffTree { nodes, max_abs_delta }
    }

    /// The path from the root to `node`, root first.
    pub fn path(&self, node: u32) -> Vec<u32> {
        crate::tree::path(&self.nodes, node)
    }

    /// The node reached by following `(function, file)` keys from the root; stops at the
    /// deepest match.
    pub fn find_path(&self, keys: &[(String, String)]) -> u32 {
        let mut at = 0u32;
        for (function, file) in keys {
            let next = self.nodes[at as usize].children.iter().copied().find(|&c| {
                let n = &self.nodes[c as usize];
                &n.function == function && &n.file == file
            });
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        at
    }

    /// Bytes under which a change counts as noise: `fraction` of the larger root total.
    pub fn noise_bytes(&self, fraction: f64) -> u64 {
        let root = &self.nodes[0];
        (root.base.bytes.max(root.head.bytes) as f64 * fraction.max(0.0)) as u64
    }

    /// The colour class of a laid-out rectangle.
    pub fn shade(&self, rect: &DiffRect, noise_bytes: u64) -> Shade {
        shade(rect.base, rect.head, noise_bytes, self.max_abs_delta)
    }
}

/// A laid-out differential flame rectangle, in units of the zoomed node's width and rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffRect {
    /// The node drawn, or `None` for a merged run of callees too small to draw.
    pub node: Option<u32>,
    /// Row (0 = the zoomed node; its ancestors get negative rows, full width).
    pub row: i32,
    /// Left edge, 0..1.
    pub x: f64,
    /// Width, 0..1.
    pub w: f64,
    /// Base memory the rectangle stands for.
    pub base: Totals,
    /// Head memory the rectangle stands for.
    pub head: Totals,
}

impl TreeNode for DiffNode {
    type Figures = (Totals, Totals);

    fn parent(&self) -> u32 {
        self.parent
    }

    fn children(&self) -> &[u32] {
        &self.children
    }

    fn weight(&self) -> u64 {
        self.weight
    }

    fn figures(&self) -> (Totals, Totals) {
        (self.base, self.head)
    }

    fn merge(into: &mut (Totals, Totals), (base, head): (Totals, Totals)) {
        into.0.merge(base);
        into.1.merge(head);
    }
}

/// Lays out the subtree under `zoom` to unit width by [`DiffNode::weight`]. Callees narrower
/// than `min_w` are merged into one rectangle per parent.
pub fn diff_layout(tree: &DiffTree, zoom: u32, min_w: f64) -> Vec<DiffRect> {
    crate::tree::layout(&tree.nodes, zoom, min_w)
        .into_iter()
        .map(|p| {
            let (base, head) = p.figures;
            DiffRect { node: p.node, row: p.row, x: p.x, w: p.w, base, head }
        })
        .collect()
}

/// The rectangle under (`x` in 0..1, `row`). `rects` must come from [`diff_layout`].
pub fn diff_hit(rects: &[DiffRect], x: f64, row: i32) -> Option<&DiffRect> {
    row_hit(rects, x, row)
}

impl RowRect for DiffRect {
    fn place(&self) -> (i32, f64, f64) {
        (self.row, self.x, self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{stack_totals, EventFilter, Snapshot, StackId, ThreadId};
    use memlens_format::{AllocatorKind, Meta, ProcessEnd, RecordingWriter, ThreadInfo};

    /// main -> (function, bytes) for each leaf; `line` shifts every line (an edit).
    fn recording(leaves: &[(&str, u64)], line: u32) -> Recording {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let main = w.intern_frame("main", "app.py", line);
        let s_main = w.intern_stack(StackId::ROOT, main);
        for (i, &(function, bytes)) in leaves.iter().enumerate() {
            let f = w.intern_frame(function, "app.py", line + 10 + i as u32);
            let s = w.intern_stack(s_main, f);
            w.alloc(
                10 + i as u64,
                ThreadId(0),
                s,
                0x1000 * (i as u64 + 1),
                bytes,
                AllocatorKind::Malloc,
            )
            .unwrap();
        }
        let bytes =
            w.finish(ProcessEnd { time_ns: 100, exit_code: Some(0), signal: None }).unwrap();
        Recording::open(&bytes).unwrap()
    }

    fn tree(base: &[(&str, u64)], head: &[(&str, u64)], show_vanished: bool) -> DiffTree {
        let (b, h) = (recording(base, 1), recording(head, 5));
        let bt = stack_totals(&b, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        let ht = stack_totals(&h, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        DiffTree::build(&b, &bt, &h, &ht, &DiffOptions { show_vanished, ..Default::default() })
    }

    fn node<'t>(t: &'t DiffTree, function: &str) -> &'t DiffNode {
        t.nodes.iter().find(|n| n.function == function).unwrap()
    }

    #[test]
    fn frames_match_by_function_and_file_across_line_edits() {
        let t = tree(
            &[("build_index", 400), ("parse", 100)],
            &[("build_index", 600), ("parse", 100)],
            true,
        );
        assert_eq!(t.nodes.len(), 4, "root, main, build_index, parse: {t:#?}");
        let main = node(&t, "main");
        assert_eq!((main.base.bytes, main.head.bytes, main.delta()), (500, 700, 200));
        assert_eq!(main.line, 5, "the head's line is shown");
        let idx = node(&t, "build_index");
        assert_eq!((idx.delta(), idx.presence()), (200, Presence::Both));
        assert_eq!(node(&t, "parse").delta(), 0);
        assert_eq!(t.max_abs_delta, 200);
        assert_eq!(t.nodes[0].weight, 700, "width is the head's memory");
    }

    #[test]
    fn new_and_vanished_paths_are_kept_and_vanished_ones_go_last() {
        let t =
            tree(&[("old_cache", 300), ("parse", 100)], &[("parse", 100), ("new_index", 50)], true);
        assert_eq!(node(&t, "old_cache").presence(), Presence::Gone);
        assert_eq!(node(&t, "new_index").presence(), Presence::New);
        let main = node(&t, "main");
        let order: Vec<&str> =
            main.children.iter().map(|&c| t.nodes[c as usize].function.as_str()).collect();
        assert_eq!(order, ["parse", "new_index", "old_cache"]);
        // Vanished memory widens its parents when shown...
        assert_eq!(main.weight, 450);
        assert_eq!(t.nodes[0].weight, 450);
        // ... and takes no width when not.
        let t = tree(
            &[("old_cache", 300), ("parse", 100)],
            &[("parse", 100), ("new_index", 50)],
            false,
        );
        assert_eq!(node(&t, "main").weight, 150);
        assert_eq!(node(&t, "old_cache").weight, 0);
        let rects = diff_layout(&t, 0, 0.0);
        assert!(rects
            .iter()
            .all(|r| r.node.is_none_or(|n| t.nodes[n as usize].function != "old_cache")));
    }

    #[test]
    fn layout_widths_follow_weights_and_hits_find_them() {
        let t = tree(&[("a", 100)], &[("a", 300), ("b", 100)], true);
        let rects = diff_layout(&t, 0, 0.0);
        let find = |f: &str| {
            *rects
                .iter()
                .find(|r| r.node.is_some_and(|n| t.nodes[n as usize].function == f))
                .unwrap()
        };
        let (a, b) = (find("a"), find("b"));
        assert_eq!((a.row, a.x, a.w), (2, 0.0, 0.75));
        assert_eq!((b.row, b.x, b.w), (2, 0.75, 0.25));
        assert_eq!(diff_hit(&rects, 0.8, 2).unwrap().node, b.node);
        assert_eq!(diff_hit(&rects, 0.8, 3), None);
        // Zooming on main keeps the root above as context.
        let main = t.find_path(&[("main".into(), "app.py".into())]);
        let zoomed = diff_layout(&t, main, 0.0);
        assert_eq!((zoomed[0].row, zoomed[0].node), (-1, Some(0)));
        // Tiny callees merge into one rectangle that still carries their memory.
        let merged = diff_layout(&t, 0, 0.5);
        let m = merged.iter().find(|r| r.node.is_none()).unwrap();
        assert_eq!((m.base.bytes, m.head.bytes), (0, 100));
    }

    #[test]
    fn shades_respect_the_noise_threshold() {
        let t = |bytes: u64, count: u64| Totals { bytes, count };
        assert_eq!(shade(t(100, 1), t(100, 1), 0, 1000), Shade::Neutral);
        assert_eq!(shade(t(100, 1), t(105, 1), 10, 1000), Shade::Neutral);
        assert_eq!(shade(t(100, 1), t(1100, 1), 10, 1000), Shade::Grew(1.0));
        assert!(
            matches!(shade(t(1000, 1), t(990, 1), 0, 1000), Shade::Shrank(f) if (f - 0.2).abs() < 1e-9)
        );
        assert_eq!(shade(t(0, 0), t(50, 1), 10, 1000), Shade::New);
        assert_eq!(shade(t(50, 1), t(0, 0), 10, 1000), Shade::Gone);
        // New or vanished but tiny: noise like any other change.
        assert_eq!(shade(t(0, 0), t(5, 1), 10, 1000), Shade::Neutral);
        let tree = tree(&[("a", 1000)], &[("a", 1000)], true);
        assert_eq!(tree.noise_bytes(0.01), 10);
    }
}
