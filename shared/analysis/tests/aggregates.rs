//! The interval aggregates of format 4 as readers meet them: a closed file read from its
//! digest and the same file scanned (no trailer), a file followed while it is written, damaged
//! aggregates falling back to replay, and recordings without events.

mod common;

use std::sync::{Arc, Mutex};

use common::push_chunk;

use memlens_analysis::*;
use memlens_format::*;

/// A program of `n` loop iterations: each allocates at one of 7 stacks (two threads), frees
/// most of it and keeps a little, with a spike at iteration `n / 3`.
fn looping(n: u64, options: WriterOptions) -> Vec<u8> {
    let mut w = RecordingWriter::with_options(Vec::new(), &Meta::default(), options).unwrap();
    for t in 0..2 {
        w.add_thread(ThreadInfo { id: ThreadId(t), os_tid: t.into(), name: format!("t{t}") });
    }
    let main = w.intern_frame("main", "app.py", 1);
    let root = w.intern_stack(StackId::ROOT, main);
    let stacks: Vec<StackId> = (0..7)
        .map(|i| {
            let f = w.intern_frame(&format!("f{i}"), "app.py", 10 + i);
            w.intern_stack(root, f)
        })
        .collect();
    let kind = AllocatorKind::PymallocObject;
    for i in 0..n {
        let t = i * 1_000;
        let thread = ThreadId((i % 5 == 0) as u32);
        let stack = stacks[(i % 7) as usize];
        let a = 0x10_0000 + i * 64;
        w.alloc(t, thread, stack, a, 48, kind).unwrap();
        w.alloc(t + 10, thread, stacks[6], 0x900_0000 + i * 32, 16 + i % 3, kind).unwrap();
        if i == n / 3 {
            w.alloc(t + 20, thread, stacks[2], 0x7000_0000, 10 << 20, AllocatorKind::Malloc)
                .unwrap();
            w.free(t + 30, thread, 0x7000_0000, AllocatorKind::Malloc).unwrap();
        }
        if i % 4 != 0 {
            w.free(t + 500, ThreadId(0), a, kind).unwrap();
        }
        if i % 1_000 == 999 {
            w.flush().unwrap();
        }
    }
    w.finish(ProcessEnd { time_ns: n * 1_000 + 1, exit_code: Some(0), signal: None }).unwrap()
}

/// Where a closed file's trailer starts (the footer's last 8 bytes say).
fn trailer_at(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().unwrap()) as usize
}

fn small_chunks() -> WriterOptions {
    WriterOptions { events_per_chunk: 100, ..WriterOptions::default() }
}

/// Everything the analyses say about a recording, to compare two ways of reading it.
fn answers(rec: &Recording) -> Vec<String> {
    let all = EventFilter::default();
    let end = rec.summary().duration_ns;
    let mut out = vec![format!("{:?}", rec.summary())];
    for s in [
        Snapshot::AtPeak,
        Snapshot::AtEnd,
        Snapshot::TotalAllocated,
        Snapshot::AtTime(end / 2),
        Snapshot::PeakInRange(end / 5, end / 2 + 777),
        Snapshot::AllocatedInRange(end / 7, end / 3 + 5),
    ] {
        for filter in [all.clone(), EventFilter::thread(ThreadId(1))] {
            out.push(format!("{s:?} {:?}", stack_totals(rec, s, &filter).unwrap()));
        }
    }
    // The timeline's highest point and end (its buckets' lows differ: from the aggregates they
    // come from nodes, by replay from every event).
    let timeline = heap_timeline(rec, &all, 0, end, 50).unwrap();
    let top = timeline.iter().map(|b| b.max).max();
    out.push(format!("timeline {top:?} {:?}", timeline.last().map(|b| b.last)));
    out.push(format!("{:?}", thread_totals(rec).unwrap()));
    out.push(format!("{:?}", insights(rec, &InsightOptions::default()).unwrap()));
    out
}

#[test]
fn a_closed_file_and_the_same_file_scanned_agree() {
    let bytes = looping(30_000, small_chunks());
    let closed = Recording::open(&bytes).unwrap();
    assert!(closed.has_trailer() && closed.aggregates_missing().is_none());
    assert!(closed.base_count() > 256, "a pyramid of two levels above the base");
    assert!(!closed.level(2).is_empty());
    // Without the trailer and footer, the file is scanned and the pyramid folded by the reader.
    let scanned = Recording::open(&bytes[..trailer_at(&bytes)]).unwrap();
    assert!(scanned.truncation().is_none());
    assert!(!scanned.has_trailer());
    assert_eq!(scanned.aggregates_missing(), None);
    assert_eq!(scanned.base_count(), closed.base_count());
    for level in 1..=2 {
        assert_eq!(scanned.level(level), closed.level(level), "level {level}");
    }
    assert_eq!(scanned.base_shapes(), closed.base_shapes());
    let (a, b) = (answers(&closed), answers(&scanned));
    // The scanned file has no process end: its duration comes from its last event.
    assert_eq!(a[1..], b[1..]);
    // And both agree with a full replay.
    for s in [Snapshot::AtPeak, Snapshot::AtEnd, Snapshot::AtTime(12_345_678)] {
        let all = EventFilter::default();
        assert_eq!(
            stack_totals(&closed, s, &all).unwrap(),
            replay::stack_totals(&closed, s, &all).unwrap()
        );
    }
}

