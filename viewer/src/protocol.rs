//! The typed messages between the page and its worker (see `worker.rs` and `client.rs`).
//!
//! The page holds only a recording's directory (tables, samples, markers, censuses: what
//! names things); the worker holds its source and answers every question that reads events
//! or aggregates. Each message is a postcard-encoded value in a `Uint8Array`; a request that
//! opens a `Blob` (a dropped file, or bytes the page holds) carries it beside the bytes.
//!
//! Every request has an id and names the view it is for: a view only wants the answer to
//! its latest request ([`Requests`]), and the worker skips a queued request when a newer one
//! for the same view is queued behind it ([`take_next`]). Pure; tested natively.

use std::collections::{HashMap, VecDeque};

use memlens_analysis::{Bucket, Insight, Snapshot, StackTotals};
use serde::{Deserialize, Serialize};

/// A recording opened in the worker, named by the page.
pub type RecId = u32;

/// Where the worker reads a recording from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceSpec {
    /// The `Blob` posted beside the request (a dropped or picked `File`, or a report's bytes).
    Blob,
    /// An absolute URL, read with HTTP range requests.
    Url(String),
}

/// What the page asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Open a recording as `rec`.
    Open { rec: RecId, source: SourceSpec },
    /// Read what was appended to a recording being written.
    Refresh { rec: RecId },
    /// Forget a recording.
    Close { rec: RecId },
    /// Memory by stack for a snapshot, of one thread's allocations or all.
    Totals { rec: RecId, snapshot: Snapshot, thread: Option<u32> },
    /// The heap and RSS over `[t0, t1)` in `buckets` buckets.
    Timeline { rec: RecId, t0: u64, t1: u64, buckets: u32, thread: Option<u32> },
    /// The heap's high-water mark within `[t0, t1]`.
    PeakIn { rec: RecId, t0: u64, t1: u64 },
    /// The findings of the insights panel.
    Insights { rec: RecId },
    /// The processes the recording holds (the program first), for the process picker.
    Processes { rec: RecId },
    /// Open process `process` of the recording `file` (`None`: all of them together) as
    /// `rec`: the questions about `rec` are then about that process, or all processes.
    OpenProcess { rec: RecId, file: RecId, process: Option<u32> },
    /// Each process's heap over `[t0, t1)` in `buckets` buckets, and the highest point of
    /// their sum in it; `rec` is all processes of a file (`OpenProcess` with `None`).
    FamilyTimeline { rec: RecId, t0: u64, t1: u64, buckets: u32 },
}

impl Request {
    /// Queued requests run highest priority first: what the first paint shows (the flame graph,
    /// the timeline) before the findings panel, which sits above them but is read after.
    pub fn priority(&self) -> u8 {
        match self {
            Request::Insights { .. } | Request::Processes { .. } => 0,
            _ => 1,
        }
    }

    /// The recording the request is about.
    pub fn rec(&self) -> RecId {
        match *self {
            Request::Open { rec, .. }
            | Request::Refresh { rec }
            | Request::Close { rec }
            | Request::Totals { rec, .. }
            | Request::Timeline { rec, .. }
            | Request::PeakIn { rec, .. }
            | Request::Insights { rec }
            | Request::Processes { rec }
            | Request::OpenProcess { rec, .. }
            | Request::FamilyTimeline { rec, .. } => rec,
        }
    }
}

/// A recording's directory as the worker sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// The `memlens_format::Recording`, postcard-encoded (its source stays in the worker).
    pub directory: Vec<u8>,
    /// Bytes of the file.
    pub size: u64,
    /// About where it was read from, for a warning banner (a server without range requests).
    pub warnings: Vec<String>,
    /// Whether the server answers range requests (only what a view needs is downloaded).
    pub ranged: bool,
}

/// The heap and RSS of one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    pub heap: Vec<Bucket>,
    pub rss: Vec<Bucket>,
}

/// One process of a recording, as the process picker lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Its number in the file: 0 for the program, then 1, 2, ... in the order they started.
    pub number: u32,
    pub pid: u32,
    /// Its parent's pid (none for the program).
    pub ppid: Option<u32>,
    pub command_line: Vec<String>,
    /// When it started and ended, on the program's clock (ns).
    pub started_ns: u64,
    pub ended_ns: u64,
    pub peak_heap: u64,
    pub peak_heap_time_ns: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    /// How it ended, in words ("exited with code 0", "killed by signal 9", ...).
    pub ended: String,
}

