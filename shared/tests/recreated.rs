//! Objects re-created from a free list ([`AllocatorKind::Recreated`] events): the block moves
//! to the stack that re-created it in every live view, with the heap, the peak, the counts
//! and the "allocated" views unchanged; a thread filter sees the block change threads.

use memlens_format::*;

const T: ThreadId = ThreadId(0);
const OTHER: ThreadId = ThreadId(1);

struct Program {
    rec: Recording,
    /// The stack that allocated the blocks (`rows`), and the one that re-created one (`cache`).
    rows: StackId,
    cache: StackId,
}

/// `rows` allocates a 64-byte block at 0x1000 and a 48-byte one at 0x2000 and (as far as the
/// allocator knows) keeps them: their objects die into a free list. Then `cache` re-creates
/// an object in the block at 0x1000 (on `thread`), `rows` re-creates one at 0x2000 (already
/// its own: no event), and a block allocated before tracing is "re-created" (no event). The
/// block at 0x2000 is freed at the end; 0x1000 is still live.
fn program(thread: ThreadId) -> Program {
    let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
    w.add_thread(ThreadInfo { id: T, os_tid: 1, name: "MainThread".into() });
    w.add_thread(ThreadInfo { id: OTHER, os_tid: 2, name: "other".into() });
    let f_rows = w.intern_frame("rows", "app.py", 5);
    let f_cache = w.intern_frame("cache", "app.py", 9);
    let rows = w.intern_stack(StackId::ROOT, f_rows);
    let cache = w.intern_stack(StackId::ROOT, f_cache);
    let k = AllocatorKind::PymallocObject;
    w.alloc(1_000, T, rows, 0x1000, 64, k).unwrap();
    w.alloc(2_000, T, rows, 0x2000, 48, k).unwrap();
    w.recreate(3_000, thread, cache, 0x1000).unwrap();
    w.recreate(3_500, T, rows, 0x2000).unwrap();
    w.recreate(3_600, T, cache, 0x9000).unwrap();
    w.free(4_000, T, 0x2000, k).unwrap();
    assert_eq!(w.heap(), 64);
    let bytes = w.finish(ProcessEnd { time_ns: 5_000, exit_code: Some(0), signal: None }).unwrap();
    Program { rec: Recording::open(&bytes).unwrap(), rows, cache }
}

fn totals(bytes: u64) -> Totals {
    Totals { bytes, count: 1 }
}

#[test]
fn a_recreated_object_is_charged_to_the_stack_that_recreated_it() {
    let p = program(T);
    let all = EventFilter::default();
    let at_end = stack_totals(&p.rec, Snapshot::AtEnd, &all).unwrap();
    assert_eq!(at_end.stacks, vec![(p.cache, totals(64))]);
    // The peak (112 bytes, after the second alloc) came before the re-creation.
    let at_peak = stack_totals(&p.rec, Snapshot::AtPeak, &all).unwrap();
    assert_eq!(at_peak.stacks, vec![(p.rows, Totals { bytes: 112, count: 2 })]);
    let later = stack_totals(&p.rec, Snapshot::AtTime(3_000), &all).unwrap();
    assert_eq!(later.stacks, vec![(p.cache, totals(64)), (p.rows, totals(48))]);
    // Nothing more was allocated: the allocated views and the counts stay the allocator's.
    let allocated = stack_totals(&p.rec, Snapshot::TotalAllocated, &all).unwrap();
    assert_eq!(allocated.stacks, vec![(p.rows, Totals { bytes: 112, count: 2 })]);
    let s = p.rec.summary();
    assert_eq!((s.alloc_count, s.alloc_bytes, s.free_count), (2, 112, 1));
    assert_eq!((s.peak_heap, s.end_heap, s.end_live_count), (112, 64, 1));
    // One event for the one block that changed hands.
    let mut events = Vec::new();
    for c in 0..p.rec.event_chunk_count() {
        p.rec.decode_event_chunk(c, &mut events).unwrap();
    }
    let moved: Vec<_> = events.iter().filter(|e| e.is_recreation()).collect();
    assert_eq!(moved.len(), 1);
    assert_eq!((moved[0].address, moved[0].size, moved[0].stack), (0x1000, 64, p.cache));
    // Flame graphs are built from these totals: the leak is under `cache`.
    let tree = FlameTree::build(&p.rec, &at_end, &FlameOptions::default());
    let names: Vec<&str> = tree
        .nodes
        .iter()
        .filter_map(|n| n.frame)
        .map(|f| p.rec.string(p.rec.frame(f).unwrap().function))
        .collect();
    assert_eq!(names, ["cache"]);
}

#[test]
fn a_recreation_on_another_thread_moves_the_block_between_thread_filters() {
    let p = program(OTHER);
    let main = stack_totals(&p.rec, Snapshot::AtEnd, &EventFilter::thread(T)).unwrap();
    assert_eq!(main.total, Totals::default());
    let other = stack_totals(&p.rec, Snapshot::AtEnd, &EventFilter::thread(OTHER)).unwrap();
    assert_eq!(other.stacks, vec![(p.cache, totals(64))]);
    let all = stack_totals(&p.rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
    assert_eq!(all.total, totals(64));
    // The allocating thread allocated it; the other thread allocated nothing.
    let per_thread = thread_totals(&p.rec).unwrap();
    assert_eq!((per_thread[0].bytes, per_thread[1].bytes), (112, 0));
}

#[test]
fn a_span_owns_the_objects_recreated_in_it_without_having_allocated_them() {
    let p = program(T);
    let [u] = &span_usage(&p.rec, &[(2_500, 3_500)]).unwrap()[..] else { panic!() };
    assert_eq!(u.leaked.stacks, vec![(p.cache, totals(64))]);
    assert_eq!(u.allocated, Totals::default());
}