/// A source whose length grows, like a file being written.
struct Growing(Mutex<(Vec<u8>, usize)>);

impl ByteSource for Growing {
    fn len(&self) -> u64 {
        self.0.lock().unwrap().1 as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let g = self.0.lock().unwrap();
        let end = g.1.min((offset as usize).saturating_add(len));
        Ok(g.0.get(offset as usize..end).unwrap_or_default().to_vec())
    }
}

#[test]
fn a_recording_is_followed_while_it_is_written() {
    let bytes = looping(20_000, small_chunks());
    let source = Arc::new(Growing(Mutex::new((bytes.clone(), bytes.len() / 4))));
    let mut rec = Recording::open_source(source.clone()).unwrap();
    let mut seen = vec![rec.base_count()];
    for quarter in 2..=4 {
        // Cut anywhere: mid-chunk too.
        source.0.lock().unwrap().1 = bytes.len() * quarter / 4 - 3 * (quarter < 4) as usize;
        assert!(rec.refresh().unwrap());
        seen.push(rec.base_count());
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(rec.has_trailer());
    assert!(!rec.refresh().unwrap(), "a closed recording does not change");
    let closed = Recording::open(&bytes).unwrap();
    assert_eq!(answers(&rec), answers(&closed));
}

#[test]
fn damaged_aggregates_fall_back_to_replay() {
    let bytes = looping(3_000, small_chunks());
    let rec = Recording::open(&bytes).unwrap();
    let want = answers(&rec);
    // One base interval that disagrees with itself (its heap at the end off by one), in a
    // well-formed chunk with a right checksum: only its contents are wrong.
    let chunk = *rec.interval_chunk(5).unwrap();
    let mut node = rec.node(0, 5).unwrap().as_ref().clone();
    node.heap_end += 1;
    let payload = encode_intervals(std::slice::from_ref(&node));
    let mut damaged = bytes[..chunk.offset as usize].to_vec();
    push_chunk(&mut damaged, Tag::Intervals as u8, Codec::None, payload.len(), &payload);
    // Everything after it but the trailer (whose index no longer fits): the file is scanned.
    damaged.extend_from_slice(&bytes[(chunk.offset + chunk.len) as usize..trailer_at(&bytes)]);
    let rec = Recording::open(&damaged).unwrap();
    assert!(rec.truncation().is_none(), "{:?}", rec.truncation());
    let why = rec.aggregates_missing().expect("the damaged interval is noticed");
    assert!(why.contains("disagrees"), "{why}");
    // ...and every figure still comes out right, by replay.
    let got = answers(&rec);
    for (a, b) in got.iter().zip(&want).skip(1) {
        assert!(a == b, "{a:.300} vs {b:.300}");
    }
}

#[test]
fn an_aggregate_only_recording_grows_with_stacks_not_with_time() {
    let options = WriterOptions { events: false, ..WriterOptions::default() };
    let short = looping(20_000, options);
    let long = looping(200_000, options);
    let (s, l) = (Recording::open(&short).unwrap(), Recording::open(&long).unwrap());
    assert!(l.aggregate_only() && l.event_chunk_count() == 0);
    assert!(l.base_count() < 200, "{} intervals", l.base_count());
    assert!(long.len() * 2 < short.len() * 3, "{} vs {} bytes", long.len(), short.len());
    // The answers that do not need events are those of the full recording.
    let full = Recording::open(&looping(200_000, WriterOptions::default())).unwrap();
    assert_eq!(l.summary(), full.summary());
    let all = EventFilter::default();
    for snapshot in [Snapshot::AtPeak, Snapshot::AtEnd, Snapshot::TotalAllocated] {
        assert_eq!(
            stack_totals(&l, snapshot, &all).unwrap(),
            stack_totals(&full, snapshot, &all).unwrap(),
            "{snapshot:?}"
        );
    }
    assert_eq!(s.summary().alloc_count, 40_001);
}

/// Events an aggregate-only recording does not time (an arena's, a free of a block never
/// seen) and samples it thins out, after the last heap event and after the process end, do
/// not make the trailer's duration differ from the one the file's contents give.
#[test]
fn an_aggregate_only_recording_lasts_as_long_as_what_it_keeps() {
    for events in [true, false] {
        let options = WriterOptions { events, ..WriterOptions::default() };
        // Samples every 10 ms: an aggregate-only recording keeps fewer.
        let capture = CaptureOptions { sample_interval_us: 10_000, ..CaptureOptions::default() };
        let meta = Meta { capture, ..Meta::default() };
        let mut w = RecordingWriter::with_options(Vec::new(), &meta, options).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "main".into() });
        let f = w.intern_frame("main", "app.py", 1);
        let stack = w.intern_stack(StackId::ROOT, f);
        let (thread, arena) = (ThreadId(0), AllocatorKind::PymallocArena);
        w.alloc(1_000, thread, stack, 0x1000, 64, AllocatorKind::PymallocObject).unwrap();
        w.alloc(2_000, thread, stack, 0x10_0000, 1 << 18, arena).unwrap();
        w.free(3_000_000, thread, 0x10_0000, arena).unwrap();
        w.free(4_000_000, thread, 0x5000, AllocatorKind::Malloc).unwrap();
        for (time_ns, rss) in [(4_500_000, 9 << 20), (4_600_000, 8 << 20), (4_700_000, 7 << 20)] {
            w.memory_sample(MemorySample { time_ns, rss, ..MemorySample::default() }).unwrap();
        }
        let end = ProcessEnd { time_ns: 2_000_000, exit_code: Some(0), signal: None };
        let rec = Recording::open(&w.finish(end).unwrap()).unwrap();
        assert_eq!(rec.aggregates_summary().unwrap(), *rec.summary(), "events: {events}");
        if events {
            assert_eq!(rec.replay_summary().unwrap(), *rec.summary());
        }
    }
}