/// Each process's heap over one window, and the highest point of their sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilySeries {
    /// One series per process, in the order of the process list.
    pub heaps: Vec<Vec<Bucket>>,
    /// The highest total in the window: (bytes, time).
    pub peak: (u64, u64),
}

/// What the worker answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Opened(Opened),
    /// After a refresh: the new directory when the recording grew.
    Refreshed(Option<Opened>),
    Closed,
    Totals(StackTotals),
    Timeline(Series),
    Peak {
        bytes: u64,
        time_ns: u64,
    },
    Insights(Vec<Insight>),
    Processes(Vec<ProcessInfo>),
    Family(FamilySeries),
    /// Not computed: a newer request for the same view was queued behind it.
    Superseded,
}

/// A message to the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToWorker {
    pub id: u64,
    /// The view the answer is for (empty: never superseded).
    pub view: String,
    pub request: Request,
}

/// A message from the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker has started and takes requests.
    Ready,
    /// Request `id` has been running for a while: `done` of `total` bytes read.
    Progress { id: u64, label: String, done: u64, total: u64 },
    /// The answer to request `id`, or an error sentence for the page.
    Answer { id: u64, result: Result<Answer, String> },
}

/// Encodes a message.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these types into a Vec cannot fail (no maps with non-string keys, no
    // unsupported types); an empty message would be rejected by `decode` on the other side.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes a message.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(bytes)
        .map_err(|e| format!("a garbled message between page and worker ({e})"))
}

/// The page's side of request ids: which request is the latest of each view.
#[derive(Debug, Default)]
pub struct Requests {
    next: u64,
    latest: HashMap<String, u64>,
}

impl Requests {
    /// A new id for a request of `view`; earlier requests of that view become stale.
    pub fn issue(&mut self, view: &str) -> u64 {
        self.next += 1;
        if !view.is_empty() {
            self.latest.insert(view.to_string(), self.next);
        }
        self.next
    }

    /// Whether the answer to `id` is still wanted by `view`.
    pub fn is_current(&self, view: &str, id: u64) -> bool {
        view.is_empty() || self.latest.get(view) == Some(&id)
    }
}

/// The worker's side: takes the next request to run from `queue` (the first of the highest
/// priority), and the ones it dropped because a newer request for the same view is queued
/// behind them (they are answered [`Answer::Superseded`]). Opening, refreshing and closing
/// have the highest priority, so the requests about one recording follow them.
pub fn take_next<T>(
    queue: &mut VecDeque<T>,
    view: impl Fn(&T) -> &str,
    priority: impl Fn(&T) -> u8,
) -> (Option<T>, Vec<T>) {
    let mut skipped = Vec::new();
    let mut i = 0;
    while i < queue.len() {
        let v = view(&queue[i]);
        if !v.is_empty() && queue.iter().skip(i + 1).any(|later| view(later) == v) {
            skipped.extend(queue.remove(i));
        } else {
            i += 1;
        }
    }
    let best = queue.iter().map(&priority).max();
    let at = queue.iter().position(|j| Some(priority(j)) == best);
    (at.and_then(|at| queue.remove(at)), skipped)
}

#[cfg(test)]
mod tests {
    use memlens_analysis::InsightKind;
    use memlens_format::{StackId, Totals};

    use super::*;

