//! Property tests: arbitrary event streams (objects re-created in live blocks included)
//! survive a round trip, analyses agree with a naive model, the aggregates agree with a
//! replay of the events; arbitrary bytes never panic the decoder.

use memlens_analysis::*;
use memlens_format::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    /// At one of 256 addresses (`slot`), or where the previous fresh block ended (`None`: what
    /// an allocator carving a new pool does).
    Alloc {
        slot: Option<u8>,
        size: u32,
        stack: u8,
        thread: u8,
        kind: u8,
    },
    Free {
        slot: u8,
    },
    /// An object re-created in the block at `slot` (if one is live there) by `thread` at
    /// `stack`.
    Recreate {
        slot: u8,
        stack: u8,
        thread: u8,
    },
    Wait {
        us: u16,
    },
}

fn step() -> impl Strategy<Value = Step> {
    // Sizes of pymalloc's (up to 512 bytes, some of one size class), and larger.
    let size =
        prop_oneof![0u32..600, prop::sample::select(vec![1u32, 16, 24, 32, 40]), 1u32..1 << 20];
    prop_oneof![
        (any::<Option<u8>>(), size, 0u8..6, 0u8..3, 0u8..6).prop_map(
            |(slot, size, stack, thread, kind)| Step::Alloc { slot, size, stack, thread, kind }
        ),
        any::<u8>().prop_map(|slot| Step::Free { slot }),
        (any::<u8>(), 0u8..6, 0u8..3).prop_map(|(slot, stack, thread)| Step::Recreate {
            slot,
            stack,
            thread
        }),
        any::<u16>().prop_map(|us| Step::Wait { us }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_matches_a_naive_model(steps in prop::collection::vec(step(), 0..400), per_chunk in 1u64..50, rate in prop_oneof![Just(0u64), 1u64..4096]) {
        // A sampled recording (`rate` > 0): each block counts the blocks it stands for.
        let meta = Meta { extra: vec![(META_SAMPLE_BYTES.into(), rate.to_string())], ..Meta::default() };
        let counts = BlockCount::sampled(rate);
        let mut w = RecordingWriter::with_options(Vec::new(), &meta,
            WriterOptions { codec: Codec::Lz4, events_per_chunk: per_chunk, ..WriterOptions::default() }).unwrap();
        for t in 0..3 {
            w.add_thread(ThreadInfo { id: ThreadId(t), os_tid: t.into(), name: format!("t{t}") });
        }
        let mut stacks = vec![StackId::ROOT];
        for i in 0..5 {
            let f = w.intern_frame(&format!("f{i}"), "x.py", i);
            stacks.push(w.intern_stack(*stacks.last().unwrap(), f));
        }
        let (mut now, mut fresh) = (0u64, 0u64);
        // The model: live blocks (size, thread, stack, kind) of the heap and of other allocators.
        let mut live = std::collections::HashMap::new();
        let mut others = std::collections::HashMap::new();
        let (mut heap, mut peak, mut written) = (0u64, 0u64, Vec::new());
        let (mut allocs, mut frees) = (0u64, 0u64);
        let mut times = vec![0u64];
        for s in &steps {
            match *s {
                Step::Alloc { slot, size, stack, thread, kind } => {
                    let kind = AllocatorKind::from_code(kind).unwrap();
                    let addr = match slot {
                        Some(slot) => 0x1000 + u64::from(slot) * 16,
                        // In the slots' range, so that frees find these blocks too.
                        None => {
                            let at = 0x1000 + fresh % 4096;
                            fresh += u64::from(size).div_ceil(16) * 16;
                            at
                        }
                    };
                    let (thread, stack) = (ThreadId(thread.into()), stacks[stack as usize]);
                    w.alloc(now, thread, stack, addr, size.into(), kind).unwrap();
                    let t = now / 1000 * 1000;
                    let blocks = if kind.counts_in_heap() { &mut live } else { &mut others };
                    // A block allocated over a live one ends it: written as its free.
                    if let Some((old, t0, s0, k0)) = blocks.insert(addr, (u64::from(size), thread, stack, kind)) {
                        written.push((Op::Free, k0, t0, addr, old, s0, t));
                        if kind.counts_in_heap() { heap -= old; frees += counts.of(old); }
                    }
                    written.push((Op::Alloc, kind, thread, addr, u64::from(size), stack, t));
                    if kind.counts_in_heap() {
                        heap += u64::from(size);
                        peak = peak.max(heap);
                        allocs += counts.of(u64::from(size));
                    }
                }
                Step::Free { slot } => {
                    let addr = 0x1000 + u64::from(slot) * 16;
                    w.free(now, ThreadId(0), addr, AllocatorKind::Malloc).unwrap();
                    // Frees of blocks that are not live change nothing and are not written; a
                    // free is written with its block's thread, stack, size and kind.
                    if let Some((old, t0, s0, k0)) = live.remove(&addr) {
                        heap -= old;
                        frees += counts.of(old);
                        written.push((Op::Free, k0, t0, addr, old, s0, now / 1000 * 1000));
                    }
                }
                Step::Recreate { slot, stack, thread } => {
                    let addr = 0x1000 + u64::from(slot) * 16;
                    let (thread, stack) = (ThreadId(thread.into()), stacks[stack as usize]);
                    w.recreate(now, thread, stack, addr).unwrap();
                    // A live object's block (of the object domain) held by another (thread,
                    // stack) changes hands: written as a free of it as it was and an alloc by
                    // its new owner, both of kind 7; it keeps its size and kind, and the heap
                    // does not change.
                    if let Some(b) = live.get_mut(&addr) {
                        if b.3 == AllocatorKind::PymallocObject && (b.1, b.2) != (thread, stack) {
                            let (t, k) = (now / 1000 * 1000, AllocatorKind::Recreated);
                            written.push((Op::Free, k, b.1, addr, b.0, b.2, t));
                            written.push((Op::Alloc, k, thread, addr, b.0, stack, t));
                            (b.1, b.2) = (thread, stack);
                        }
                    }
                }
                Step::Wait { us } => {
                    now += u64::from(us) * 1000 + 7;
                    times.push(now / 1000 * 1000);
                }
            }
        }
        let bytes = w.finish(ProcessEnd { time_ns: now, exit_code: Some(0), signal: None }).unwrap();
        let rec = Recording::open(&bytes).unwrap();
        prop_assert_eq!(rec.aggregates_missing(), None);
        prop_assert_eq!(rec.summary().peak_heap, peak);
        prop_assert_eq!(rec.summary().end_heap, heap);
        let mut decoded = Vec::new();
        rec.for_each_event_chunk(|evs| { decoded.extend(evs.iter().map(|e| (e.op, e.kind, e.thread, e.address, e.size, e.stack, e.time_ns))); std::ops::ControlFlow::Continue(()) }).unwrap();
        prop_assert_eq!(decoded, written);
        // The trailer's summary is what the model says, and what the events and the aggregates
        // say.
        let figures = |s: &Summary| (s.peak_heap, s.end_heap, s.end_live_count, s.alloc_count, s.free_count);
        prop_assert_eq!(rec.block_count(), counts);
        let live_count = live.values().map(|b| counts.of(b.0)).sum::<u64>();
        prop_assert_eq!(figures(rec.summary()), (peak, heap, live_count, allocs, frees));
        prop_assert_eq!(figures(&rec.replay_summary().unwrap()), figures(rec.summary()));
        prop_assert_eq!(figures(&rec.aggregates_summary().unwrap()), figures(rec.summary()));
        // Every base interval is what the aggregator makes of its events (`memlens check`).
        let mut agg = Aggregator::reading(&rec);
        for k in 0..rec.event_chunk_count() {
            let mut events = Vec::new();
            rec.decode_event_chunk(k, &mut events).unwrap();
            events.iter().for_each(|e| agg.event(e));
            let (first, last) = (events[0].time_ns, events[events.len() - 1].time_ns);
            let (base, _) = agg.cut(first, last);
            prop_assert_eq!(&*rec.node(0, k as u32).unwrap(), &base, "base interval {}", k);
        }
        let all = EventFilter::default();
        let end = stack_totals(&rec, Snapshot::AtEnd, &all).unwrap();
        prop_assert_eq!(end.total.bytes, heap);
        // Blocks are charged to whoever holds them at the end: the last to re-create an object
        // in them, else whoever allocated them.
        for thread in [None, Some(ThreadId(1))] {
            let mut by_stack = std::collections::BTreeMap::<StackId, Totals>::new();
            for &(size, t, stack, _) in live.values() {
                if thread.is_none_or(|th| th == t) {
                    by_stack.entry(stack).or_default().add_blocks(size, counts.of(size));
                }
            }
            let filter = thread.map_or(EventFilter::default(), EventFilter::thread);
            let got: std::collections::BTreeMap<StackId, Totals> =
                stack_totals(&rec, Snapshot::AtEnd, &filter).unwrap().stacks.into_iter().collect();
            prop_assert_eq!(got, by_stack, "{:?}", thread);
        }
        let at_peak = stack_totals(&rec, Snapshot::AtPeak, &all).unwrap();
        prop_assert_eq!(at_peak.total.bytes, peak);
        // Every snapshot from the aggregates is what a replay of the events gives, at event
        // times, between them and across chunk boundaries, for all threads and for one.
        let mut snapshots = vec![Snapshot::AtPeak, Snapshot::AtEnd, Snapshot::TotalAllocated];
        for (i, &a) in times.iter().enumerate() {
            let b = times[(i * 7 + 3) % times.len()];
            let (a, b) = (a.min(b), a.max(b));
            snapshots.extend([
                Snapshot::AtTime(a),
                Snapshot::AtTime(a.saturating_sub(1)),
                Snapshot::PeakInRange(a, b),
                Snapshot::PeakInRange(a + 1, b + 1),
                Snapshot::AllocatedInRange(a, b),
                Snapshot::AllocatedInRange(a + 1, b),
            ]);
            prop_assert_eq!(peak_in(&rec, a, b).unwrap(), replay::peak_in(&rec, a, b).unwrap());
        }
        for filter in [all.clone(), EventFilter::thread(ThreadId(1))] {
            for &s in &snapshots {
                let fast = stack_totals(&rec, s, &filter).unwrap();
                let slow = replay::stack_totals(&rec, s, &filter).unwrap();
                prop_assert_eq!(fast, slow, "{:?} {:?}", s, filter);
                // By thread, stack and allocator (pprof's samples) too.
                if filter.threads.is_none() {
                    let fast = thread_stack_totals(&rec, s).unwrap();
                    prop_assert_eq!(fast, replay::thread_stack_totals(&rec, s).unwrap(), "{:?}", s);
                }
            }
            let end = now + 1;
            let fast = heap_timeline(&rec, &filter, 0, end, 7).unwrap();
            let slow = replay::heap_timeline(&rec, &filter, 0, end, 7).unwrap();
            let top = |b: &[Bucket]| b.iter().map(|b| b.max).max();
            if filter.threads.is_none() {
                prop_assert_eq!(top(&fast), top(&slow));
            } else {
                // One thread's line is drawn from node ends: its highs within a node may not
                // show, but nothing above them does.
                prop_assert!(top(&fast) <= top(&slow));
            }
            prop_assert_eq!(fast.last().map(|b| b.last), slow.last().map(|b| b.last));
        }
        prop_assert_eq!(thread_totals(&rec).unwrap(), replay::thread_totals(&rec).unwrap());
        prop_assert_eq!(kind_usage(&rec).unwrap(), replay::kind_usage(&rec).unwrap());
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&tail);
        if let Ok(rec) = Recording::open(&bytes) {
            let _ = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default());
        }
    }
}
