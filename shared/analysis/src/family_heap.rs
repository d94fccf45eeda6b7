//! The heap of several processes on one time axis: each process's heap over a window, counted
//! only while the process lives ([`family_heap`]), and the highest point of their sum and when
//! it was ([`family_peak`]). The processes are the recordings of one file (the program and its
//! descendants, FORMAT.md "Processes"), whose times share the program's clock.
//!
//! A process holds no memory after it ended (or exec'd another program), whatever it had not
//! freed: its heap counts up to and including [`heap_ended_at`], and not after. Before its first allocation it holds nothing.

use crate::{
    ended_at, heap_ended_at, heap_timeline, peak_in, Bucket, Error, EventFilter, Recording,
};

/// Buckets a window is cut into at each step of the search for the highest total.
const PEAK_BUCKETS: usize = 1_000;
/// Buckets of one step whose highest possible total is looked into at the next.
const PEAK_CANDIDATES: usize = 4;

/// Each process's traced heap over `[t0, t1)` in `n` buckets (see [`heap_timeline`]), in the
/// order of `recs`, zero where the process had ended: the bucket it ended in keeps what it
/// held until then as its highest value, and ends at zero.
pub fn family_heap(
    recs: &[&Recording],
    t0: u64,
    t1: u64,
    n: usize,
) -> Result<Vec<Vec<Bucket>>, Error> {
    recs.iter()
        .map(|rec| {
            let end = heap_ended_at(rec);
            let mut buckets = heap_timeline(rec, &EventFilter::default(), t0, t1, n)?;
            for b in &mut buckets {
                if b.t0 > end {
                    *b = Bucket { t0: b.t0, t1: b.t1, ..Bucket::default() };
                } else if b.t1.saturating_sub(1) > end {
                    b.min = 0;
                    b.last = 0;
                }
            }
            Ok(buckets)
        })
        .collect()
}

/// The highest traced heap of all `recs` together within `[t0, t1)`, and when (the earliest
/// such time; `(0, t0)` when nothing was held). The total at that time is the sum of what
/// each process held then (`Snapshot::AtTime` of each process alive then adds up to it).
///
/// Found by narrowing down: the window is cut into [`PEAK_BUCKETS`] buckets, the sum of each
/// process's highest value in a bucket bounds the total there, and the buckets with the
/// highest bounds are cut again (at most [`PEAK_CANDIDATES`] of them, and only while their
/// bound is above the best total found), until buckets are one nanosecond wide, where the
/// total is known exactly. A spike of the total outside the four most promising buckets of
/// some step can be missed: a bucket's bound adds up highest values that may be at different
/// times in it, so a spike of one process can rank below a plateau of all.
pub fn family_peak(recs: &[&Recording], t0: u64, t1: u64) -> Result<(u64, u64), Error> {
    if t1 <= t0 {
        return Ok((0, t0));
    }
    if let [rec] = recs {
        // One process: its own exact peak, while it lives.
        let end = heap_ended_at(rec);
        if t0 > end {
            return Ok((0, t0));
        }
        return peak_in(rec, t0, (t1 - 1).min(end));
    }
    let mut best = (0, t0);
    narrow(recs, t0, t1, &mut best)?;
    Ok(best)
}

/// One step of [`family_peak`]'s search over `[t0, t1)`.
fn narrow(recs: &[&Recording], t0: u64, t1: u64, best: &mut (u64, u64)) -> Result<(), Error> {
    let width = t1 - t0;
    let n = usize::try_from(width).map_or(PEAK_BUCKETS, |w| w.min(PEAK_BUCKETS));
    let bands = family_heap(recs, t0, t1, n)?;
    let sum = |i: usize, value: fn(&Bucket) -> u64| {
        bands.iter().fold(0u64, |s, band| s.saturating_add(value(&band[i])))
    };
    if n as u64 == width {
        // Buckets of one nanosecond: each process's highest point at that instant, added
        // up. Not its value after the instant's events: events are stored to the
        // microsecond, and a block allocated and freed within one (a spike) is gone by then.
        for i in 0..n {
            let total = sum(i, |b| b.max);
            if total > best.0 {
                *best = (total, t0 + i as u64);
            }
        }
        return Ok(());
    }
    let mut bounds: Vec<(u64, usize)> = (0..n).map(|i| (sum(i, |b| b.max), i)).collect();
    bounds.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(bound, i) in bounds.iter().take(PEAK_CANDIDATES) {
        if bound <= best.0 {
            break;
        }
        let (b0, b1) = bucket_edges(t0, width, n, i);
        narrow(recs, b0, b1, best)?;
    }
    Ok(())
}

