//! Flame-graph search: which nodes match a query and how much memory they account for.
//!
//! Pure Rust over `memlens-format`'s [`FlameTree`]; it belongs in `shared` next to
//! `flame_layout`/`flame_hit` (the viewer keeps it until the format crate grows it).

use memlens_analysis::FlameTree;
use memlens_format::{Recording, Totals};

/// The result of searching a flame tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchMatches {
    /// `matched[node]`: the node's function or file contains the query.
    pub matched: Vec<bool>,
    /// Number of matching nodes.
    pub nodes: usize,
    /// Memory under matching nodes, each byte counted once (a match inside a match is not
    /// added again).
    pub total: Totals,
}

impl SearchMatches {
    /// Whether `node` matched.
    pub fn is_match(&self, node: u32) -> bool {
        self.matched.get(node as usize).copied().unwrap_or(false)
    }
}

/// Case-insensitive substring search over function and file names. An empty (or all-blank)
/// query matches nothing.
pub fn search_flame(rec: &Recording, tree: &FlameTree, query: &str) -> SearchMatches {
    let query = query.trim().to_lowercase();
    let mut out = SearchMatches { matched: vec![false; tree.nodes.len()], ..Default::default() };
    if query.is_empty() {
        return out;
    }
    // `covered[i]`: node i or one of its ancestors matched (parents come before children).
    let mut covered = vec![false; tree.nodes.len()];
    for (i, node) in tree.nodes.iter().enumerate() {
        let Some(frame) = node.frame.and_then(|f| rec.frame(f)) else { continue };
        let hit = rec.string(frame.function).to_lowercase().contains(&query)
            || rec.string(frame.file).to_lowercase().contains(&query);
        let parent_covered = covered.get(node.parent as usize).copied().unwrap_or(false);
        if hit {
            out.matched[i] = true;
            out.nodes += 1;
            if !parent_covered {
                out.total.merge(node.total);
            }
        }
        covered[i] = hit || parent_covered;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_analysis::{stack_totals, EventFilter, FlameOptions, Snapshot};
    use memlens_format::{
        AllocatorKind, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo,
    };

    /// main -> load_json -> json.loads (300 B), main -> parse (200 B), main -> load_json (100 B)
    fn recording() -> Recording {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let main = w.intern_frame("main", "app.py", 1);
        let load = w.intern_frame("load_json", "app.py", 5);
        let loads = w.intern_frame("loads", "/usr/lib/python3.11/json/__init__.py", 346);
        let parse = w.intern_frame("parse", "app.py", 9);
        let s_main = w.intern_stack(StackId::ROOT, main);
        let s_load = w.intern_stack(s_main, load);
        let s_loads = w.intern_stack(s_load, loads);
        let s_parse = w.intern_stack(s_main, parse);
        let t = ThreadId(0);
        w.alloc(10, t, s_loads, 0x10, 300, AllocatorKind::Malloc).unwrap();
        w.alloc(20, t, s_parse, 0x20, 200, AllocatorKind::Malloc).unwrap();
        w.alloc(30, t, s_load, 0x30, 100, AllocatorKind::Malloc).unwrap();
        let bytes = w.finish(ProcessEnd { time_ns: 40, exit_code: Some(0), signal: None }).unwrap();
        Recording::open(&bytes).unwrap()
    }

    fn tree(rec: &Recording) -> FlameTree {
        let totals = stack_totals(rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        FlameTree::build(rec, &totals, &FlameOptions::default())
    }

    #[test]
    fn nested_matches_are_counted_once() {
        let rec = recording();
        let tree = tree(&rec);
        // "load" matches load_json and loads (its child): 400 bytes, not 700.
        let m = search_flame(&rec, &tree, "LOAD");
        assert_eq!(m.nodes, 2);
        assert_eq!(m.total.bytes, 400);
        assert_eq!(m.matched.iter().filter(|&&b| b).count(), 2);
    }

    #[test]
    fn file_names_match_too() {
        let rec = recording();
        let tree = tree(&rec);
        let m = search_flame(&rec, &tree, "json/__init__");
        assert_eq!((m.nodes, m.total.bytes), (1, 300));
    }

    #[test]
    fn empty_query_and_no_match() {
        let rec = recording();
        let tree = tree(&rec);
        assert_eq!(search_flame(&rec, &tree, "  ").nodes, 0);
        let none = search_flame(&rec, &tree, "zzz");
        assert_eq!((none.nodes, none.total.bytes), (0, 0));
        assert!(!none.is_match(0));
    }
}