/// A source that counts its reads.
struct Counted(Vec<u8>, std::sync::atomic::AtomicUsize);

impl ByteSource for Counted {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let end = self.0.len().min((offset as usize).saturating_add(len));
        Ok(self.0.get(offset as usize..end).unwrap_or_default().to_vec())
    }

    /// As over a network: no read spans a gap.
    fn merge_gap(&self) -> u64 {
        1
    }
}

/// What a recording's directory holds, to compare two ways of reading it.
fn directory(rec: &Recording) -> String {
    let strings: Vec<&str> =
        (0..rec.frames().len()).map(|i| rec.string(rec.frames()[i].function)).collect();
    format!(
        "{:?} {strings:?} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        rec.frames(),
        rec.stack_count(),
        rec.threads(),
        rec.samples(),
        rec.markers(),
        rec.gc_events(),
        rec.censuses(),
        rec.caches(),
        rec.end()
    )
}

/// A closed file is opened in a few reads however many times it was flushed (its directory
/// is gathered before the digest), and reads the same as when it is scanned or when its
/// gathered copy is damaged.
#[test]
fn a_closed_file_opens_in_a_few_reads_however_often_it_was_flushed() {
    let mut w =
        RecordingWriter::with_options(Vec::new(), &Meta::default(), small_chunks()).unwrap();
    w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "main".into() });
    let kind = AllocatorKind::PymallocObject;
    let mut stack = StackId::ROOT;
    for i in 0..300u64 {
        let t = i * 1_000_000;
        if i % 10 == 0 {
            let f = w.intern_frame(&format!("f{i}"), "app.py", i as u32);
            stack = w.intern_stack(stack, f);
        }
        w.alloc(t, ThreadId(0), stack, 0x1000 + i * 64, 48, kind).unwrap();
        w.memory_sample(MemorySample { time_ns: t + 1, rss: 1 << 20, ..MemorySample::default() })
            .unwrap();
        w.marker(t + 2, ThreadId(0), &format!("step {i}"));
        w.gc(GcEvent {
            time_ns: t + 3,
            duration_ns: 10,
            generation: 0,
            collected: i,
            uncollectable: 0,
        });
        w.flush().unwrap();
    }
    let end = ProcessEnd { time_ns: 300_000_000, exit_code: Some(0), signal: None };
    let bytes = w.finish(end).unwrap();
    let counted = Arc::new(Counted(bytes.clone(), Default::default()));
    let rec = Recording::open_source(counted.clone()).unwrap();
    let reads = counted.1.load(std::sync::atomic::Ordering::Relaxed);
    assert!(reads <= 8, "{reads} reads");
    assert_eq!(rec.markers().len(), 300);
    assert_eq!(rec.truncation(), None);
    assert_eq!(rec.gathered_agrees().unwrap(), Some(true));
    let want = directory(&rec);
    // Scanned (no trailer): every flush's chunks.
    let scanned = Recording::open(&bytes[..trailer_at(&bytes)]).unwrap();
    assert_eq!(directory(&scanned), want);
    // A damaged copy is not used: the chunks of every flush are read instead.
    let mut pos = HEADER_LEN;
    while bytes[pos] != Tag::Gathered as u8 {
        pos += CHUNK_HEADER_LEN
            + u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
    }
    let mut damaged = bytes.clone();
    damaged[pos + CHUNK_HEADER_LEN + 3] ^= 0x20;
    let rec = Recording::open(&damaged).unwrap();
    assert_eq!(rec.truncation(), None);
    assert_eq!(directory(&rec), want);
    assert_eq!(rec.gathered_agrees().unwrap(), Some(false));
}