/// The edges of bucket `i` of `n` over `[t0, t0 + width)`, as [`crate::downsample`] cuts them.
fn bucket_edges(t0: u64, width: u64, n: usize, i: usize) -> (u64, u64) {
    let edge = |i: usize| t0 + (u128::from(width) * i as u128 / n as u128) as u64;
    (edge(i), edge(i + 1))
}

/// The end of the last process to end: the span of their common time axis.
pub fn family_end(recs: &[&Recording]) -> u64 {
    recs.iter().map(|r| ended_at(r)).max().unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use memlens_format::{
        AllocatorKind, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo,
    };

    pub(crate) const MS: u64 = 1_000_000;
    pub(crate) const MIB: u64 = 1 << 20;

    /// A process of pid `pid` that runs `ops` (time in ms, +bytes allocated or -bytes freed,
    /// the frees in the order of the allocations) at `function` in `work.py`, and ends at
    /// `end` ms.
    pub(crate) fn process(pid: u32, function: &str, ops: &[(u64, i64)], end: u64) -> Vec<u8> {
        let meta = Meta {
            pid,
            command_line: vec!["/usr/bin/python3".into(), "-c".into(), format!("{function}()")],
            ..Meta::default()
        };
        let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: pid.into(), name: "MainThread".into() });
        let main = w.intern_frame("<module>", "work.py", 1);
        let main = w.intern_stack(StackId::ROOT, main);
        let f = w.intern_frame(function, "work.py", 7);
        let s = w.intern_stack(main, f);
        let (mut next, mut live) = (0x1000u64, std::collections::VecDeque::new());
        for &(t, bytes) in ops {
            if bytes > 0 {
                w.alloc(t * MS, ThreadId(0), s, next, bytes as u64, AllocatorKind::Malloc).unwrap();
                live.push_back(next);
                next += 0x100_0000;
            } else {
                let a = live.pop_front().unwrap();
                w.free(t * MS, ThreadId(0), a, AllocatorKind::Malloc).unwrap();
            }
            w.flush().unwrap();
        }
        let end = ProcessEnd { time_ns: end * MS, exit_code: Some(0), signal: None };
        w.finish(end).unwrap()
    }

    pub(crate) fn open(bytes: &[Vec<u8>]) -> Vec<Recording> {
        bytes.iter().map(|b| Recording::from_vec(b.clone()).unwrap()).collect()
    }

    /// The program holds 2 MiB from 10 ms on; child A holds 5 MiB from 20 to 30 ms and exits
    /// at 40 ms holding 1 MiB; child B holds 4 MiB from 25 ms and exits at 50 ms holding it.
    /// The total peaks at 25 ms (2 + 5 + 1 + 4 = 12 MiB).
    pub(crate) fn three() -> Vec<Recording> {
        let mib = MIB as i64;
        open(&[
            process(10, "main", &[(10, 2 * mib)], 60),
            process(11, "a", &[(20, 5 * mib), (21, mib), (30, -5 * mib)], 40),
            process(12, "b", &[(25, 4 * mib)], 50),
        ])
    }

    /// A child's block allocated and freed within one microsecond (the resolution events are
    /// stored at) is a spike of the total: the peak counts it, with what the program holds.
    #[test]
    fn a_spike_within_one_microsecond_counts() {
        let mib = MIB as i64;
        let recs = open(&[
            process(10, "main", &[(10, 2 * mib)], 60),
            process(11, "a", &[(20, 3 * mib), (20, -3 * mib)], 40),
        ]);
        let refs: Vec<&Recording> = recs.iter().collect();
        assert_eq!(family_peak(&refs, 0, 60 * MS).unwrap(), (5 * MIB, 20 * MS));
    }

    #[test]
    fn a_process_holds_nothing_after_it_ended() {
        let recs = three();
        let refs: Vec<&Recording> = recs.iter().collect();
        let bands = family_heap(&refs, 0, 60 * MS, 60).unwrap();
        let at = |p: usize, ms: usize| bands[p][ms].last / MIB;
        assert_eq!((at(0, 5), at(0, 10), at(0, 59)), (0, 2, 2));
        assert_eq!((at(1, 20), at(1, 21), at(1, 30), at(1, 39)), (5, 6, 1, 1));
        assert_eq!(at(1, 40), 0, "ended at 40 ms");
        assert_eq!(bands[1][40].max, MIB, "its last bucket keeps what it held until it ended");
        assert_eq!(bands[1][41].max, 0);
        assert_eq!((at(2, 49), at(2, 50), bands[2][51].max), (4, 0, 0));
        assert_eq!(family_end(&refs), 60 * MS);
    }

    #[test]
    fn the_peak_of_the_total_is_found_to_the_nanosecond() {
        let recs = three();
        let refs: Vec<&Recording> = recs.iter().collect();
        assert_eq!(family_peak(&refs, 0, 60 * MS).unwrap(), (12 * MIB, 25 * MS));
        // Without B, the total peaks when A allocates its second block.
        assert_eq!(family_peak(&refs[..2], 0, 60 * MS).unwrap(), (8 * MIB, 21 * MS));
        // Within a window, and after A is gone.
        assert_eq!(family_peak(&refs, 31 * MS, 60 * MS).unwrap(), (7 * MIB, 31 * MS));
        assert_eq!(family_peak(&refs, 41 * MS, 60 * MS).unwrap(), (6 * MIB, 41 * MS));
        assert_eq!(family_peak(&refs, 0, 5 * MS).unwrap(), (0, 0), "nothing held yet");
        assert_eq!(family_peak(&refs, 9, 9).unwrap(), (0, 9), "an empty window");
    }

    #[test]
    fn one_process_peaks_as_it_says() {
        let recs = three();
        let a = &recs[1];
        assert_eq!(family_peak(&[a], 0, 60 * MS).unwrap(), (a.summary().peak_heap, 21 * MS));
        assert_eq!(family_peak(&[a], 45 * MS, 60 * MS).unwrap(), (0, 45 * MS), "ended");
    }

    #[test]
    fn a_short_spike_of_one_process_is_not_missed() {
        // A 1 µs spike of 50 MiB in the middle of a long run of two processes (event times are
        // kept to the microsecond: EVENT_TIME_QUANTUM_NS).
        let mib = MIB as i64;
        let spike = {
            let meta = Meta { pid: 20, ..Meta::default() };
            let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
            w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 20, name: "MainThread".into() });
            let f = w.intern_frame("spike", "work.py", 3);
            let s = w.intern_stack(StackId::ROOT, f);
            w.alloc(1_234_567_000, ThreadId(0), s, 0x10, 50 * MIB, AllocatorKind::Malloc).unwrap();
            w.free(1_234_568_000, ThreadId(0), 0x10, AllocatorKind::Malloc).unwrap();
            w.finish(ProcessEnd { time_ns: 3_000 * MS, exit_code: Some(0), signal: None }).unwrap()
        };
        let recs = open(&[process(10, "main", &[(10, 2 * mib)], 3_000), spike]);
        let refs: Vec<&Recording> = recs.iter().collect();
        assert_eq!(family_peak(&refs, 0, 3_000 * MS).unwrap(), (52 * MIB, 1_234_567_000));
    }
}