    fn roundtrip<T: Serialize + for<'a> Deserialize<'a> + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = encode(&v);
        assert!(!bytes.is_empty());
        assert_eq!(decode::<T>(&bytes).unwrap(), v);
    }

    #[test]
    fn every_message_survives_encoding() {
        roundtrip(ToWorker {
            id: 7,
            view: "flame:1".into(),
            request: Request::Totals {
                rec: 1,
                snapshot: Snapshot::PeakInRange(10, 20),
                thread: Some(2),
            },
        });
        roundtrip(ToWorker {
            id: 8,
            view: String::new(),
            request: Request::Open { rec: 2, source: SourceSpec::Url("http://x/a.memlens".into()) },
        });
        roundtrip(FromWorker::Progress { id: 3, label: "Reading".into(), done: 5, total: 9 });
        let totals = StackTotals {
            stacks: vec![(StackId(4), Totals { bytes: 100, count: 2 })],
            total: Totals { bytes: 100, count: 2 },
        };
        roundtrip(FromWorker::Answer { id: 9, result: Ok(Answer::Totals(totals)) });
        let bucket = Bucket { t0: 0, t1: 10, min: 1, max: 5, last: 3 };
        roundtrip(FromWorker::Answer {
            id: 10,
            result: Ok(Answer::Timeline(Series { heap: vec![bucket], rss: vec![bucket] })),
        });
        let insight = Insight {
            kind: InsightKind::TemporaryChurn,
            message: "temporary churn: ...".into(),
            bytes: 1,
            stack: Some(StackId(1)),
            subject: None,
            span_ns: Some((1, 2)),
        };
        roundtrip(FromWorker::Answer { id: 11, result: Ok(Answer::Insights(vec![insight])) });
        roundtrip(FromWorker::Answer { id: 12, result: Err("corrupt event chunk".into()) });
        let info = ProcessInfo {
            number: 3,
            pid: 1234,
            ppid: Some(1200),
            command_line: vec!["python3".into(), "-c".into(), "pass".into()],
            started_ns: 5,
            ended_ns: 9,
            peak_heap: 1 << 20,
            peak_heap_time_ns: 7,
            alloc_count: 2,
            alloc_bytes: 3 << 20,
            ended: "exited with code 0".into(),
        };
        roundtrip(FromWorker::Answer { id: 14, result: Ok(Answer::Processes(vec![info])) });
        let series = FamilySeries { heaps: vec![vec![bucket], vec![bucket]], peak: (5, 3) };
        roundtrip(FromWorker::Answer { id: 15, result: Ok(Answer::Family(series)) });
        roundtrip(ToWorker {
            id: 16,
            view: String::new(),
            request: Request::OpenProcess { rec: 4, file: 2, process: None },
        });
        roundtrip(FromWorker::Answer {
            id: 13,
            result: Ok(Answer::Refreshed(Some(Opened {
                directory: vec![1, 2, 3],
                size: 3,
                warnings: vec!["w".into()],
                ranged: false,
            }))),
        });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<FromWorker>(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode::<ToWorker>(&[]).is_err());
    }

    #[test]
    fn only_the_latest_request_of_a_view_is_current() {
        let mut r = Requests::default();
        let a = r.issue("flame:1");
        let t = r.issue("timeline:1");
        assert!(r.is_current("flame:1", a));
        let b = r.issue("flame:1");
        assert!(!r.is_current("flame:1", a), "a newer flame request makes the first stale");
        assert!(r.is_current("flame:1", b));
        assert!(r.is_current("timeline:1", t), "other views are not affected");
        let open = r.issue("");
        assert!(r.is_current("", open), "requests without a view are always wanted");
        assert!(a < t && t < b && b < open, "ids increase");
    }

    #[test]
    fn the_worker_skips_requests_a_newer_one_of_the_same_view_replaces() {
        let mut queue: VecDeque<(u64, &str)> =
            [(1, "flame"), (2, ""), (3, "timeline"), (4, "flame"), (5, ""), (6, "flame")].into();
        fn view<'a>(j: &'a (u64, &'static str)) -> &'a str {
            j.1
        }
        let same = |_: &(u64, &str)| 1;
        let (next, skipped) = take_next(&mut queue, view, same);
        assert_eq!(next, Some((2, "")));
        assert_eq!(skipped, [(1, "flame"), (4, "flame")], "6 replaces 1 and 4");
        assert_eq!(take_next(&mut queue, view, same), (Some((3, "timeline")), vec![]));
        let (next, _) = take_next(&mut queue, view, same);
        assert_eq!(next, Some((5, "")), "views without a name are never replaced");
        assert_eq!(take_next(&mut queue, view, same), (Some((6, "flame")), vec![]));
        assert_eq!(take_next(&mut queue, view, same), (None, vec![]));
    }

    #[test]
    fn findings_wait_for_the_views_of_the_first_paint() {
        let insights = Request::Insights { rec: 1 };
        let flame = Request::Totals { rec: 1, snapshot: Snapshot::AtPeak, thread: None };
        assert!(insights.priority() < flame.priority());
        let mut queue: VecDeque<(u64, Request)> =
            [(1, insights), (2, flame.clone()), (3, Request::Close { rec: 1 })].into();
        let mut next = || take_next(&mut queue, |_| "", |j| j.1.priority()).0.map(|j| j.0);
        assert_eq!((next(), next(), next(), next()), (Some(2), Some(3), Some(1), None));
    }
}
