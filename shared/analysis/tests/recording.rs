//! Write/read round trips, analyses on a program with known answers, golden bytes, truncation.

mod common;

use common::*;
use memlens_analysis::*;
use memlens_format::*;

fn open_known() -> Recording {
    Recording::open(&known_program(WriterOptions::default())).unwrap()
}

#[test]
fn metadata_and_tables_round_trip() {
    let rec = open_known();
    assert_eq!(rec.meta().command_line, ["python3", "app.py"]);
    assert_eq!(rec.meta().capture.sample_interval_us, 10_000);
    assert_eq!(rec.meta().extra, [("key".to_string(), "value".to_string())]);
    assert_eq!(rec.threads().len(), 2);
    assert_eq!(rec.thread(WORKER).unwrap().name, "worker");
    assert_eq!(rec.markers()[0].label, "loaded");
    let (closed, open) = spans(&rec);
    assert_eq!(
        (closed[0].name.as_str(), closed[0].start_ns, closed[0].end_ns),
        ("unload", 18_000, 30_000)
    );
    assert!(open.is_empty());
    assert_eq!(rec.gc_events()[0].collected, 7);
    let census = &rec.censuses()[0];
    assert_eq!((census.trigger, census.objects, census.recursion_limit), (3, 3, 1000));
    let t = &census.types[0];
    assert_eq!(type_name(&rec, t.module, t.qualname), "app.Leak");
    assert_eq!(t.sites[0].stack, stack_named(&rec, "leak"));
    assert_eq!(t.dict.unwrap().slots_instance_bytes, 48);
    let cache = &rec.caches()[0];
    assert_eq!((rec.string(cache.qualname), cache.currsize, cache.maxsize), ("lookup", 3, None));
    assert_eq!(rec.end().unwrap().exit_code, Some(0));
    assert!(rec.has_trailer());
    assert!(rec.truncation().is_none());
    let leak = stack_named(&rec, "leak");
    let names: Vec<&str> =
        rec.stack_frames(leak).map(|f| rec.string(rec.frame(f).unwrap().function)).collect();
    assert_eq!(names, ["leak", "main"]);
}

#[test]
fn summary_matches_the_program() {
    let rec = open_known();
    let s = rec.summary();
    assert_eq!(s.peak_heap, 10_500);
    assert_eq!(s.peak_heap_time_ns, 11_000);
    assert_eq!(s.end_heap, 500);
    assert_eq!(s.end_live_count, 1);
    assert_eq!(s.alloc_count, 11);
    assert_eq!(s.alloc_bytes, 10_500);
    assert_eq!(s.free_count, 10);
    assert_eq!(s.peak_rss, 3 << 20);
    assert_eq!(s.duration_ns, 50_000);
    // Samples get the traced heap filled in by the writer.
    assert_eq!(rec.samples()[0].heap, 10_000);
    assert_eq!(rec.samples()[1].heap, 500);
}

