//! Property tests: arbitrary event streams survive a round trip, and analyses agree with a
//! naive model; arbitrary bytes never panic the decoder.

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
        any::<u16>().prop_map(|us| Step::Wait { us }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_matches_a_naive_model(steps in prop::collection::vec(step(), 0..400), per_chunk in 1u64..50) {
        let mut w = RecordingWriter::with_options(Vec::new(), &Meta::default(),
            WriterOptions { codec: Codec::Lz4, events_per_chunk: per_chunk }).unwrap();
        for t in 0..3 {
            w.add_thread(ThreadInfo { id: ThreadId(t), os_tid: t.into(), name: format!("t{t}") });
        }
        let mut stacks = vec![StackId::ROOT];
        for i in 0..5 {
            let f = w.intern_frame(&format!("f{i}"), "x.py", i);
            stacks.push(w.intern_stack(*stacks.last().unwrap(), f));
        }
        let (mut now, mut fresh) = (0u64, 0u64);
        let mut live = std::collections::HashMap::new();
        let (mut heap, mut peak, mut written) = (0u64, 0u64, Vec::new());
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
                    written.push((Op::Alloc, kind, thread, addr, u64::from(size), stack));
                    if kind.counts_in_heap() {
                        if let Some(old) = live.insert(addr, u64::from(size)) { heap -= old; }
                        heap += u64::from(size);
                        peak = peak.max(heap);
                    }
                }
                Step::Free { slot } => {
                    let addr = 0x1000 + u64::from(slot) * 16;
                    w.free(now, ThreadId(0), addr, AllocatorKind::Malloc).unwrap();
                    // Frees of blocks that are not live change nothing and are not written.
                    if let Some(old) = live.remove(&addr) {
                        heap -= old;
                        written.push((Op::Free, AllocatorKind::Malloc, ThreadId(0), addr, 0, StackId::ROOT));
                    }
                }
                Step::Wait { us } => now += u64::from(us) * 1000 + 7,
            }
        }
        let bytes = w.finish(ProcessEnd { time_ns: now, exit_code: Some(0), signal: None }).unwrap();
        let rec = Recording::open(&bytes).unwrap();
        prop_assert_eq!(rec.summary().peak_heap, peak);
        prop_assert_eq!(rec.summary().end_heap, heap);
        let mut decoded = Vec::new();
        rec.for_each_event_chunk(|evs| { decoded.extend(evs.iter().map(|e| (e.op, e.kind, e.thread, e.address, e.size, e.stack))); std::ops::ControlFlow::Continue(()) }).unwrap();
        prop_assert_eq!(decoded, written);
        let end = stack_totals(&rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
        prop_assert_eq!(end.total.bytes, heap);
        let at_peak = stack_totals(&rec, Snapshot::AtPeak, &EventFilter::default()).unwrap();
        prop_assert_eq!(at_peak.total.bytes, peak);
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
