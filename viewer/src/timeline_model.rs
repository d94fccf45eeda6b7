//! The memory timeline's model: the worker question for a window's heap and RSS series, and
//! the series, markers, gc runs, censuses and spans of that window as the timelines draw
//! them (the recording's own and the compare mode's).

use memlens_analysis::Bucket;
use memlens_format::Recording;

use crate::load::Loaded;
use crate::plot::buckets_for;
use crate::protocol::{Answer, Request, Series};
use crate::timeline_spans::SpanBars;
use crate::use_worker::Query;

/// The series of one window of a recording, as drawn.
pub struct TimelineData {
    /// The window: `[t0, t1)` in ns.
    pub t0: u64,
    pub t1: u64,
    pub heap: Vec<Bucket>,
    pub rss: Vec<Bucket>,
    /// The heap's highest point in the window: (bytes, time).
    pub peak_heap: (u64, u64),
    /// Top of the y axis.
    pub y_max: u64,
    /// `memlens.mark()` labels: (time, label), in time order.
    pub markers: Vec<(u64, String)>,
    /// Garbage collector runs: (start time, generation), in time order.
    pub gcs: Vec<(u64, u8)>,
    /// Object censuses: (time, title), in the recording's order (their index is the objects
    /// panel's).
    pub censuses: Vec<(u64, String)>,
    /// Spans, laid out in lanes.
    pub spans: SpanBars,
}

impl TimelineData {
    /// The window `[t0, t1)` of `rec` from the worker's `series`. `filtered`: the heap is one
    /// thread's, so the recording's own peak does not apply to it.
    pub fn new(rec: &Recording, series: &Series, (t0, t1): (u64, u64), filtered: bool) -> Self {
        let s = rec.summary();
        let inside = |t: u64| t >= t0 && t < t1;
        let peak_heap = if !filtered && inside(s.peak_heap_time_ns) {
            (s.peak_heap, s.peak_heap_time_ns)
        } else {
            series.heap.iter().max_by_key(|b| b.max).map_or((0, 0), |b| (b.max, b.t0))
        };
        let y_max = series.heap.iter().chain(&series.rss).map(|b| b.max).max().unwrap_or(0);
        TimelineData {
            t0,
            t1,
            heap: series.heap.clone(),
            rss: series.rss.clone(),
            peak_heap,
            y_max: y_max.max(1),
            markers: rec.markers().iter().map(|m| (m.time_ns, m.label.clone())).collect(),
            gcs: rec.gc_events().iter().map(|g| (g.time_ns, g.generation)).collect(),
            censuses: rec
                .censuses()
                .iter()
                .map(|c| (c.time_ns, memlens_analysis::census_title(c)))
                .collect(),
            spans: SpanBars::of(rec),
        }
    }
}

/// The worker question for the heap and RSS of `loaded` over `[t0, t1)`, `width` CSS px wide.
pub fn series_query(
    view: &str,
    loaded: &Loaded,
    generation: u32,
    (t0, t1): (u64, u64),
    width: f64,
    thread: Option<u32>,
) -> Option<Query> {
    (width > 0.0).then(|| Query {
        view: format!("{view}:{}", loaded.rec),
        request: Request::Timeline { rec: loaded.rec, t0, t1, buckets: buckets_for(width), thread },
        generation,
    })
}

/// The series in a worker answer.
pub fn series_of(answer: &Answer) -> Result<&Series, String> {
    match answer {
        Answer::Timeline(s) => Ok(s),
        other => Err(format!("unexpected answer {other:?}")),
    }
}
