//! `memlens check`: checks every chunk of a recording (its checksum, and the events decoded)
//! and its aggregates against its events, so a damaged or crafted file is found before anyone
//! trusts its figures. A damaged chunk is listed with the other problems, and the rest of the
//! file is checked around it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::Result;
use memlens_analysis::{descendants, format_bytes};
use memlens_format::{Aggregator, DamagedChunk, Event, Interval, Recording, Summary, Tag};

use crate::load::{damaged_chunks, open};
use crate::term::{self, Style};

/// Arguments of `memlens check`.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:
    memlens check out.memlens     # exit 0: consistent; 1: problems (listed); 2: unreadable")]
pub struct CheckArgs {
    /// The recording to check.
    pub file: PathBuf,
}

/// Disagreements are listed up to this many.
const MAX_LISTED: usize = 20;

pub fn run(args: CheckArgs) -> Result<i32> {
    let opened = open(&args.file)?;
    let rec = &opened.rec;
    opened.progress.phase("checking every chunk");
    // Every chunk's checksum first: a damaged chunk is a problem of a file that opens, listed
    // with the others, and the rest of the file is checked around it.
    let damaged = damaged_chunks(&args.file, rec)?;
    let Found { mut problems, mut notes, intervals, events } = check(rec, &damaged)?;
    // Cut between two chunks, the file reads whole up to there, but its end never came (a
    // run killed with its recorder, or a file still being written).
    if !rec.is_complete() && rec.truncation().is_none() {
        problems.push(
            "the file ends without its trailer: the recording was cut short between two \
             chunks (or is still being written)"
                .to_owned(),
        );
    }
    // The recordings of the processes the program started, each checked the same way.
    let family = descendants(rec);
    for p in &family {
        let who = format!("process {} (pid {})", p.number, p.rec.meta().pid);
        // A child's damaged chunk is a problem of the file, which reads otherwise.
        match check(&p.rec, &[]) {
            Ok(found) => {
                problems.extend(found.problems.into_iter().map(|f| format!("{who}: {f}")));
                notes.extend(found.notes.into_iter().map(|f| format!("{who}: {f}")));
            }
            Err(e) => problems.push(format!("{who}: {e:#}")),
        }
    }
    for n in rec.processes().into_iter().filter(|n| family.iter().all(|p| p.number != *n)) {
        if let Err(e) = rec.open_process(n) {
            problems.push(format!("process {n}: its recording cannot be opened: {e}"));
        }
    }
    drop(opened.progress);
    let name = args.file.display();
    let mut out = term::stdout();
    if problems.is_empty() {
        write!(out, "{name}: ")?;
        out.paint(Style::Good, "OK")?;
        let others = match family.len() {
            0 => String::new(),
            n => format!("; and the recordings of {n} other processes"),
        };
        writeln!(
            out,
            " (format {}, {events} events in {} chunks, {intervals} intervals{}{}{others})",
            rec.format_version(),
            rec.event_chunk_count(),
            if rec.aggregate_only() { "" } else { " agree with them" },
            if rec.has_trailer() { ", and so does the trailer's summary" } else { "" }
        )?;
        let file_len = std::fs::metadata(&args.file)?.len().max(1);
        let aggregates =
            (0..rec.base_count()).filter_map(|i| rec.interval_chunk(i)).map(|c| c.len).sum::<u64>()
                + rec.digest_len();
        writeln!(
            out,
            "  aggregates: {} ({:.1}% of the file's {})",
            format_bytes(aggregates),
            100.0 * aggregates as f64 / file_len as f64,
            format_bytes(file_len)
        )?;
        return Ok(0);
    }
    write!(out, "{name}: ")?;
    out.paint_line(Style::Bad, &format!("{} problem(s)", problems.len()))?;
    for p in problems.iter().take(MAX_LISTED) {
        writeln!(out, "  - {p}")?;
    }
    if problems.len() > MAX_LISTED {
        writeln!(out, "  ... and {} more", problems.len() - MAX_LISTED)?;
    }
    for n in &notes {
        writeln!(out, "  not checked: {n}")?;
    }
    Ok(1)
}

/// What checking one recording found.
struct Found {
    problems: Vec<String>,
    /// What could not be checked, because of the problems.
    notes: Vec<String>,
    intervals: usize,
    events: u64,
}

