//! Exports (pprof, speedscope, collapsed stacks) against the analyses they encode: the
//! per-thread totals from the aggregates equal a replay's and sum to the per-stack totals,
//! memlens's own frames are left out, and every format's weights add up to the view.

use memlens_analysis::*;
use memlens_format::*;

/// Two threads allocating at two user stacks (one called through a memlens frame, which the
/// exports leave out) and at the root, with frees, over many event chunks.
fn recording() -> (Vec<u8>, StackId, StackId) {
    let options = WriterOptions { events_per_chunk: 64, ..WriterOptions::default() };
    let mut w = RecordingWriter::with_options(Vec::new(), &Meta::default(), options).unwrap();
    for (id, name) in [(0, "MainThread"), (1, "worker")] {
        w.add_thread(ThreadInfo {
            id: ThreadId(id),
            os_tid: 100 + u64::from(id),
            name: name.into(),
        });
    }
    let [main, hook, load, parse] = [
        ("main", "app.py", 3),
        ("_trace", "/tmp/memlens-py-1/memlens/_bootstrap.py", 40),
        ("load", "app.py", 10),
        ("parse;split", "app.py", 20),
    ]
    .map(|(function, file, line)| w.intern_frame(function, file, line));
    let root = w.intern_stack(StackId::ROOT, main);
    let via_memlens = w.intern_stack(root, hook);
    let load = w.intern_stack(via_memlens, load);
    let parse = w.intern_stack(root, parse);
    for i in 0..5_000u64 {
        let thread = ThreadId((i % 3 == 0) as u32);
        let stack = [load, parse, StackId::ROOT][(i % 3) as usize];
        let kind = if i % 2 == 0 { AllocatorKind::PymallocObject } else { AllocatorKind::Malloc };
        w.alloc(i * 100, thread, stack, 0x1000 + i * 16, 8 + i % 40, kind).unwrap();
        if i % 5 != 0 {
            w.free(i * 100 + 50, ThreadId(0), 0x1000 + i * 16, kind).unwrap();
        }
    }
    let end = ProcessEnd { time_ns: 500_001, exit_code: Some(0), signal: None };
    (w.finish(end).unwrap(), load, parse)
}

fn views() -> [ExportView; 4] {
    [
        ExportView::Peak,
        ExportView::Leaks,
        ExportView::Total,
        ExportView::Range { from: 120_000, to: 300_050 },
    ]
}

#[test]
fn per_thread_totals_from_the_aggregates_equal_a_replay_and_sum_to_the_stacks() {
    let (bytes, ..) = recording();
    let rec = Recording::open(&bytes).unwrap();
    assert!(rec.aggregates_missing().is_none());
    for view in views() {
        for snapshot in [view.in_use(), view.allocated(), view.weight()] {
            let fast = thread_stack_totals(&rec, snapshot).unwrap();
            let replayed = replay::thread_stack_totals(&rec, snapshot).unwrap();
            assert_eq!(fast, replayed, "{snapshot:?}");
            assert!(fast.entries.iter().any(|e| e.0 == ThreadId(1)), "{snapshot:?}: both threads");
            // Every stack allocated through both allocators: an entry for each.
            for kind in [AllocatorKind::PymallocObject, AllocatorKind::Malloc] {
                assert!(fast.entries.iter().any(|e| e.2 == Some(kind)), "{snapshot:?}: {kind:?}");
            }
            let by_stack = stack_totals(&rec, snapshot, &EventFilter::default()).unwrap();
            let mut sum = Totals::default();
            fast.entries.iter().for_each(|e| sum.merge(e.3));
            assert_eq!(sum, by_stack.total, "{snapshot:?}");
            let worker = stack_totals(&rec, snapshot, &EventFilter::thread(ThreadId(1))).unwrap();
            let mut of_worker = Totals::default();
            fast.entries.iter().filter(|e| e.0 == ThreadId(1)).for_each(|e| of_worker.merge(e.3));
            assert_eq!(of_worker, worker.total, "{snapshot:?}");
        }
    }
}

#[test]
fn collapsed_stacks_leave_memlens_out_and_add_up_to_the_view() {
    let (bytes, load, parse) = recording();
    let rec = Recording::open(&bytes).unwrap();
    for view in views() {
        let totals = stack_totals(&rec, view.weight(), &EventFilter::default()).unwrap();
        let mut out = Vec::new();
        write_collapsed(&rec, &totals, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut sum = 0u64;
        for line in text.lines() {
            let (stack, weight) = line.rsplit_once(' ').unwrap();
            sum += weight.parse::<u64>().unwrap();
            assert!(!stack.contains("memlens"), "{line}");
            assert!(
                [
                    "main (app.py:3);load (app.py:10)",
                    "main (app.py:3);parse?split (app.py:20)",
                    NO_PYTHON_FRAME
                ]
                .contains(&stack),
                "{line}"
            );
        }
        assert_eq!(sum, totals.total.bytes, "{view:?}");
        let of = |s: StackId| totals.stacks.iter().find(|e| e.0 == s).map_or(0, |e| e.1.bytes);
        assert!(text.contains(&format!("main (app.py:3);load (app.py:10) {}\n", of(load))));
        assert!(text.contains(&format!(";parse?split (app.py:20) {}\n", of(parse))));
    }
}

#[test]
fn speedscope_profiles_share_frames_and_weigh_the_views() {
    let (bytes, ..) = recording();
    let rec = Recording::open(&bytes).unwrap();
    let profiles: Vec<(String, StackTotals)> = views()
        .iter()
        .map(|v| (v.title(), stack_totals(&rec, v.weight(), &EventFilter::default()).unwrap()))
        .collect();
    let file = speedscope(&rec, &profiles, 1, "app");
    assert_eq!(file.active_profile_index, 1);
    let names: Vec<&str> = file.shared.frames.iter().map(|f| f.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, [NO_PYTHON_FRAME, "load", "main", "parse;split"], "shared, no memlens");
    for (p, (title, totals)) in file.profiles.iter().zip(&profiles) {
        assert_eq!((&p.name, p.unit, p.kind), (title, "bytes", "sampled"));
        assert_eq!(p.end_value, totals.total.bytes);
        assert_eq!(p.weights.iter().sum::<u64>(), totals.total.bytes);
        for s in &p.samples {
            // Root first: every Python stack starts at main.
            let first = &file.shared.frames[s[0]];
            assert!(first.name == "main" || first.name == NO_PYTHON_FRAME, "{first:?}");
        }
    }
}

#[test]
fn pprof_names_the_four_sample_types_the_threads_and_the_default() {
    let (bytes, ..) = recording();
    let rec = Recording::open(&bytes).unwrap();
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    for view in views() {
        let in_use = thread_stack_totals(&rec, view.in_use()).unwrap();
        let allocated = thread_stack_totals(&rec, view.allocated()).unwrap();
        let proto = pprof(&rec, &in_use, &allocated, view, &PprofOptions::default());
        for s in ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space", "count"] {
            assert!(contains(&proto, s), "{view:?}: {s}");
        }
        for s in ["thread", "MainThread", "worker", "parse;split", "app.py", NO_PYTHON_FRAME] {
            assert!(contains(&proto, s), "{view:?}: {s}");
        }
        assert!(!contains(&proto, "_bootstrap"), "memlens's frames are left out");
    }
}
