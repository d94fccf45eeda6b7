//! Each insight on a recording written with the format's own writer: the events and censuses
//! that are its evidence go in, and the finding, its numbers and its message come out; so
//! do the near misses just under each threshold, which must not be reported.

use memlens_analysis::*;
use memlens_format::*;

const T: ThreadId = ThreadId(0);
const MS: u64 = 1_000_000;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// (time, address, stack and size for an allocation or `None` for a free).
type Scheduled = (u64, u64, Option<(StackId, u64)>);

/// A recording under construction: one thread, frames in `app.py`. Allocations and frees
/// may be given in any order; they are written in time order (as a tracer would see them).
struct Program {
    w: RecordingWriter<Vec<u8>>,
    next_address: u64,
    events: Vec<Scheduled>,
}

impl Program {
    fn new() -> Program {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: T, os_tid: 1, name: "MainThread".into() });
        Program { w, next_address: 0x1000, events: Vec::new() }
    }

    /// `main (app.py:1)` -> `function (app.py:line)`.
    fn stack(&mut self, function: &str, line: u32) -> StackId {
        let main = self.w.intern_frame("main", "app.py", 1);
        let main = self.w.intern_stack(StackId::ROOT, main);
        let f = self.w.intern_frame(function, "app.py", line);
        self.w.intern_stack(main, f)
    }

    fn alloc(&mut self, time_ns: u64, stack: StackId, size: u64) -> u64 {
        let address = self.next_address;
        self.next_address += size.max(16);
        self.events.push((time_ns, address, Some((stack, size))));
        address
    }

    fn free(&mut self, time_ns: u64, address: u64) {
        self.events.push((time_ns, address, None));
    }

    fn finish(mut self, end_ns: u64) -> Recording {
        self.events.sort_by_key(|e| e.0);
        for (t, address, alloc) in self.events {
            match alloc {
                Some((stack, size)) => {
                    self.w.alloc(t, T, stack, address, size, AllocatorKind::Malloc).unwrap()
                }
                None => self.w.free(t, T, address, AllocatorKind::Malloc).unwrap(),
            }
        }
        let end = ProcessEnd { time_ns: end_ns, exit_code: Some(0), signal: None };
        Recording::from_vec(self.w.finish(end).unwrap()).unwrap()
    }
}

fn found(rec: &Recording, kind: InsightKind) -> Vec<Insight> {
    let all = insights(rec, &InsightOptions::default()).unwrap();
    all.into_iter().filter(|i| i.kind == kind).collect()
}

fn function_of(rec: &Recording, stack: Option<StackId>) -> &str {
    let frame = rec.stack(stack.expect("a stack")).unwrap().frame;
    rec.string(rec.frame(frame).unwrap().function)
}

#[test]
fn memory_growing_through_every_quarter_to_the_exit_is_a_probable_leak() {
    let mut p = Program::new();
    let (grow, spike, temp) = (p.stack("grow", 10), p.stack("spike", 20), p.stack("temp", 30));
    // 512 KiB in the first and second half of each 2 ms quarter of an 8 ms run, never freed.
    for k in 0..8 {
        p.alloc(k * MS + MS / 2, grow, 512 * KIB);
    }
    // Grows for three quarters, then drops before the exit: not a leak.
    let spikes: Vec<u64> = (0..6).map(|k| p.alloc(k * MS + MS / 4, spike, 512 * KIB)).collect();
    for a in spikes {
        p.free(7 * MS, a);
    }
    // Grows in every quarter but by less than 1 MiB in all.
    for k in 0..8 {
        p.alloc(k * MS + MS / 3, temp, 64 * KIB);
    }
    let rec = p.finish(8 * MS);
    let f = found(&rec, InsightKind::GrowingAtExit);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(function_of(&rec, f[0].stack), "grow");
    assert_eq!(f[0].bytes, 3 * MIB);
    assert_eq!(
        f[0].message,
        "probable leak: memory allocated at grow (app.py:10) grew in every quarter of the run \
         (1.00 MiB -> 2.00 MiB -> 3.00 MiB -> 4.00 MiB) and was still held at exit: +3.00 MiB \
         since the first quarter"
    );
}