#[test]
fn snapshots_attribute_memory_to_the_right_stacks() {
    let rec = open_known();
    let all = EventFilter::default();
    let (load, leak) = (stack_named(&rec, "load"), stack_named(&rec, "leak"));
    let peak = stack_totals(&rec, Snapshot::AtPeak, &all).unwrap();
    assert_eq!(
        peak.stacks,
        [(load, Totals { bytes: 10_000, count: 10 }), (leak, Totals { bytes: 500, count: 1 })]
    );
    let end = stack_totals(&rec, Snapshot::AtEnd, &all).unwrap();
    assert_eq!(end.stacks, [(leak, Totals { bytes: 500, count: 1 })]);
    let at = stack_totals(&rec, Snapshot::AtTime(4_500), &all).unwrap();
    assert_eq!(at.total, Totals { bytes: 5_000, count: 5 });
    let total = stack_totals(&rec, Snapshot::TotalAllocated, &all).unwrap();
    assert_eq!(total.total, Totals { bytes: 10_500, count: 11 });
    let range = stack_totals(&rec, Snapshot::AllocatedInRange(2_000, 3_000), &all).unwrap();
    assert_eq!(range.total, Totals { bytes: 2_000, count: 2 });
    // In [25us, 40us] the heap only falls, so its peak is where the span starts.
    let (bytes, _) = peak_in(&rec, 25_000, 40_000).unwrap();
    assert_eq!(bytes, 5_500);
    let range_peak = stack_totals(&rec, Snapshot::PeakInRange(25_000, 40_000), &all).unwrap();
    assert_eq!(range_peak.total.bytes, 5_500);
    // A span after the last event holds what was left at the end.
    let after = stack_totals(&rec, Snapshot::PeakInRange(60_000, 70_000), &all).unwrap();
    assert_eq!(after, end);
    // Fed one event at a time, the builder gives what one replay gives.
    let mut builder = SnapshotBuilder::new(&rec, Snapshot::AtPeak, &all);
    rec.for_each_event_chunk(|events| {
        events.chunks(1).for_each(|e| builder.feed(e));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(builder.peak(), Some((10_500, 11_000)));
    assert_eq!(builder.finish(), peak);
}

#[test]
fn thread_filter_keeps_only_that_threads_allocations() {
    let rec = open_known();
    let worker = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::thread(WORKER)).unwrap();
    assert_eq!(worker.total, Totals { bytes: 500, count: 1 });
    let main = stack_totals(&rec, Snapshot::TotalAllocated, &EventFilter::thread(T)).unwrap();
    assert_eq!(main.total, Totals { bytes: 10_000, count: 10 });
}

#[test]
fn totals_per_thread() {
    let rec = open_known();
    let per_thread = thread_totals(&rec).unwrap();
    assert_eq!(per_thread, [Totals { bytes: 10_000, count: 10 }, Totals { bytes: 500, count: 1 }]);
}

#[test]
fn timeline_never_hides_the_peak() {
    let rec = open_known();
    let all = EventFilter::default();
    for n in [1, 3, 7, 1000] {
        let buckets = heap_timeline(&rec, &all, 0, 50_001, n).unwrap();
        assert_eq!(buckets.len(), n);
        assert_eq!(buckets.iter().map(|b| b.max).max(), Some(10_500), "{n} buckets");
        assert_eq!(buckets.last().unwrap().last, 500);
    }
    let rss = rss_timeline(&rec, 0, 50_001, 4);
    assert_eq!(rss.iter().map(|b| b.max).max(), Some(3 << 20));
}

#[test]
fn flame_tree_and_call_sites() {
    let rec = open_known();
    let totals = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
    let tree = FlameTree::build(&rec, &totals, &FlameOptions::default());
    assert_eq!(tree.nodes[0].total.bytes, 10_500);
    let main = tree.nodes[0].children[0];
    assert_eq!(tree.nodes[main as usize].total.bytes, 10_500);
    let kids: Vec<u64> = tree.nodes[main as usize]
        .children
        .iter()
        .map(|&c| tree.nodes[c as usize].total.bytes)
        .collect();
    assert_eq!(kids, [10_000, 500]);
    let sites = call_sites(&rec, &totals, false);
    let top = &sites[0];
    assert_eq!(rec.string(rec.frame(top.frame).unwrap().function), "load");
    assert_eq!(top.self_.bytes, 10_000);
    let main_site = sites.iter().find(|s| s.self_.bytes == 0).unwrap();
    assert_eq!(main_site.total.bytes, 10_500);

    let rects = flame_layout(&tree, 0, 0.0);
    let hit = flame_hit(&rects, 0.99, 2).unwrap();
    assert_eq!(hit.total.bytes, 500);
    assert!(flame_hit(&rects, 0.5, 3).is_none());
    // A minimum width above the leak's share merges it instead of dropping it.
    let merged = flame_layout(&tree, 0, 0.1);
    let small = merged.iter().find(|r| r.node.is_none()).unwrap();
    assert_eq!(small.total.bytes, 500);
    // Zooming into `load` puts its ancestors above as context.
    let load = tree.nodes[main as usize].children[0];
    let zoomed = flame_layout(&tree, load, 0.0);
    assert_eq!(zoomed.iter().filter(|r| r.row < 0).count(), 2);
    assert_eq!(tree.path(load), vec![0, main, load]);
    let keys = vec![("main".to_string(), "app.py".to_string()), ("load".into(), "app.py".into())];
    assert_eq!(tree.find_path(&rec, &keys), load);
}

#[test]
fn every_codec_gives_the_same_recording() {
    let base = Recording::open(&known_program(WriterOptions::default())).unwrap();
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        for events_per_chunk in [1, 3, 1000] {
            let bytes = known_program(WriterOptions {
                codec,
                events_per_chunk,
                ..WriterOptions::default()
            });
            let rec = Recording::open(&bytes).unwrap();
            assert_eq!(rec.summary(), base.summary(), "{codec:?} {events_per_chunk}");
            let totals = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
            assert_eq!(totals.total.bytes, 10_500);
        }
    }
}

