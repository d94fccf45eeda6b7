//! Moving a keyboard cursor over a flame graph: to the parent frame, to the largest child, to
//! the previous or next sibling, over the frames that are drawn (a layout of the zoomed node:
//! frames merged into "(smaller callees)" and siblings of the zoomed node are not drawn, so
//! the cursor does not stop there). Pure; tested natively. Both flame graphs (the memory one
//! and compare mode's differential one) implement [`FlameNav`]; `use_flame_keys` wires it to
//! the keyboard.

use memlens_analysis::{FlameRect, FlameTree};

/// A move of the cursor, named by what it does in the tree (the panel maps arrows to these
/// by the orientation: up is the parent in an icicle, a child in a flame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlameMove {
    Parent,
    Child,
    PrevSibling,
    NextSibling,
}

/// A laid-out flame graph as the cursor sees it.
pub trait FlameNav {
    /// The parent of `node` (`None` for the root).
    fn parent(&self, node: u32) -> Option<u32>;
    /// The children of `node`, largest first (as laid out from the left).
    fn children(&self, node: u32) -> &[u32];
    /// Whether `node` has a rectangle of its own in the layout.
    fn drawn(&self, node: u32) -> bool;
    /// The zoomed node (the layout's row 0).
    fn zoomed(&self) -> u32;
}

/// The node drawn that `step` leads to from `at`, if there is one.
pub fn flame_move(nav: &impl FlameNav, at: u32, step: FlameMove) -> Option<u32> {
    let next = match step {
        FlameMove::Parent => nav.parent(at),
        FlameMove::Child => nav.children(at).iter().copied().find(|&c| nav.drawn(c)),
        FlameMove::PrevSibling | FlameMove::NextSibling => {
            let siblings = nav.children(nav.parent(at)?);
            let i = siblings.iter().position(|&s| s == at)?;
            let j = match step {
                FlameMove::PrevSibling => i.checked_sub(1)?,
                _ => i + 1,
            };
            siblings.get(j).copied()
        }
    };
    next.filter(|&n| nav.drawn(n))
}

/// Where the cursor is: `wanted` (the last cursor) if it is drawn, else the zoomed node.
pub fn flame_cursor(nav: &impl FlameNav, wanted: Option<u32>) -> u32 {
    wanted.filter(|&n| nav.drawn(n)).unwrap_or_else(|| nav.zoomed())
}

/// A memory flame tree and its layout.
impl FlameNav for (&FlameTree, &[FlameRect]) {
    fn parent(&self, node: u32) -> Option<u32> {
        (node != 0).then(|| self.0.nodes.get(node as usize).map(|n| n.parent)).flatten()
    }

    fn children(&self, node: u32) -> &[u32] {
        self.0.nodes.get(node as usize).map_or(&[], |n| &n.children)
    }

    fn drawn(&self, node: u32) -> bool {
        self.1.iter().any(|r| r.node == Some(node))
    }

    fn zoomed(&self) -> u32 {
        self.1.iter().find(|r| r.row == 0).and_then(|r| r.node).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use memlens_analysis::{flame_layout, stack_totals, EventFilter, FlameOptions, Snapshot};
    use memlens_format::{
        AllocatorKind, Meta, ProcessEnd, Recording, RecordingWriter, StackId, ThreadId, ThreadInfo,
    };

    use super::*;

    /// main -> {parse 600 B, load 300 B, tiny 1 B}, parse -> leaf 600 B.
    fn tree() -> (Recording, FlameTree) {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let mut frame = |name: &str| w.intern_frame(name, "app.py", 1);
        let (main, parse, load, tiny, leaf) =
            (frame("main"), frame("parse"), frame("load"), frame("tiny"), frame("leaf"));
        let s_main = w.intern_stack(StackId::ROOT, main);
        let s_parse = w.intern_stack(s_main, parse);
        let s_leaf = w.intern_stack(s_parse, leaf);
        let s_load = w.intern_stack(s_main, load);
        let s_tiny = w.intern_stack(s_main, tiny);
        let t = ThreadId(0);
        let kind = AllocatorKind::Malloc;
        for (i, (stack, size)) in
            [(s_leaf, 600), (s_load, 300), (s_tiny, 1)].into_iter().enumerate()
        {
            w.alloc(i as u64, t, stack, 0x1000 * (i as u64 + 1), size, kind).unwrap();
        }
        let bytes = w.finish(ProcessEnd { time_ns: 9, exit_code: Some(0), signal: None }).unwrap();
        let rec = Recording::open(&bytes).unwrap();
        let totals = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        let tree = FlameTree::build(&rec, &totals, &FlameOptions::default());
        (rec, tree)
    }

    fn named(rec: &Recording, tree: &FlameTree, name: &str) -> u32 {
        let i = tree.nodes.iter().position(|n| {
            n.frame.and_then(|f| rec.frame(f)).is_some_and(|f| rec.string(f.function) == name)
        });
        i.unwrap() as u32
    }

    #[test]
    fn arrows_walk_parents_children_and_siblings_that_are_drawn() {
        let (rec, tree) = tree();
        // "tiny" is 1 B of 901: narrower than 1 %, merged into "(smaller callees)".
        let rects = flame_layout(&tree, 0, 0.01);
        let nav = (&tree, &rects[..]);
        let n = |name| named(&rec, &tree, name);
        let go = |at, step| flame_move(&nav, at, step);
        assert_eq!(go(0, FlameMove::Parent), None, "the root has no parent");
        assert_eq!(go(0, FlameMove::Child), Some(n("main")));
        assert_eq!(go(n("main"), FlameMove::Child), Some(n("parse")), "the largest child");
        assert_eq!(go(n("parse"), FlameMove::NextSibling), Some(n("load")));
        assert_eq!(go(n("load"), FlameMove::NextSibling), None, "tiny is not drawn");
        assert_eq!(go(n("load"), FlameMove::PrevSibling), Some(n("parse")));
        assert_eq!(go(n("parse"), FlameMove::PrevSibling), None);
        assert_eq!(go(n("leaf"), FlameMove::Parent), Some(n("parse")));
        assert_eq!(go(n("leaf"), FlameMove::Child), None);
        assert_eq!(go(0, FlameMove::NextSibling), None);
    }

    #[test]
    fn zoomed_in_the_cursor_stays_in_what_is_drawn() {
        let (rec, tree) = tree();
        let parse = named(&rec, &tree, "parse");
        let rects = flame_layout(&tree, parse, 0.01);
        let nav = (&tree, &rects[..]);
        assert_eq!(flame_cursor(&nav, None), parse, "starts at the zoomed node");
        let load = named(&rec, &tree, "load");
        assert_eq!(flame_cursor(&nav, Some(load)), parse, "load is not drawn any more");
        assert_eq!(flame_move(&nav, parse, FlameMove::NextSibling), None);
        // Its ancestors are drawn above it as context: the cursor can climb back up.
        let main = named(&rec, &tree, "main");
        assert_eq!(flame_move(&nav, parse, FlameMove::Parent), Some(main));
        assert_eq!(flame_cursor(&nav, Some(main)), main);
    }
}
