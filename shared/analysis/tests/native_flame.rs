//! Flame trees over native frames (`memlens run --native-stacks`), on the golden recording
//! tests/golden/known-native.memlens: `app.py:3` calls into C through the interpreter's
//! `cfunction_call` (`allocate` → `make_buffer` → `fill_block`), which allocates 1 MiB; the
//! line itself allocates 64 bytes.

use memlens_analysis::*;
use memlens_format::Recording;

fn open() -> Recording {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/known-native.memlens");
    Recording::open(&std::fs::read(path).unwrap()).unwrap()
}

/// (function, self bytes) of every node but the root, depth first.
fn nodes(rec: &Recording, options: &FlameOptions) -> Vec<(String, u64)> {
    let totals = stack_totals(rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
    let tree = FlameTree::build(rec, &totals, options);
    let mut out = Vec::new();
    let mut todo = vec![0u32];
    while let Some(n) = todo.pop() {
        let node = &tree.nodes[n as usize];
        if let Some(f) = node.frame {
            out.push((rec.string(rec.frame(f).unwrap().function).to_owned(), node.self_.bytes));
        }
        todo.extend(node.children.iter().rev());
    }
    out
}

#[test]
fn native_frames_sit_under_the_python_line_and_can_be_hidden() {
    let rec = open();
    let shown = nodes(&rec, &FlameOptions { hide_internal: true, ..FlameOptions::default() });
    let want = [("<module>", 64), ("allocate", 0), ("make_buffer", 0), ("fill_block", 1 << 20)];
    assert_eq!(shown, want.map(|(f, b)| (f.to_owned(), b)));
    // CPython's internals shown: the interpreter's frame between the line and the C code.
    let all = nodes(&rec, &FlameOptions::default());
    let want = [
        ("<module>", 64),
        ("cfunction_call", 0),
        ("allocate", 0),
        ("make_buffer", 0),
        ("fill_block", 1 << 20),
    ];
    assert_eq!(all, want.map(|(f, b)| (f.to_owned(), b)));
    // Hidden, their memory is the Python line's.
    let hidden = nodes(&rec, &FlameOptions { hide_native: true, ..FlameOptions::default() });
    assert_eq!(hidden, [("<module>".to_owned(), (1 << 20) + 64)]);
}