/// The golden file pins the exact bytes of the format: any change to the encoding shows up
/// here and must come with a FORMAT.md update (and a FORMAT_VERSION bump if old readers break).
/// Regenerate with `UPDATE_GOLDEN=1 cargo test -p memlens-analysis --test recording`.
#[test]
fn golden_recording_bytes_are_stable() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/known-program.memlens");
    let bytes = known_program(WriterOptions {
        codec: Codec::None,
        events_per_chunk: 1000,
        ..WriterOptions::default()
    });
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    let golden = std::fs::read(path).expect("golden file (UPDATE_GOLDEN=1 to create)");
    let first_difference = bytes.iter().zip(&golden).position(|(a, b)| a != b);
    assert!(
        bytes == golden,
        "the encoding changed (first at byte {first_difference:?}, {} bytes vs {}); see the \
         comment on this test",
        bytes.len(),
        golden.len()
    );
    let rec = Recording::open(&golden).unwrap();
    assert_eq!(rec.summary().peak_heap, 10_500);
}

/// Files written in older formats still open, with the same tables, events and answers as
/// today's encoding of the same program: format 1 (frames and stacks as plain varints, before
/// delta coding), format 2 (event addresses as deltas from the previous one, stack ids plain,
/// before per-class address prediction) and format 3 (frees without their block's size and
/// stack, no interval aggregates: answered by replay). Formats 4 and 5 are format 6 without
/// other processes' streams and native frames: the same bytes but the version. Format 6 is
/// format 7 without the span chunk; format 7 is format 8 but for the counts of a sampled
/// recording (see `older_sampled_files_keep_their_counts`).
#[test]
fn older_format_files_still_open() {
    let new = open_known();
    assert_eq!(new.format_version(), FORMAT_VERSION);
    type Frames = Vec<(String, String, u32)>;
    let stacks = |rec: &Recording| -> Vec<(Frames, u64)> {
        let totals = stack_totals(rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
        let frame = |f: FrameId| {
            let f = rec.frame(f).unwrap();
            (rec.string(f.function).to_owned(), rec.string(f.file).to_owned(), f.line)
        };
        totals
            .stacks
            .iter()
            .map(|&(s, t)| (rec.stack_frames(s).map(frame).collect(), t.bytes))
            .collect()
    };
    // Before format 4 a free named only its address, and no object was re-created.
    let events = |rec: &Recording| {
        let mut all = Vec::new();
        rec.for_each_event_chunk(|chunk| {
            all.extend(chunk.iter().filter(|e| !e.is_recreation()).map(|e| match e.op {
                Op::Alloc => *e,
                Op::Free => Event { size: 0, stack: StackId::ROOT, ..*e },
            }));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        all
    };
    for version in [1, 2, 3, 4, 5, 6, 7] {
        let path = format!(
            "{}/../../tests/golden/known-program-v{version}.memlens",
            env!("CARGO_MANIFEST_DIR")
        );
        let old = Recording::open(&std::fs::read(path).expect("golden file")).unwrap();
        assert_eq!(old.format_version(), version);
        assert_eq!(old.aggregates_missing().is_some(), version < 4);
        assert_eq!(old.summary(), new.summary(), "format {version}");
        assert_eq!(stacks(&old), stacks(&new), "format {version}");
        assert_eq!(events(&old), events(&new), "format {version}");
    }
}

/// A file holding another process's recording (format 5 on): the known program, traced in a
/// child, carried in the pieces of the parent's (also the known program) file. Its bytes are
/// pinned like the single process's.
#[test]
fn golden_family_bytes_are_stable() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/known-family.memlens");
    let options =
        || WriterOptions { codec: Codec::None, events_per_chunk: 1000, ..WriterOptions::default() };
    let child = known_program(options());
    let parent = open_known();
    let mut w = RecordingWriter::with_options(Vec::new(), parent.meta(), options()).unwrap();
    let half = child.len() / 2;
    w.substream(1, &child[..half]).unwrap();
    w.flush().unwrap();
    w.substream(1, &child[half..]).unwrap();
    let end = ProcessEnd { time_ns: 50_000, exit_code: Some(0), signal: None };
    let bytes = w.finish(end).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    let golden = std::fs::read(path).expect("golden file (UPDATE_GOLDEN=1 to create)");
    assert!(bytes == golden, "the encoding of process streams changed; see FORMAT.md");
    let rec = Recording::open(&golden).unwrap();
    assert_eq!(rec.processes(), vec![1]);
    let inner = rec.open_process(1).unwrap();
    assert_eq!(inner.summary(), parent.summary());
    assert_eq!(inner.meta(), parent.meta());
    // The same in format 5.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/known-family-v5.memlens");
    let old = Recording::open(&std::fs::read(path).expect("golden file")).unwrap();
    assert_eq!(old.format_version(), 5);
    assert_eq!(old.processes(), vec![1]);
    assert_eq!(old.open_process(1).unwrap().summary(), parent.summary());
}

/// Before format 7, spans were markers labelled `begin: NAME` and `end: NAME`: a file of
/// format 6 that has them reads them as spans, and keeps its other markers.
#[test]
fn older_files_span_markers_are_read_as_spans() {
    let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
    w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
    w.marker(1_000, ThreadId(0), "begin: test_a");
    w.marker(2_000, ThreadId(0), "half way");
    w.marker(3_000, ThreadId(0), "end: test_a");
    w.marker(4_000, ThreadId(0), "begin: test_b");
    let mut bytes = w.finish(ProcessEnd { time_ns: 5_000, ..Default::default() }).unwrap();
    // Format 7 keeps them as markers: its spans are span edges.
    let rec = Recording::open(&bytes).unwrap();
    assert_eq!(rec.markers().len(), 4);
    assert!(rec.span_edges().is_empty());
    // The same bytes as format 6 (chunks have not changed; the header holds the version).
    bytes[8] = 6;
    let rec = Recording::open(&bytes).unwrap();
    let labels: Vec<&str> = rec.markers().iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["half way"]);
    let (closed, open) = spans(&rec);
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (closed[0].name.as_str(), closed[0].start_ns, closed[0].end_ns),
        ("test_a", 1_000, 3_000)
    );
    let open: Vec<(&str, u64)> = open.iter().map(|o| (o.name.as_str(), o.start_ns)).collect();
    assert_eq!(open, [("test_b", 4_000)]);
}

