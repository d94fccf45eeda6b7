//! The worker's analyses: the answer to each question a view asks about an open recording,
//! from `memlens-analysis` (aggregates when the recording has them, else a replay of its
//! events). Pure; tested natively on recordings written by `RecordingWriter`.

use memlens_analysis::{
    downsample, heap_timeline, insights, peak_in, rss_timeline, stack_totals, EventFilter,
    InsightOptions,
};
use memlens_format::{Recording, ThreadId};

use crate::protocol::{Answer, Request, Series};

/// Most buckets a timeline request gets (a very wide screen at 3x device pixels).
pub const MAX_BUCKETS: u32 = 16_384;

/// Recordings without aggregates (format 3) with up to this many events get an exact heap
/// line by replaying every event; bigger ones draw it from the periodic memory samples (which
/// carry the heap too) plus the exact peak, so a timeline does not wait for a full replay.
/// Counted in events, not bytes: the format compresses churn to well under a byte per event.
const EXACT_HEAP_MAX_EVENTS: u64 = 1_000_000;
/// Without a trailer the event count is unknown: fall back to the file size.
const EXACT_HEAP_MAX_FILE_BYTES: u64 = 2 << 20;

fn filter_of(thread: Option<u32>) -> EventFilter {
    thread.map_or_else(EventFilter::default, |t| EventFilter::thread(ThreadId(t)))
}

/// Answers `request` about `rec` (whose file is `size` bytes). Opening, refreshing and closing
/// are the worker's own business: they are answered with an error here.
pub fn answer(rec: &Recording, size: u64, request: &Request) -> Result<Answer, String> {
    match *request {
        Request::Totals { snapshot, thread, .. } => stack_totals(rec, snapshot, &filter_of(thread))
            .map(Answer::Totals)
            .map_err(|e| format!("Could not compute the flame graph: {e}")),
        Request::Timeline { t0, t1, buckets, thread, .. } => {
            timeline(rec, size, t0, t1, buckets.clamp(1, MAX_BUCKETS) as usize, thread)
                .map(Answer::Timeline)
                .map_err(|e| format!("Could not compute the heap timeline: {e}"))
        }
        Request::PeakIn { t0, t1, .. } => peak_in(rec, t0, t1)
            .map(|(bytes, time_ns)| Answer::Peak { bytes, time_ns })
            .map_err(|e| format!("Could not find the peak of the range: {e}")),
        Request::Insights { .. } => insights(rec, &InsightOptions::default())
            .map(Answer::Insights)
            .map_err(|e| format!("Could not look for findings: {e}")),
        Request::Open { .. }
        | Request::Refresh { .. }
        | Request::Close { .. }
        | Request::OpenProcess { .. }
        | Request::Processes { .. } => Err("not a question about a recording".into()),
        Request::FamilyTimeline { .. } => {
            Err("This question is about all processes together.".into())
        }
    }
}

/// Whether the heap line of the whole recording is replayed from its events: always from
/// aggregates, and for small recordings without them.
fn heap_is_exact(rec: &Recording, size: u64) -> bool {
    if rec.aggregates_missing().is_none() || rec.samples().is_empty() {
        return true;
    }
    match rec.indexed_event_count() {
        0 => size <= EXACT_HEAP_MAX_FILE_BYTES,
        events => events <= EXACT_HEAP_MAX_EVENTS,
    }
}

fn timeline(
    rec: &Recording,
    size: u64,
    t0: u64,
    t1: u64,
    n: usize,
    thread: Option<u32>,
) -> Result<Series, memlens_format::Error> {
    let t1 = t1.max(t0 + 1);
    let heap = if thread.is_some() || heap_is_exact(rec, size) {
        heap_timeline(rec, &filter_of(thread), t0, t1, n)?
    } else {
        let s = rec.summary();
        let mut points: Vec<(u64, u64)> =
            rec.samples().iter().map(|m| (m.time_ns, m.heap)).collect();
        let at = points.partition_point(|p| p.0 <= s.peak_heap_time_ns);
        points.insert(at, (s.peak_heap_time_ns, s.peak_heap));
        downsample(points, t0, t1, n)
    };
    Ok(Series { heap, rss: rss_timeline(rec, t0, t1, n) })
}

#[cfg(test)]
mod tests {
    use memlens_analysis::Snapshot;
    use memlens_format::{
        AllocatorKind, MemorySample, Meta, ProcessEnd, RecordingWriter, StackId, ThreadInfo,
    };

    use super::*;

    const MS: u64 = 1_000_000;

    /// Thread 0 allocates a 1 KiB block at `keep` every millisecond; thread 1 a 1 MiB block at
    /// `burst` at 5 ms that it frees at 5.5 ms: the peak is at 5 ms, and `keep`'s blocks are
    /// left at exit.
    fn recording() -> (Recording, StackId, StackId) {
        let (bytes, keep, burst) = recording_bytes();
        (Recording::from_vec(bytes).unwrap(), keep, burst)
    }

