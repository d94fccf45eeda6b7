//! Objects re-created from a free list ([`AllocatorKind::Recreated`] events): the block moves
//! to the stack that re-created it in every live view, with the heap, the peak, the counts,
//! the kinds and the "allocated" views unchanged; a thread filter sees the block change
//! threads; the aggregates say what a replay of the events says.

use memlens_analysis::*;
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
    program_with(thread, 1000)
}

fn program_with(thread: ThreadId, events_per_chunk: u64) -> Program {
    let options = WriterOptions { events_per_chunk, ..WriterOptions::default() };
    let mut w = RecordingWriter::with_options(Vec::new(), &Meta::default(), options).unwrap();
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
    // Two events for the one block that changed hands: its free by its old owner, its alloc
    // by the new one.
    let mut events = Vec::new();
    for c in 0..p.rec.event_chunk_count() {
        p.rec.decode_event_chunk(c, &mut events).unwrap();
    }
    let moved: Vec<_> = events
        .iter()
        .filter(|e| e.is_recreation())
        .map(|e| (e.op, e.address, e.size, e.stack, e.time_ns))
        .collect();
    assert_eq!(
        moved,
        [(Op::Free, 0x1000, 64, p.rows, 3_000), (Op::Alloc, 0x1000, 64, p.cache, 3_000)]
    );
    // The block is still a pymalloc object's.
    let kinds = kind_usage(&p.rec).unwrap();
    assert_eq!(kinds.len(), 1);
    assert_eq!(
        (kinds[0].kind, kinds[0].at_peak, kinds[0].at_end),
        (AllocatorKind::PymallocObject, 112, 64)
    );
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

/// Every view from the aggregates is what a replay of the events gives, for the recording as
/// one chunk and cut into chunks of one to three events (the re-creation's halves stay in one).
#[test]
fn the_aggregates_agree_with_a_replay() {
    for thread in [T, OTHER] {
        for per_chunk in [1, 2, 3, 1000] {
            let rec = program_with(thread, per_chunk).rec;
            for filter in
                [EventFilter::default(), EventFilter::thread(T), EventFilter::thread(OTHER)]
            {
                for s in [
                    Snapshot::AtPeak,
                    Snapshot::AtEnd,
                    Snapshot::TotalAllocated,
                    Snapshot::AtTime(2_999),
                    Snapshot::AtTime(3_000),
                    Snapshot::AtTime(3_700),
                    Snapshot::PeakInRange(2_500, 4_500),
                    Snapshot::PeakInRange(3_000, 3_000),
                    Snapshot::AllocatedInRange(0, 3_000),
                ] {
                    let fast = stack_totals(&rec, s, &filter).unwrap();
                    let slow = replay::stack_totals(&rec, s, &filter).unwrap();
                    assert_eq!(fast, slow, "{s:?} {filter:?} {per_chunk}");
                }
                let fast = heap_timeline(&rec, &filter, 0, 5_001, 10).unwrap();
                let slow = replay::heap_timeline(&rec, &filter, 0, 5_001, 10).unwrap();
                assert_eq!(fast, slow, "{filter:?} {per_chunk}");
            }
            assert_eq!(kind_usage(&rec).unwrap(), replay::kind_usage(&rec).unwrap());
            assert_eq!(thread_totals(&rec).unwrap(), replay::thread_totals(&rec).unwrap());
            assert_eq!(
                peak_in(&rec, 2_500, 4_500).unwrap(),
                replay::peak_in(&rec, 2_500, 4_500).unwrap()
            );
            let figures = |s: &Summary| {
                (s.peak_heap, s.end_heap, s.end_live_count, s.alloc_count, s.free_count)
            };
            assert_eq!(figures(&rec.replay_summary().unwrap()), figures(rec.summary()));
            assert_eq!(figures(&rec.aggregates_summary().unwrap()), figures(rec.summary()));
        }
    }
}