#[test]
fn the_header_is_byte_exact() {
    let bytes = known_program(WriterOptions::default());
    assert_eq!(&bytes[..8], b"\x89MLNS\r\n\x1a");
    assert_eq!(&bytes[8..16], &[8, 0, 0, 0, 0, 0, 0, 0]);
    // The first chunk is the metadata (tag 1), and the footer is the last 24 bytes.
    assert_eq!(bytes[16], 1);
    let footer = &bytes[bytes.len() - 24..];
    assert_eq!(footer[0], 12);
    assert_eq!(&footer[4..8], &8u32.to_le_bytes());
}

#[test]
fn a_file_cut_anywhere_opens_up_to_its_last_whole_chunk() {
    let full = known_program(WriterOptions {
        codec: Codec::Lz4,
        events_per_chunk: 4,
        ..WriterOptions::default()
    });
    let mut saw_partial = false;
    for cut in 0..full.len() {
        match Recording::open(&full[..cut]) {
            Ok(rec) => {
                assert!(cut > HEADER_LEN);
                // Whatever was read is consistent: replaying never fails.
                let s = rec.summary();
                assert!(s.peak_heap <= 10_500);
                stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
                if rec.truncation().is_some() {
                    saw_partial |= s.alloc_count > 0 && !rec.has_trailer();
                }
            }
            Err(Error::TooShort { .. }) => assert!(cut <= HEADER_LEN, "cut at {cut}"),
            Err(Error::NoMetadata { .. }) => assert!(cut < 200, "cut at {cut}"),
            Err(e) => panic!("cut at {cut}: {e}"),
        }
    }
    assert!(saw_partial);
    // Cut just before the trailer: everything but the trailer is there, summary is replayed.
    let cut_rec = Recording::open(&full[..full.len() - 30]).unwrap();
    assert!(!cut_rec.has_trailer());
    assert!(cut_rec.truncation().is_some());
    assert_eq!(cut_rec.summary().peak_heap, 10_500);
    assert_eq!(cut_rec.summary().end_heap, 500);
}

