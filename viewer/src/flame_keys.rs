//! Moving a keyboard cursor over a flame graph: to the parent frame, to the largest child, to
//! the previous or next sibling, over the frames that are drawn (a [`flame_layout`] of the
//! zoomed node: frames merged into "(smaller callees)" and siblings of the zoomed node are
//! not drawn, so the cursor does not stop there). Pure; tested natively.
//!
//! [`flame_layout`]: memlens_analysis::flame_layout

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

/// The node drawn in `rects` that `step` leads to from `at`, if there is one.
pub fn flame_move(tree: &FlameTree, rects: &[FlameRect], at: u32, step: FlameMove) -> Option<u32> {
    let drawn = |n: u32| rects.iter().any(|r| r.node == Some(n));
    let node = tree.nodes.get(at as usize)?;
    let next = match step {
        FlameMove::Parent => (at != 0).then_some(node.parent),
        FlameMove::Child => node.children.iter().copied().find(|&c| drawn(c)),
        FlameMove::PrevSibling | FlameMove::NextSibling => {
            if at == 0 {
                return None;
            }
            let siblings = &tree.nodes.get(node.parent as usize)?.children;
            let i = siblings.iter().position(|&s| s == at)?;
            let j = match step {
                FlameMove::PrevSibling => i.checked_sub(1)?,
                _ => i + 1,
            };
            siblings.get(j).copied()
        }
    };
    next.filter(|&n| drawn(n))
}

/// Where the cursor is when a flame graph gets the keyboard: `wanted` (the last cursor) if it
/// is drawn, else the zoomed node (the first rectangle at row 0).
pub fn flame_cursor(rects: &[FlameRect], wanted: Option<u32>) -> Option<u32> {
    wanted
        .filter(|&n| rects.iter().any(|r| r.node == Some(n)))
        .or_else(|| rects.iter().find(|r| r.row == 0).and_then(|r| r.node))
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
        let frame =
            |w: &mut RecordingWriter<Vec<u8>>, name: &str| w.intern_frame(name, "app.py", 1);
        let (main, parse, load, tiny, leaf) = (
            frame(&mut w, "main"),
            frame(&mut w, "parse"),
            frame(&mut w, "load"),
            frame(&mut w, "tiny"),
            frame(&mut w, "leaf"),
        );
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
        let n = |name| named(&rec, &tree, name);
        let go = |at, step| flame_move(&tree, &rects, at, step);
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
        assert_eq!(flame_cursor(&rects, None), Some(parse), "starts at the zoomed node");
        let load = named(&rec, &tree, "load");
        assert_eq!(flame_cursor(&rects, Some(load)), Some(parse), "load is not drawn any more");
        assert_eq!(flame_move(&tree, &rects, parse, FlameMove::NextSibling), None);
        // Its ancestors are drawn above it as context: the cursor can climb back up.
        let main = named(&rec, &tree, "main");
        assert_eq!(flame_move(&tree, &rects, parse, FlameMove::Parent), Some(main));
        assert_eq!(flame_cursor(&rects, Some(main)), Some(main));
    }
}