/// What is wrong with one recording (one process's), given the chunks of its file that fail
/// their checksum (`damaged`, found by [`damaged_chunks`]).
fn check(rec: &Recording, damaged: &[DamagedChunk]) -> Result<Found> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if let Some(t) = rec.truncation() {
        problems.push(if rec.has_trailer() {
            format!("a damaged chunk at byte {}: {}; reading stopped there", t.offset, t.reason)
        } else {
            format!("the file is cut short at byte {}: {}", t.offset, t.reason)
        });
    }
    for d in damaged {
        problems.push(format!("damaged {} at byte {}: {}", d.what(), d.offset, d.reason));
    }
    // The first event chunk that cannot be decoded: past it, the heap is unknown, and what was
    // built from the events cannot be compared with the file's aggregates and summary.
    let mut broken = None;
    let (intervals, events) = match rec.aggregates_missing() {
        Some(why) => {
            problems.push(format!("no usable aggregates: {why}"));
            (0, replay_all(rec, damaged, &mut problems, &mut broken))
        }
        None => check_intervals(rec, damaged, &mut problems, &mut broken)?,
    };
    // A damaged chunk of the directory makes its gathered copy differ: that is the damage,
    // listed above, not a second problem.
    let directory_damaged =
        damaged.iter().any(|d| !matches!(d.tag, Some(Tag::Events | Tag::Intervals)));
    if !directory_damaged && rec.gathered_agrees()? == Some(false) {
        problems.push("the directory gathered at the end differs from the chunks it copies".into());
    }
    // The trailer's summary against what the events say, and what the aggregates say.
    let mut sources = Vec::new();
    match broken {
        _ if rec.aggregate_only() => {}
        None => sources.push(("the events", rec.replay_summary()?)),
        Some(k) => notes.push(format!(
            "the events from event chunk {k} on (of {}) against the aggregates and the \
             trailer's summary: they cannot be replayed past the damage",
            rec.event_chunk_count()
        )),
    }
    if rec.aggregates_missing().is_none() {
        match rec.aggregates_summary() {
            Ok(summary) => sources.push(("the aggregates", summary)),
            Err(e) => problems.push(format!("the aggregates cannot be summed: {e}")),
        }
    }
    if rec.has_trailer() {
        for (source, summary) in &sources {
            for (field, in_file, other) in summary_fields(rec.summary(), summary) {
                if in_file != other {
                    problems.push(format!(
                        "the trailer says {field} is {in_file}, {source} say {other}"
                    ));
                }
            }
        }
    }
    Ok(Found { problems, notes, intervals, events })
}

/// Notes that event chunk `k` of `rec` does not decode (`e`), unless it is one of the
/// `damaged` chunks already listed; and that the events break there, if they did not before.
fn undecodable(
    rec: &Recording,
    k: usize,
    e: &memlens_format::Error,
    damaged: &[DamagedChunk],
    problems: &mut Vec<String>,
    broken: &mut Option<usize>,
) {
    let offset = rec.event_chunk(k).map(|c| c.offset);
    if !damaged.iter().any(|d| Some(d.offset) == offset) {
        problems.push(format!("event chunk {k}: {e}"));
    }
    broken.get_or_insert(k);
}

/// Decodes every event chunk (checking each, and going on past one that fails); returns the
/// number of events decoded.
fn replay_all(
    rec: &Recording,
    damaged: &[DamagedChunk],
    problems: &mut Vec<String>,
    broken: &mut Option<usize>,
) -> u64 {
    let mut n = 0u64;
    let mut events = Vec::new();
    for k in 0..rec.event_chunk_count() {
        events.clear();
        match rec.decode_event_chunk(k, &mut events) {
            Ok(()) => n += events.len() as u64,
            Err(e) => undecodable(rec, k, &e, damaged, problems, broken),
        }
    }
    n
}