/// A damaged byte anywhere is found: in a chunk read at open, reading stops there; in an
/// event chunk, reading its events fails with where and why.
#[test]
fn damaged_bytes_are_found() {
    let options =
        WriterOptions { codec: Codec::None, events_per_chunk: 4, ..WriterOptions::default() };
    let clean = known_program(options);
    let (mut stopped, mut failed) = (false, false);
    for at in (HEADER_LEN + 40..clean.len() - 60).step_by(7) {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x55;
        let Ok(rec) = Recording::open(&bytes) else { continue };
        if let Some(t) = rec.truncation() {
            assert!(t.offset as usize <= at, "damage at {at}: {t:?}");
            stopped |= t.reason.contains("checksum");
            continue;
        }
        match replay::stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()) {
            Err(e) => failed |= e.to_string().contains("checksum"),
            Ok(t) => assert_eq!(t.total.bytes, 500, "damage at {at} went unnoticed"),
        }
    }
    assert!(stopped && failed);
}

#[test]
fn unknown_chunk_tags_are_skipped() {
    let bytes = known_program(WriterOptions::default());
    // Splice a chunk with an unknown tag (200) right after the header.
    let mut spliced = bytes[..HEADER_LEN].to_vec();
    let meta_len = CHUNK_HEADER_LEN
        + u32::from_le_bytes(bytes[HEADER_LEN + 4..HEADER_LEN + 8].try_into().unwrap()) as usize;
    spliced.extend_from_slice(&bytes[HEADER_LEN..HEADER_LEN + meta_len]);
    let payload = b"from the future";
    push_chunk(&mut spliced, 200, Codec::None, payload.len(), payload);
    spliced.extend_from_slice(&bytes[HEADER_LEN + meta_len..]);
    let rec = Recording::open(&spliced).unwrap();
    assert_eq!(rec.unknown_chunks(), 1);
    assert_eq!(rec.summary().peak_heap, 10_500);
}

#[test]
fn errors_explain_themselves() {
    let e = Recording::open(b"{\"not\": \"a recording\"}").unwrap_err();
    assert!(e.to_string().contains("not a memlens recording"), "{e}");
    let mut newer = known_program(WriterOptions::default());
    newer[8] = 9;
    let e = Recording::open(&newer).unwrap_err();
    assert!(matches!(e, Error::NewerVersion { found: 9 }));
    assert!(e.to_string().contains("upgrade memlens"), "{e}");
    assert!(matches!(Recording::open(&[]), Err(Error::TooShort { len: 0 })));
}

/// The collector samples RSS in real time while events reach the writer a few ms late; each
/// sample's heap must be the heap at the sample's own time, not when it arrived.
#[test]
fn samples_get_the_heap_at_their_own_time() {
    let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
    w.add_thread(ThreadInfo { id: T, os_tid: 1, name: "MainThread".into() });
    let f = w.intern_frame("f", "x.py", 1);
    let s = w.intern_stack(StackId::ROOT, f);
    w.memory_sample(MemorySample { time_ns: 5_500, rss: 1, vms: 1, heap: 0 }).unwrap();
    w.memory_sample(MemorySample { time_ns: 20_000, rss: 2, vms: 2, heap: 0 }).unwrap();
    for i in 0..10u64 {
        w.alloc(i * 1000, T, s, 0x1000 + i * 16, 100, AllocatorKind::Malloc).unwrap();
    }
    let bytes = w.finish(ProcessEnd { time_ns: 30_000, exit_code: Some(0), signal: None }).unwrap();
    let rec = Recording::open(&bytes).unwrap();
    let heaps: Vec<u64> = rec.samples().iter().map(|s| s.heap).collect();
    assert_eq!(heaps, [600, 1000]);
}

