//! Time series for the timeline: the heap and RSS in buckets that keep each bucket's lowest
//! and highest value (see [`crate::buckets`]), so a peak never disappears at any zoom.

use std::sync::Arc;

use crate::buckets::{downsample, Bucket};
use crate::query::{first_ending_at_or_after, first_starting_after, live_before};
use crate::{Error, EventFilter, Interval, Op, Recording};

/// A window of at most this many base intervals is drawn from its events, exactly.
const REPLAY_INTERVALS: usize = 16;
/// Otherwise from pyramid nodes of the finest level with at most this many per bucket.
const NODES_PER_BUCKET: usize = 4;

/// Process RSS over `[t0, t1)` in `n` buckets.
pub fn rss_timeline(rec: &Recording, t0: u64, t1: u64, n: usize) -> Vec<Bucket> {
    downsample(rec.samples().iter().map(|s| (s.time_ns, s.rss)), t0, t1, n)
}

/// The traced heap over `[t0, t1)` in `n` buckets (min/max per bucket, so the peak shows),
/// for the allocations of the threads `filter` admits.
///
/// From the aggregates, a window of a few base intervals is replayed exactly; a wider one is
/// drawn from the pyramid level whose nodes are about a bucket wide: each node gives its
/// lowest and highest point (unfiltered) or its end (with a thread filter).
pub fn heap_timeline(
    rec: &Recording,
    filter: &EventFilter,
    t0: u64,
    t1: u64,
    n: usize,
) -> Result<Vec<Bucket>, Error> {
    if rec.aggregates_missing().is_some() {
        return crate::replay::heap_timeline(rec, filter, t0, t1, n);
    }
    let mut a = first_ending_at_or_after(rec, t0);
    let b = first_starting_after(rec, t1.saturating_sub(1)).max(a);
    let filtered = filter.threads.is_some();
    let replay = b - a <= REPLAY_INTERVALS && !rec.aggregate_only();
    let per_node = (b - a).div_ceil(n.max(1) * NODES_PER_BUCKET).max(1) as u64;
    let mut level = 0u8;
    while !replay && (Interval::span(level) < per_node || (filtered && level == 0)) {
        level += 1;
    }
    // Nodes start at multiples of their span.
    a -= a % Interval::span(level) as usize;
    let start = |rec: &Recording| -> Result<u64, Error> {
        if !filtered {
            // After the last interval the heap is what it was at its end.
            let start = rec.base_shape(a).map(|s| s.heap_start);
            let after_last = || rec.base_shapes().last().map_or(0, |s| s.heap_end);
            return Ok(start.unwrap_or_else(after_last));
        }
        let live = live_before(rec, a)?;
        Ok(live
            .iter()
            .filter(|((thread, _, _), _)| filter.admits_thread(*thread))
            .fold(0u64, |sum, (_, &(bytes, _))| sum.wrapping_add(bytes as u64)))
    };
    let mut points = vec![(0, start(rec)?)];
    if replay {
        let mut heap = points[0].1;
        for k in a..b {
            let mut events = Vec::new();
            rec.decode_event_chunk(k, &mut events)?;
            for e in events.iter().filter(|e| e.kind.counts_in_heap()) {
                let admitted = filter.admits_thread(e.thread);
                if admitted {
                    heap = match e.op {
                        Op::Alloc => heap.wrapping_add(e.size),
                        Op::Free => heap.wrapping_sub(e.size),
                    };
                }
                // A re-created object's block leaves its owner and joins its new one at once
                // (with a thread filter it may leave or join the threads looked at): one point,
                // after both halves.
                let recreating = e.is_recreation() && e.op == Op::Free;
                if (admitted && !recreating) || (e.is_recreation() && e.op == Op::Alloc) {
                    points.push((e.time_ns, heap));
                }
            }
        }
        return Ok(downsample(points, t0, t1, n));
    }
    let mut heap = points[0].1;
    for node in nodes_over(rec, level, a, b, filtered)? {
        if filtered {
            for e in node.entries.iter().filter(|e| filter.admits_thread(e.thread)) {
                heap = heap.wrapping_add(e.net().0 as u64);
            }
            points.push((node.t_last, heap));
            continue;
        }
        let (low, high) = ((node.t_min, node.heap_min), (node.t_max, node.heap_max));
        let (first, second) = if low.0 <= high.0 { (low, high) } else { (high, low) };
        points.extend([first, second, (node.t_last, node.heap_end)]);
    }
    Ok(downsample(points, t0, t1, n))
}

/// The nodes of `level` over base intervals `a..b` in order, with base intervals for the
/// stretches no node of that level covers yet (read whole when `entries`, else their figures).
fn nodes_over(
    rec: &Recording,
    level: u8,
    a: usize,
    b: usize,
    entries: bool,
) -> Result<Vec<Arc<Interval>>, Error> {
    let base = |k: usize| -> Result<Arc<Interval>, Error> {
        match (entries, rec.base_shape(k)) {
            (false, Some(shape)) => Ok(Arc::new(shape.clone())),
            _ => rec.node(0, k as u32),
        }
    };
    let span = Interval::span(level) as usize;
    let nodes = rec.level(level);
    let mut out = Vec::new();
    let mut k = a;
    while k < b {
        let i = k / span;
        if level > 0 && i < nodes.len() {
            out.push(Arc::clone(&nodes[i]));
            k = (i + 1) * span;
        } else {
            out.push(base(k)?);
            k += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use memlens_format::{
        AllocatorKind, Meta, ProcessEnd, RecordingWriter, StackId, ThreadId, ThreadInfo,
    };

    use super::*;

    /// Regression: a window after a recording's last event started from an empty heap (the
    /// heap at the start of the interval after the last, which does not exist).
    #[test]
    fn a_window_after_the_last_event_holds_the_heap_at_the_end() {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.add_thread(ThreadInfo { id: ThreadId(0), os_tid: 1, name: "MainThread".into() });
        let f = w.intern_frame("keep", "app.py", 1);
        let s = w.intern_stack(StackId::ROOT, f);
        w.alloc(1_000, ThreadId(0), s, 0x10, 4096, AllocatorKind::Malloc).unwrap();
        w.flush().unwrap();
        let bytes = w.finish(ProcessEnd { time_ns: 10_000, ..ProcessEnd::default() }).unwrap();
        let rec = Recording::from_vec(bytes).unwrap();
        assert!(rec.aggregates_missing().is_none());
        let all = EventFilter::default();
        for filter in [all.clone(), EventFilter::thread(ThreadId(0))] {
            let late = heap_timeline(&rec, &filter, 5_000, 6_000, 2).unwrap();
            assert_eq!(late.iter().map(|b| (b.min, b.last)).collect::<Vec<_>>(), [(4096, 4096); 2]);
            let replayed = crate::replay::heap_timeline(&rec, &filter, 5_000, 6_000, 2).unwrap();
            assert_eq!(late, replayed);
        }
    }
}