#[test]
fn many_large_short_lived_blocks_at_one_line_are_churn() {
    let mut p = Program::new();
    let (churn, few, slow) = (p.stack("churn", 5), p.stack("few", 6), p.stack("slow", 7));
    for k in 0..150u64 {
        let t = k * 100_000;
        // 150 blocks of 64 to 128 KiB, each freed 1 ms later.
        let a = p.alloc(t, churn, 64 * KIB + (k % 2) * 64 * KIB);
        p.free(t + MS, a);
        // 99 of them elsewhere: one short of the threshold.
        if k < 99 {
            let b = p.alloc(t, few, 256 * KIB);
            p.free(t + MS, b);
        }
        // Large and freed, but each lives 20 ms: not temporary.
        let c = p.alloc(t, slow, 256 * KIB);
        p.free(t + 20 * MS, c);
    }
    let rec = p.finish(40 * MS);
    let f = found(&rec, InsightKind::TemporaryChurn);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(function_of(&rec, f[0].stack), "churn");
    assert_eq!(f[0].bytes, 75 * 64 * KIB + 75 * 128 * KIB);
    assert_eq!(
        f[0].message,
        "temporary churn: churn (app.py:5) allocated 150 blocks of 64.0 KiB or more (14.1 MiB \
         in total, 96.0 KiB on average) that were each freed within 10.0 ms"
    );
}

fn cache(
    w: &mut RecordingWriter<Vec<u8>>,
    name: &str,
    currsize: u64,
    maxsize: Option<u64>,
) -> CacheCensus {
    CacheCensus {
        time_ns: MS,
        module: w.intern_string("app"),
        qualname: w.intern_string(name),
        currsize,
        maxsize,
        hits: 3 * currsize,
        misses: currsize,
        bytes: currsize * 100,
    }
}

#[test]
fn an_unbounded_lru_cache_is_reported_with_its_latest_size() {
    let mut p = Program::new();
    let early = cache(&mut p.w, "lookup", 10, None);
    let late = CacheCensus { time_ns: 2 * MS, ..cache(&mut p.w, "lookup", 5000, None) };
    let bounded = cache(&mut p.w, "bounded", 128, Some(128));
    let small = cache(&mut p.w, "small", 127, None);
    p.w.caches([early, bounded, small, late]);
    let rec = p.finish(3 * MS);
    let f = found(&rec, InsightKind::UnboundedCache);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].subject.as_deref(), f[0].bytes, f[0].stack),
        (Some("app.lookup"), 500_000, None)
    );
    assert_eq!(
        f[0].message,
        "unbounded cache: app.lookup is an lru_cache(maxsize=None) holding 5,000 entries \
         (488 KiB in the cache table, keys and results, shallow), hit rate 75%; it never evicts"
    );
}

#[test]
fn many_instances_without_slots_report_what_slots_would_save() {
    let mut p = Program::new();
    let made = p.stack("build", 40);
    let (module, point, small) =
        (p.w.intern_string("app"), p.w.intern_string("Point"), p.w.intern_string("Tiny"));
    let dict = DictUsage {
        sampled: 100,
        attrs: 300,
        storage_linked: 100,
        storage_bytes: 100 * 104,
        slots_instance_bytes: 64,
    };
    let instances = |qualname, count: u64| TypeCensus {
        module,
        qualname,
        count,
        bytes: count * 56,
        linked_count: count,
        linked_bytes: count * 56,
        sites: vec![TypeSite { stack: made, count, bytes: count * 56 }],
        dict: Some(dict),
    };
    // An earlier census with more instances does not count: the last one does.
    for (time_ns, count) in [(MS, 9000), (2 * MS, 2000)] {
        p.w.census(Census {
            time_ns,
            trigger: census_trigger::MARK,
            types: vec![instances(point, count), instances(small, 999)],
            ..Default::default()
        });
    }
    let rec = p.finish(3 * MS);
    let f = found(&rec, InsightKind::MissingSlots);
    assert_eq!(f.len(), 1, "{f:?}");
    // (56 B object + 104 B storage - 64 B with slots) x 2,000 instances.
    assert_eq!((f[0].subject.as_deref(), f[0].bytes), (Some("app.Point"), 96 * 2000));
    assert_eq!(function_of(&rec, f[0].stack), "build");
    assert_eq!(
        f[0].message,
        "__slots__: 2,000 instances of app.Point, made at build (app.py:40) take 160 B each \
         (56 B object + 104 B attribute storage, 3.0 attributes); with __slots__ they would \
         take 64 B: 188 KiB less"
    );
}

fn gc_run(time_ns: u64, duration_ns: u64, collected: u64, uncollectable: u64) -> GcEvent {
    GcEvent { time_ns, duration_ns, generation: 2, collected, uncollectable }
}

#[test]
fn uncollectable_objects_are_reported_with_when_they_were_found() {
    let mut p = Program::new();
    p.w.gc(gc_run(MS, 10_000, 4, 0));
    p.w.gc(gc_run(2 * MS, 10_000, 1, 3));
    p.w.gc(gc_run(5 * MS, 20_000, 0, 2));
    p.w.gc(gc_run(6 * MS, 10_000, 9, 0));
    let rec = p.finish(100 * MS);
    let f = found(&rec, InsightKind::UncollectableCycles);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].span_ns, Some((2 * MS, 5 * MS + 20_000)));
    assert_eq!(
        f[0].message,
        "uncollectable cycles: 2 collections found 5 uncollectable objects (kept in gc.garbage \
         for the rest of the run)"
    );
    // Only 50 us of the 100 ms run was spent collecting.
    assert!(found(&rec, InsightKind::GcTime).is_empty());
}