#[test]
fn call_sites_can_skip_internal_frames() {
    let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
    w.add_thread(ThreadInfo { id: T, os_tid: 1, name: "MainThread".into() });
    let main = w.intern_frame("main", "app.py", 3);
    let import = w.intern_frame("_find_and_load", "<frozen importlib._bootstrap>", 1);
    let s_main = w.intern_stack(StackId::ROOT, main);
    let s_import = w.intern_stack(s_main, import);
    w.alloc(1_000, T, s_import, 0x10, 100, AllocatorKind::PymallocObject).unwrap();
    let rec = Recording::open(&w.finish(ProcessEnd::default()).unwrap()).unwrap();
    let totals = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
    let name = |s: &CallSite| rec.string(rec.frame(s.frame).unwrap().function).to_owned();
    let all = call_sites(&rec, &totals, false);
    assert_eq!(all.iter().map(name).collect::<Vec<_>>(), ["_find_and_load", "main"]);
    let kept = call_sites(&rec, &totals, true);
    assert_eq!(kept.iter().map(name).collect::<Vec<_>>(), ["main"]);
    assert_eq!(kept[0].self_.bytes, 100);
}

/// The writer keeps freed addresses as tombstones in its live map (one lookup per event)
/// and sweeps them when they outnumber the live blocks: across many sweeps, live blocks
/// keep their size and stack, freed ones are gone, and the counts stay exact.
#[test]
fn writer_live_map_survives_tombstone_sweeps() {
    let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
    let t = ThreadId(0);
    w.add_thread(ThreadInfo { id: t, os_tid: 1, name: "main".into() });
    let kept = StackId::ROOT;
    let kind = AllocatorKind::PymallocObject;
    let mut time = 0;
    for i in 0..50_000u64 {
        time += 10;
        let addr = 0x1000_0000 + i * 16;
        w.alloc(time, t, kept, addr, 32, kind).unwrap();
        if i % 10 != 0 {
            w.free(time + 1, t, addr, kind).unwrap();
        }
    }
    // A freed address reused: live again, once.
    w.alloc(time + 5, t, kept, 0x1000_0010, 64, kind).unwrap();
    w.free(time + 6, t, 0x1000_0020, kind).unwrap(); // freed already: changes nothing
    assert_eq!(w.live_block(0x1000_0000), Some((32, kept)));
    assert_eq!(w.live_block(0x1000_0010), Some((64, kept)));
    assert_eq!(w.live_block(0x1000_0020), None);
    let s = w.summary();
    assert_eq!(s.end_live_count, 5_001);
    assert_eq!(s.end_heap, 5_000 * 32 + 64);
    let bytes =
        w.finish(ProcessEnd { time_ns: time + 10, exit_code: Some(0), signal: None }).unwrap();
    let rec = Recording::open(&bytes).unwrap();
    let at_end = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
    let total: u64 = at_end.stacks.iter().map(|(_, t)| t.bytes).sum();
    assert_eq!(total, 5_000 * 32 + 64);
}

/// A crafted chunk of a few KB that would decompress to 20 million events (a compression bomb)
/// is refused when its header is read: the file opens up to it, and no analysis decodes it.
#[test]
fn compression_bombs_are_refused_before_any_work() {
    let good = known_program(WriterOptions::default());
    // The file without its trailer and footer, then the bomb: events that are all one byte.
    let trailer_at = u64::from_le_bytes(good[good.len() - 8..].try_into().unwrap()) as usize;
    let mut bytes = good[..trailer_at].to_vec();
    let raw = vec![0u8; 20_000_000];
    let stored = zstd::bulk::compress(&raw, 19).unwrap();
    assert!(stored.len() < 4096);
    let at = bytes.len() as u64;
    push_chunk(&mut bytes, Tag::Events as u8, Codec::Zstd, raw.len(), &stored);
    let rec = Recording::open(&bytes).unwrap();
    let t = rec.truncation().expect("the bomb is where reading stops");
    assert_eq!(t.offset, at);
    assert!(t.reason.contains("more than any recording does"), "{t:?}");
    assert_eq!(rec.summary().peak_heap, 10_500);
    let end = replay::stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
    assert_eq!(end.total.bytes, 500);
}