/// Rebuilds every base interval from its events (decoded on a second thread while this one
/// aggregates) and every node above from them, and compares them with the file's. An event
/// chunk that does not decode is a problem, and the intervals from it on are not compared (the
/// heap past it is unknown); the chunks after it are still decoded. Returns (intervals,
/// events).
fn check_intervals(
    rec: &Recording,
    damaged: &[DamagedChunk],
    problems: &mut Vec<String>,
    broken: &mut Option<usize>,
) -> Result<(usize, u64)> {
    let n = rec.base_count();
    let with_events = rec.event_chunk_count().min(n);
    let mut agg = Aggregator::reading(rec);
    let mut upper: Vec<Interval> = Vec::new();
    let mut count = 0u64;
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = mpsc::sync_channel::<Result<Vec<Event>, memlens_format::Error>>(4);
        s.spawn(move || {
            for k in 0..with_events {
                let mut events = Vec::new();
                let result = rec.decode_event_chunk(k, &mut events).map(|()| events);
                if tx.send(result).is_err() {
                    break;
                }
            }
        });
        for (k, events) in rx.iter().enumerate() {
            let events = match events {
                Ok(events) => events,
                Err(e) => {
                    undecodable(rec, k, &e, damaged, problems, broken);
                    continue;
                }
            };
            count += events.len() as u64;
            if broken.is_some() {
                continue;
            }
            for e in &events {
                agg.event(e);
            }
            let chunk = rec.event_chunk(k).copied().unwrap_or_default();
            let (first, last) = match (events.first(), events.last()) {
                (Some(a), Some(b)) => (a.time_ns, b.time_ns),
                _ => (chunk.first_time_ns, chunk.last_time_ns),
            };
            let (base, up) = agg.cut(first, last);
            upper.extend(up);
            match rec.node(0, k as u32) {
                Ok(node) if *node == base => {}
                Ok(node) => problems.push(differs(&format!("base interval {k}"), &node, &base)),
                Err(e) => problems.push(format!("base interval {k}: {e}")),
            }
        }
        Ok(())
    })?;
    if with_events < n && rec.event_chunk_count() > 0 {
        problems.push(format!("{} intervals have no events", n - with_events));
    }
    // Nodes above the base: rebuilt from the events when there are any, else from the base
    // intervals themselves (an aggregate-only recording).
    if rec.event_chunk_count() == 0 {
        let mut builder = memlens_format::PyramidBuilder::default();
        for k in 0..n {
            match rec.node(0, k as u32) {
                Ok(base) => upper.extend(builder.add(&base)),
                Err(e) => problems.push(format!("base interval {k}: {e}")),
            }
        }
    }
    for node in &upper {
        let what = format!("node {} of level {}", node.index, node.level);
        match rec.node(node.level, node.index) {
            Ok(stored) if *stored == *node => {}
            Ok(stored) => problems.push(differs(&what, &stored, node)),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    for (k, shape) in rec.base_shapes().iter().enumerate() {
        if rec.node(0, k as u32).is_ok_and(|node| *shape != node.figures()) {
            problems.push(format!("the digest's figures of base interval {k} differ"));
        }
    }
    Ok((n, count))
}

/// What differs between a node in the file and the one rebuilt from the events.
fn differs(what: &str, stored: &Interval, rebuilt: &Interval) -> String {
    let mut fields = Vec::new();
    macro_rules! field {
        ($($f:ident),*) => {$(
            if stored.$f != rebuilt.$f {
                fields.push(format!("{} {:?} vs {:?}", stringify!($f), stored.$f, rebuilt.$f));
            }
        )*};
    }
    field!(t_first, t_last, heap_start, heap_min, t_min, heap_max, t_max, heap_end);
    for (name, a, b) in [
        ("entries", stored.entries.len(), rebuilt.entries.len()),
        ("since_max", stored.since_max.len(), rebuilt.since_max.len()),
        ("churn", stored.churn.len(), rebuilt.churn.len()),
    ] {
        if a != b {
            fields.push(format!("{name}: {a} vs {b}"));
        }
    }
    if fields.is_empty() {
        fields.push("per-stack figures".into());
    }
    format!("{what} disagrees with the events: {} (file vs events)", fields.join(", "))
}

/// The summary's fields, by name, as in the file and as replayed.
fn summary_fields(a: &Summary, b: &Summary) -> Vec<(&'static str, u64, u64)> {
    vec![
        ("the peak heap", a.peak_heap, b.peak_heap),
        ("the peak time", a.peak_heap_time_ns, b.peak_heap_time_ns),
        ("the heap at the end", a.end_heap, b.end_heap),
        ("the blocks live at the end", a.end_live_count, b.end_live_count),
        ("the allocation count", a.alloc_count, b.alloc_count),
        ("the allocated bytes", a.alloc_bytes, b.alloc_bytes),
        ("the free count", a.free_count, b.free_count),
        ("the peak RSS", a.peak_rss, b.peak_rss),
        ("the duration", a.duration_ns, b.duration_ns),
    ]
}