#[test]
fn collections_taking_five_percent_of_the_run_are_reported() {
    let mut p = Program::new();
    for k in 0..3 {
        p.w.gc(gc_run(k * 3 * MS, 200_000, 1000, 0));
    }
    let rec = p.finish(10 * MS);
    let f = found(&rec, InsightKind::GcTime);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].span_ns, Some((0, 6 * MS + 200_000)));
    assert_eq!(
        f[0].message,
        "garbage collection: 3 collections took 600 µs (6% of the run) and freed 3,000 objects \
         in reference cycles"
    );
    // The same collections in a run twice as long are 3% of it.
    let mut p = Program::new();
    for k in 0..3 {
        p.w.gc(gc_run(k * 3 * MS, 200_000, 1000, 0));
    }
    assert!(found(&p.finish(20 * MS), InsightKind::GcTime).is_empty());
}

/// A recursion `depth` frames deep (below `main`) that allocates at its deepest frame, with
/// `limit` as the recursion limit at the exit census.
fn recursion(depth: u32, limit: u32) -> Recording {
    let mut p = Program::new();
    let main = p.w.intern_frame("main", "app.py", 1);
    let walk = p.w.intern_frame("walk", "app.py", 3);
    let mut stack = p.w.intern_stack(StackId::ROOT, main);
    for _ in 0..depth {
        stack = p.w.intern_stack(stack, walk);
    }
    p.alloc(MS, stack, 64);
    p.w.census(Census {
        time_ns: 2 * MS,
        trigger: census_trigger::EXIT,
        recursion_limit: limit,
        ..Default::default()
    });
    p.finish(3 * MS)
}

#[test]
fn a_stack_close_to_the_recursion_limit_is_reported() {
    let rec = recursion(899, 1000);
    let f = found(&rec, InsightKind::DeepRecursion);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(function_of(&rec, f[0].stack), "walk");
    assert_eq!(
        f[0].message,
        "deep recursion: a Python stack 900 frames deep (at walk (app.py:3)) against a \
         recursion limit of 1000"
    );
    // 79.9% of the limit is not close enough; no census, no limit, no finding.
    assert!(found(&recursion(798, 1000), InsightKind::DeepRecursion).is_empty());
    assert!(found(&recursion(899, 0), InsightKind::DeepRecursion).is_empty());
}

#[test]
fn a_quiet_program_has_no_findings_and_kinds_come_in_order() {
    let mut p = Program::new();
    let s = p.stack("work", 2);
    let a = p.alloc(MS, s, 100);
    p.free(2 * MS, a);
    let rec = p.finish(3 * MS);
    assert_eq!(insights(&rec, &InsightOptions::default()).unwrap(), []);

    // Churn and gc time in one recording: listed in the order of InsightKind.
    let mut p = Program::new();
    let s = p.stack("churn", 5);
    for k in 0..100 {
        let a = p.alloc(k * 10_000, s, 64 * KIB);
        p.free(k * 10_000 + 5_000, a);
    }
    p.w.gc(gc_run(2 * MS, MS, 1, 0));
    let kinds: Vec<InsightKind> = insights(&p.finish(4 * MS), &InsightOptions::default())
        .unwrap()
        .into_iter()
        .map(|i| i.kind)
        .collect();
    assert_eq!(kinds, [InsightKind::TemporaryChurn, InsightKind::GcTime]);
}

/// Regression (found by the fuzzer): a run whose duration is near `u64::MAX`, and collections
/// whose counts add up past it, as a damaged or hostile file can say, overflowed in the growth
/// and garbage collection findings.
#[test]
fn a_run_of_absurd_length_is_analysed_without_overflow() {
    let mut p = Program::new();
    let s = p.stack("grow", 3);
    for k in 1..8 {
        p.alloc(k * (u64::MAX / 8), s, 2 * MIB);
    }
    // Collections whose counts and times add up past u64::MAX.
    p.w.gc(gc_run(MS, u64::MAX / 2, u64::MAX, u64::MAX));
    p.w.gc(gc_run(2 * MS, u64::MAX / 2, u64::MAX, u64::MAX));
    let rec = p.finish(u64::MAX - 1);
    assert!(rec.summary().duration_ns > u64::MAX / 2);
    let f = found(&rec, InsightKind::GrowingAtExit);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(function_of(&rec, f[0].stack), "grow");
    let f = found(&rec, InsightKind::UncollectableCycles);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].message.contains("2 collections found 18,446,744,073,709,551,615"), "{f:?}");
    assert_eq!(found(&rec, InsightKind::GcTime).len(), 1);
}