/// The counts of [`known_sampled`] when each sampled 100-byte block counts `n`: in the
/// trailer, the aggregates and every replay alike.
fn check_sampled_counts(rec: &Recording, n: u64) {
    let figures = |s: &Summary| (s.alloc_count, s.free_count, s.end_live_count, s.alloc_bytes);
    let want = (5 * n + 1, n, 4 * n + 1, 5 * SMALL_WEIGHT + BIG_WEIGHT);
    assert_eq!(figures(rec.summary()), want);
    assert_eq!(figures(&rec.aggregates_summary().unwrap()), want);
    assert_eq!(figures(&rec.replay_summary().unwrap()), want);
    let all = EventFilter::default();
    let snapshots = [
        Snapshot::AtEnd,
        Snapshot::AtPeak,
        Snapshot::TotalAllocated,
        Snapshot::AtTime(4_500),
        Snapshot::PeakInRange(2_000, 8_500),
        Snapshot::AllocatedInRange(2_000, 6_000),
    ];
    for s in snapshots {
        let fast = stack_totals(rec, s, &all).unwrap();
        assert_eq!(fast, replay::stack_totals(rec, s, &all).unwrap(), "{s:?}");
    }
    let count = |s: Snapshot, name: &str| {
        let totals = stack_totals(rec, s, &all).unwrap();
        let stack = stack_named(rec, name);
        totals.stacks.iter().find(|(st, _)| *st == stack).map_or(0, |(_, t)| t.count)
    };
    assert_eq!(count(Snapshot::AtEnd, "small"), 3 * n);
    assert_eq!(count(Snapshot::AtEnd, "other"), n);
    assert_eq!(count(Snapshot::AtEnd, "big"), 1);
    assert_eq!(count(Snapshot::AtTime(4_500), "small"), 4 * n);
    assert_eq!(count(Snapshot::TotalAllocated, "small"), 5 * n);
    assert_eq!(count(Snapshot::AllocatedInRange(2_000, 6_000), "small"), 4 * n);
    assert_eq!(thread_totals(rec).unwrap()[0].count, 5 * n + 1);
    assert_eq!(replay::thread_totals(rec).unwrap()[0].count, 5 * n + 1);
}

/// Format 8: each block of a sampled recording counts the blocks it stands for (a sampled
/// 100-byte block at 4 KiB: 1 / (1 - exp(-100 / 4096)), about 41). Its bytes are pinned like
/// the known program's (regenerate with `UPDATE_GOLDEN=1`).
#[test]
fn sampled_recordings_count_the_blocks_they_stand_for() {
    assert_eq!(sample_weight(100, SAMPLE_RATE), SMALL_WEIGHT);
    assert_eq!(sample_weight(64 << 10, SAMPLE_RATE), BIG_WEIGHT);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/known-sampled.memlens");
    let bytes = known_sampled();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    let golden = std::fs::read(path).expect("golden file (UPDATE_GOLDEN=1 to create)");
    assert!(bytes == golden, "the encoding of a sampled recording changed; see FORMAT.md");
    let rec = Recording::open(&golden).unwrap();
    assert_eq!(rec.block_count(), BlockCount::sampled(SAMPLE_RATE));
    let n = sampled_blocks(SMALL_WEIGHT, SAMPLE_RATE);
    assert!((41..=42).contains(&n), "{n}");
    check_sampled_counts(&rec, n);
}

/// A sampled recording of format 7 (the same program, written by that version's writer)
/// counted each sampled block once, in its trailer and aggregates: it keeps those counts,
/// and replays agree with them.
#[test]
fn older_sampled_files_keep_their_counts() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/known-sampled-v7.memlens");
    let rec = Recording::open(&std::fs::read(path).expect("golden file")).unwrap();
    assert_eq!(rec.format_version(), 7);
    assert_eq!(rec.meta().sample_bytes(), Some(SAMPLE_RATE));
    assert_eq!(rec.block_count(), BlockCount::EXACT);
    check_sampled_counts(&rec, 1);
}