    fn recording_bytes() -> (Vec<u8>, StackId, StackId) {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        for (i, name) in ["MainThread", "worker"].into_iter().enumerate() {
            let id = ThreadId(i as u32);
            w.add_thread(ThreadInfo { id, os_tid: 10 + i as u64, name: name.into() });
        }
        let keep = w.intern_frame("keep", "app.py", 1);
        let keep = w.intern_stack(StackId::ROOT, keep);
        let burst = w.intern_frame("burst", "app.py", 2);
        let burst = w.intern_stack(StackId::ROOT, burst);
        let malloc = AllocatorKind::Malloc;
        for i in 0..10u64 {
            w.alloc(i * MS, ThreadId(0), keep, 0x1000 + i * 0x1000, 1024, malloc).unwrap();
            w.memory_sample(MemorySample { time_ns: i * MS, rss: 1 << 22, vms: 0, heap: 0 })
                .unwrap();
            if i == 5 {
                w.alloc(5 * MS, ThreadId(1), burst, 0x100_0000, 1 << 20, malloc).unwrap();
                w.free(5 * MS + MS / 2, ThreadId(1), 0x100_0000, malloc).unwrap();
            }
            w.flush().unwrap();
        }
        let end = ProcessEnd { time_ns: 10 * MS, exit_code: Some(0), signal: None };
        (w.finish(end).unwrap(), keep, burst)
    }

    fn totals(rec: &Recording, snapshot: Snapshot, thread: Option<u32>) -> Vec<(StackId, u64)> {
        let request = Request::Totals { rec: 0, snapshot, thread };
        match answer(rec, 0, &request).unwrap() {
            Answer::Totals(t) => t.stacks.iter().map(|(s, t)| (*s, t.bytes)).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn series(rec: &Recording, t0: u64, t1: u64, buckets: u32, thread: Option<u32>) -> Series {
        match answer(rec, 0, &Request::Timeline { rec: 0, t0, t1, buckets, thread }).unwrap() {
            Answer::Timeline(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flame_modes_answer_from_the_recording() {
        let (rec, keep, burst) = recording();
        assert_eq!(totals(&rec, Snapshot::AtPeak, None), [(burst, 1 << 20), (keep, 6 * 1024)]);
        assert_eq!(totals(&rec, Snapshot::AtEnd, None), [(keep, 10 * 1024)]);
        assert_eq!(totals(&rec, Snapshot::AtPeak, Some(0)), [(keep, 6 * 1024)]);
        let late = Snapshot::PeakInRange(6 * MS, 9 * MS);
        assert_eq!(totals(&rec, late, None), [(keep, 10 * 1024)]);
    }

    #[test]
    fn timelines_cover_the_window_asked_for() {
        let (rec, _, _) = recording();
        let s = series(&rec, 4 * MS, 6 * MS, 4, None);
        assert_eq!(s.heap.len(), 4);
        assert_eq!((s.heap[0].t0, s.heap[3].t1), (4 * MS, 6 * MS));
        assert_eq!(s.heap[2].max, 6 * 1024 + (1 << 20), "the burst is in [5 ms, 5.5 ms)");
        assert_eq!(s.rss[0].max, 1 << 22);
        let main = series(&rec, 0, 10 * MS + 1, 10, Some(0));
        assert_eq!(main.heap.iter().map(|b| b.max).max(), Some(10 * 1024));
        assert_eq!(series(&rec, 0, 1, u32::MAX, None).heap.len(), MAX_BUCKETS as usize);
    }

    #[test]
    fn peak_of_a_range_and_insights() {
        let (rec, _, _) = recording();
        let peak = answer(&rec, 0, &Request::PeakIn { rec: 0, t0: 0, t1: 10 * MS }).unwrap();
        assert_eq!(peak, Answer::Peak { bytes: 6 * 1024 + (1 << 20), time_ns: 5 * MS });
        let found = answer(&rec, 0, &Request::Insights { rec: 0 });
        assert!(matches!(found, Ok(Answer::Insights(_))), "{found:?}");
        assert!(answer(&rec, 0, &Request::Close { rec: 0 }).is_err());
    }

    #[test]
    fn a_followed_recording_ends_with_the_closed_files_figures() {
        use std::sync::Arc;

        use memlens_format::ByteSource;

        let (closed, _, _) = recording();
        let (bytes, _, _) = recording_bytes();
        let grown = |n: usize| bytes[..n].to_vec();
        let held = Arc::new(crate::cached_source::Held::new(grown(bytes.len() / 3), |_| {}));
        let mut rec = Recording::open_source(Arc::clone(&held) as Arc<dyn ByteSource>).unwrap();
        assert!(!rec.has_trailer());
        for n in [bytes.len() / 2, bytes.len() * 3 / 4, bytes.len()] {
            held.replace(grown(n));
            assert!(rec.refresh().unwrap(), "grew to {n}");
        }
        assert!(rec.has_trailer());
        assert_eq!(rec.aggregates_missing(), None);
        assert_eq!(rec.summary(), closed.summary());
        for snapshot in [Snapshot::AtPeak, Snapshot::AtEnd, Snapshot::TotalAllocated] {
            assert_eq!(totals(&rec, snapshot, None), totals(&closed, snapshot, None));
        }
    }

    #[test]
    fn the_page_side_directory_names_what_the_answers_count() {
        let (rec, keep, _) = recording();
        let page: Recording = postcard::from_bytes(&postcard::to_allocvec(&rec).unwrap()).unwrap();
        assert_eq!(page.summary(), rec.summary());
        assert_eq!(page.threads(), rec.threads());
        let frame = page.stack(keep).and_then(|n| page.frame(n.frame)).unwrap();
        assert_eq!(page.string(frame.function), "keep");
    }
}
