//! `memlens summary`: what a recording says, as text or as stable JSON for scripts and CI.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use memlens_analysis::{
    deepest_stack, format_bytes, format_count, format_duration_ns, insights, last_census, replay,
    stack_totals, thread_totals, top_types, type_name, user_site, user_sites, EventFilter,
    InsightOptions, Snapshot, StackTotals, TypeOrder,
};
use memlens_format::{census_trigger, Census, FrameId, Recording, StackId};
use serde::Serialize;

use crate::load::open;
use crate::term::{self, Out, Style};

/// Arguments of `memlens summary`.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// The recording to summarize.
    pub file: PathBuf,
    /// Print JSON (schema: docs/summary-json.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// How many call sites to list per table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Compute everything by replaying every event instead of from the recording's
    /// aggregates (slower; for checking them, and what older recordings get anyway).
    #[arg(long)]
    pub replay: bool,
}

/// The JSON document. Field names are a stable interface: only add fields.
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    pub schema: u32,
    pub file: String,
    pub format_version: u16,
    pub complete: bool,
    pub truncated_at_byte: Option<u64>,
    pub command_line: Vec<String>,
    pub python_version: String,
    pub pid: u32,
    pub platform: String,
    pub start_unix_ms: u64,
    /// Only process memory was sampled (`watch`, `run --rss-only`): no allocation data.
    pub rss_only: bool,
    /// `run --sample BYTES`: the mean bytes between sampled allocations; every byte figure
    /// is then an estimate, and counts are of sampled blocks. `null`: exact.
    pub sample_bytes: Option<u64>,
    /// For a sampled recording, `sampled every 512 KiB: figures are estimates`.
    pub estimates: Option<String>,
    pub duration_ns: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// How the recording ends, in words (exit code, signal, or why neither is known).
    pub ended: String,
    pub peak_heap_bytes: u64,
    pub peak_heap_time_ns: u64,
    pub peak_rss_bytes: u64,
    pub peak_rss_time_ns: u64,
    pub leaked_bytes: u64,
    pub leaked_count: u64,
    /// Address space C code mapped with `mmap` (reserved, not heap) live at the heap's peak;
    /// `null` when the recording has none (see docs/summary-json.md).
    pub reserved_bytes_at_peak: Option<u64>,
    pub reserved_bytes_max: Option<u64>,
    pub reserved_bytes_at_end: Option<u64>,
    /// How much of it was resident (those pages are counted in the heap).
    pub reserved_resident_bytes_at_peak: Option<u64>,
    pub reserved_resident_bytes_at_end: Option<u64>,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    /// Frees of traced blocks (alloc_count + free_count is the recording's event count).
    pub free_count: u64,
    pub top_at_peak: Vec<SiteJson>,
    pub top_leaks: Vec<SiteJson>,
    pub threads: Vec<ThreadJson>,
    /// The last object census (live gc-tracked objects by type), when one was taken.
    pub census: Option<CensusJson>,
    /// Deepest Python stack that allocated, in frames.
    pub deepest_stack: u32,
    /// Findings with their evidence (see memlens_analysis::insights).
    pub insights: Vec<InsightJson>,
}

/// One census (in `summary`, the last) and its top types.
#[derive(Debug, Serialize)]
pub struct CensusJson {
    pub time_ns: u64,
    /// start, mark, interval or exit.
    pub trigger: String,
    pub label: String,
    pub duration_ns: u64,
    pub objects: u64,
    pub recursion_limit: u32,
    /// A census of very many objects looks at one object in this many (counts, sizes and
    /// sites are then estimates); `null` when it looked at all of them.
    pub sampled_one_in: Option<u64>,
    /// Largest total shallow size first (`memlens census --by count`: most objects first).
    pub top_types: Vec<TypeJson>,
}

/// The marker a sampled census puts on the timeline (`_census.py`), before it starts.
const SAMPLED_CENSUS_MARKER: &str = "memlens: census of 1 object in ";

/// One object in how many census `c` looked at, if it was sampled: from its marker.
fn census_sampling(rec: &Recording, c: &Census) -> Option<u64> {
    let start = c.time_ns.saturating_sub(c.duration_ns);
    rec.markers()
        .iter()
        .filter(|m| m.time_ns <= c.time_ns && m.time_ns + 1_000_000 >= start)
        .filter_map(|m| m.label.strip_prefix(SAMPLED_CENSUS_MARKER))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .next_back()
}

/// One type in a census.
#[derive(Debug, Serialize)]
pub struct TypeJson {
    /// `module.qualname` (no module for builtins).
    pub name: String,
    pub count: u64,
    /// Sum of `sys.getsizeof`.
    pub bytes: u64,
    /// Objects whose allocation was traced (the rest predate tracing).
    pub traced_count: u64,
    /// Where most of the traced ones were allocated.
    pub site: Option<SiteJson>,
}

/// One finding.
#[derive(Debug, Serialize)]
pub struct InsightJson {
    pub kind: String,
    pub message: String,
    pub bytes: u64,
    pub subject: Option<String>,
    pub site: Option<SiteJson>,
}

/// One call site: the frame of the program's own code (the innermost outside the standard
/// library and installed packages) in the stacks it stands for, and the library frame
/// they allocated in, if any.
#[derive(Debug, Serialize)]
pub struct SiteJson {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub bytes: u64,
    pub count: u64,
    /// The innermost frame, when it is in a library (the one holding the most bytes).
    pub library: Option<FrameJson>,
}

/// A frame.
#[derive(Debug, Serialize)]
pub struct FrameJson {
    pub function: String,
    pub file: String,
    pub line: u32,
}

fn frame_json(rec: &Recording, frame: FrameId) -> Option<FrameJson> {
    let f = rec.frame(frame)?;
    Some(FrameJson {
        function: rec.string(f.function).to_owned(),
        file: rec.string(f.file).to_owned(),
        line: f.line,
    })
}

/// A site for a user frame (`None`: no Python frame) and its library frame.
fn site(
    rec: &Recording,
    user: Option<FrameId>,
    library: Option<FrameId>,
    bytes: u64,
    count: u64,
) -> SiteJson {
    let user = user.and_then(|f| frame_json(rec, f));
    let (function, file, line) = match user {
        Some(f) => (f.function, f.file, f.line),
        None => ("<no Python frame>".to_owned(), String::new(), 0),
    };
    let library = library.and_then(|f| frame_json(rec, f));
    SiteJson { function, file, line, bytes, count, library }
}

/// One thread.
#[derive(Debug, Serialize)]
pub struct ThreadJson {
    pub id: u32,
    pub os_tid: u64,
    pub name: String,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
}

pub fn run(args: SummaryArgs) -> Result<i32> {
    let opened = open(&args.file)?;
    let how = if args.replay { How::Replay } else { How::Fastest };
    opened.progress.phase("computing the summary");
    let summary = build(&opened.rec, &args.file.display().to_string(), args.top, how)?;
    drop(opened.progress);
    if args.json {
        crate::json::write(&mut std::io::stdout().lock(), &summary)?;
    } else {
        write_text(&mut term::stdout(), &summary)?;
    }
    Ok(0)
}

/// The call site of `stack` ([`user_site`]; bytes and count from the caller).
pub(crate) fn site_of(rec: &Recording, stack: StackId, bytes: u64, count: u64) -> Option<SiteJson> {
    let s = user_site(rec, stack);
    s.user.map(|user| site(rec, Some(user), s.library, bytes, count))
}

/// A census as JSON, with its `top` types by `order`.
pub(crate) fn census_json(rec: &Recording, c: &Census, order: TypeOrder, top: usize) -> CensusJson {
    CensusJson {
        time_ns: c.time_ns,
        trigger: census_trigger::name(c.trigger).to_owned(),
        label: c.label.clone(),
        duration_ns: c.duration_ns,
        objects: c.objects,
        recursion_limit: c.recursion_limit,
        sampled_one_in: census_sampling(rec, c),
        top_types: top_types(c, order, top)
            .into_iter()
            .map(|t| TypeJson {
                name: type_name(rec, t.module, t.qualname),
                count: t.count,
                bytes: t.bytes,
                traced_count: t.linked_count,
                site: t.sites.first().and_then(|s| site_of(rec, s.stack, s.bytes, s.count)),
            })
            .collect(),
    }
}

/// The `top` call sites holding the most in `totals`, by the program's own frames.
pub(crate) fn sites(rec: &Recording, totals: &StackTotals, top: usize) -> Vec<SiteJson> {
    user_sites(rec, totals)
        .into_iter()
        .filter(|s| s.totals.bytes > 0)
        .take(top)
        .map(|s| site(rec, s.user, s.library, s.totals.bytes, s.totals.count))
        .collect()
}

/// How [`build`] computes its figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// From the aggregates when the recording has them.
    Fastest,
    /// By replaying every event.
    Replay,
}

/// Computes the summary of a recording.
pub fn build(rec: &Recording, file: &str, top: usize, how: How) -> Result<SummaryJson> {
    let all = EventFilter::default();
    let totals = |snapshot| match how {
        How::Fastest => stack_totals(rec, snapshot, &all),
        How::Replay => replay::stack_totals(rec, snapshot, &all),
    };
    let peak = totals(Snapshot::AtPeak)?;
    let leaks = totals(Snapshot::AtEnd)?;
    let top_at_peak = sites(rec, &peak, top);
    let (per_thread, found, replayed);
    let s = match how {
        How::Fastest => {
            per_thread = thread_totals(rec)?;
            found = insights(rec, &InsightOptions::default())?;
            rec.summary()
        }
        How::Replay => {
            per_thread = replay::thread_totals(rec)?;
            found = replay::insights(rec, &InsightOptions::default())?;
            replayed = rec.replay_summary()?;
            &replayed
        }
    };
    let end = rec.end().copied().unwrap_or_default();
    let ended = how_it_ended(rec);
    let mapped = crate::mapped::mapped(rec)?;
    Ok(SummaryJson {
        schema: 1,
        file: file.to_owned(),
        format_version: rec.format_version(),
        complete: rec.truncation().is_none() && rec.has_trailer(),
        truncated_at_byte: rec.truncation().map(|t| t.offset),
        command_line: rec.meta().command_line.clone(),
        python_version: rec.meta().python_version.clone(),
        pid: rec.meta().pid,
        platform: rec.meta().platform.clone(),
        start_unix_ms: rec.meta().start_unix_ms,
        rss_only: rec.meta().capture.rss_only,
        sample_bytes: rec.meta().sample_bytes(),
        estimates: memlens_analysis::sampling_notice(rec),
        duration_ns: s.duration_ns,
        exit_code: end.exit_code,
        signal: end.signal,
        ended,
        peak_heap_bytes: s.peak_heap,
        peak_heap_time_ns: s.peak_heap_time_ns,
        peak_rss_bytes: s.peak_rss,
        peak_rss_time_ns: s.peak_rss_time_ns,
        leaked_bytes: s.end_heap,
        leaked_count: s.end_live_count,
        reserved_bytes_at_peak: mapped.map(|m| m.at_peak),
        reserved_bytes_max: mapped.map(|m| m.max),
        reserved_bytes_at_end: mapped.map(|m| m.at_end),
        reserved_resident_bytes_at_peak: mapped.map(|m| m.resident_at_peak),
        reserved_resident_bytes_at_end: mapped.map(|m| m.resident_at_end),
        alloc_count: s.alloc_count,
        alloc_bytes: s.alloc_bytes,
        free_count: s.free_count,
        top_at_peak,
        top_leaks: sites(rec, &leaks, top),
        threads: rec
            .threads()
            .iter()
            .map(|t| {
                let totals = per_thread.get(t.id.index()).copied().unwrap_or_default();
                ThreadJson {
                    id: t.id.0,
                    os_tid: t.os_tid,
                    name: t.name.clone(),
                    alloc_count: totals.count,
                    alloc_bytes: totals.bytes,
                }
            })
            .collect(),
        census: last_census(rec).map(|c| census_json(rec, c, TypeOrder::Bytes, top)),
        deepest_stack: deepest_stack(rec).map_or(0, |(_, d)| d),
        insights: found
            .into_iter()
            .map(|i| InsightJson {
                kind: i.kind.name().to_owned(),
                message: i.message,
                bytes: i.bytes,
                subject: i.subject,
                site: i.stack.and_then(|s| site_of(rec, s, i.bytes, 0)),
            })
            .collect(),
    })
}

/// How the recording ends, in words.
fn how_it_ended(rec: &Recording) -> String {
    let meta = rec.meta();
    let block = meta.extra.iter().any(|(k, v)| k == "mode" && v == "memlens.record()");
    match rec.end().map(|e| (e.exit_code, e.signal)) {
        Some((_, Some(sig))) => format!("killed by signal {sig}"),
        Some((Some(code), None)) => format!("exited with code {code}"),
        Some((None, None)) if block => "recording stopped, the program went on".into(),
        // `memlens watch`: a process memlens did not start.
        Some((None, None)) if meta.capture.rss_only => "watching stopped".into(),
        Some((None, None)) => "ended without saying how (killed? a SIGKILL from outside, such \
                               as the OOM killer's, cannot be seen from inside)"
            .into(),
        None => "end not recorded (the recording was cut short)".into(),
    }
}

/// The census's top types under a heading.
pub(crate) fn write_census<W: Write>(out: &mut Out<W>, c: &CensusJson) -> Result<()> {
    let label = if c.label.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", term::escape_line(&c.label))
    };
    let sampled = c
        .sampled_one_in
        .map(|k| format!("; looked at 1 object in {k}: counts and sizes are estimates"))
        .unwrap_or_default();
    writeln!(out)?;
    out.paint(Style::Heading, "Live objects by type")?;
    writeln!(
        out,
        " (census at {}, {}{label}: {} objects, took {}{sampled})",
        format_duration_ns(c.time_ns),
        c.trigger,
        format_count(c.objects),
        format_duration_ns(c.duration_ns)
    )?;
    for t in &c.top_types {
        let place = t
            .site
            .as_ref()
            .map(|p| format!("  made at {} {}:{}", p.function, p.file, p.line))
            .unwrap_or_default();
        writeln!(
            out,
            "  {:>10}  {:>9} objects  {}{place}",
            format_bytes(t.bytes),
            format_count(t.count),
            t.name
        )?;
    }
    Ok(())
}

fn write_sites<W: Write>(
    out: &mut Out<W>,
    title: &str,
    total: u64,
    sites: &[SiteJson],
) -> Result<()> {
    writeln!(out)?;
    out.paint_line(Style::Heading, title)?;
    if sites.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for s in sites {
        let share = if total == 0 { 0.0 } else { 100.0 * s.bytes as f64 / total as f64 };
        let mut place =
            if s.file.is_empty() { String::new() } else { format!("  {}:{}", s.file, s.line) };
        if let Some(lib) = &s.library {
            place += &format!("  (in {} {}:{})", lib.function, lib.file, lib.line);
        }
        writeln!(
            out,
            "  {:>10}  {share:5.1}%  {:>9} allocs  {}{place}",
            format_bytes(s.bytes),
            format_count(s.count),
            s.function
        )?;
    }
    Ok(())
}

fn write_text<W: Write>(out: &mut Out<W>, s: &SummaryJson) -> Result<()> {
    writeln!(out, "{}", s.file)?;
    writeln!(out, "  command     {}", s.command_line.join(" "))?;
    if s.rss_only {
        writeln!(
            out,
            "  process     pid {} ({}); memory sampling only, no tracing",
            s.pid, s.platform
        )?;
    } else {
        writeln!(out, "  python      {} (pid {}, {})", s.python_version, s.pid, s.platform)?;
    }
    writeln!(out, "  duration    {}, {}", format_duration_ns(s.duration_ns), s.ended)?;
    if let Some(notice) = &s.estimates {
        out.paint_line(Style::Warn, &format!("  estimates   {notice}"))?;
    }
    // Counts in a sampled recording are of the blocks it sampled.
    let allocations = if s.sample_bytes.is_some() { "sampled blocks" } else { "allocations" };
    if s.rss_only {
        writeln!(
            out,
            "  peak RSS    {} at {}",
            format_bytes(s.peak_rss_bytes),
            format_duration_ns(s.peak_rss_time_ns)
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "  peak heap   {} at {}",
        format_bytes(s.peak_heap_bytes),
        format_duration_ns(s.peak_heap_time_ns)
    )?;
    writeln!(
        out,
        "  peak RSS    {} at {}",
        format_bytes(s.peak_rss_bytes),
        format_duration_ns(s.peak_rss_time_ns)
    )?;
    writeln!(
        out,
        "  left at end {} in {} {allocations}",
        format_bytes(s.leaked_bytes),
        format_count(s.leaked_count)
    )?;
    if let (Some(peak), Some(max), Some(end), Some(res_peak), Some(res_end)) = (
        s.reserved_bytes_at_peak,
        s.reserved_bytes_max,
        s.reserved_bytes_at_end,
        s.reserved_resident_bytes_at_peak,
        s.reserved_resident_bytes_at_end,
    ) {
        writeln!(
            out,
            "  reserved    {} of address space mapped by C code at the peak, of which {} \
             resident (in the heap); {} at most, {} at the end ({} resident)",
            format_bytes(peak),
            format_bytes(res_peak),
            format_bytes(max),
            format_bytes(end),
            format_bytes(res_end)
        )?;
    }
    writeln!(
        out,
        "  allocations {} {}({} in total)",
        format_count(s.alloc_count),
        if s.sample_bytes.is_some() { "sampled " } else { "" },
        format_bytes(s.alloc_bytes)
    )?;
    if !s.complete {
        out.paint_line(
            Style::Warn,
            "  warning     the recording is incomplete; figures cover what was read",
        )?;
    }
    write_sites(out, "Top call sites at the peak", s.peak_heap_bytes, &s.top_at_peak)?;
    write_sites(out, "Memory left at exit, by call site", s.leaked_bytes, &s.top_leaks)?;
    if let Some(c) = &s.census {
        write_census(out, c)?;
    }
    writeln!(out)?;
    out.paint_line(Style::Heading, "Insights")?;
    if s.insights.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for i in &s.insights {
        writeln!(out, "  - {}", i.message)?;
    }
    writeln!(out)?;
    out.paint_line(Style::Heading, "Threads")?;
    for t in &s.threads {
        writeln!(
            out,
            "  {:<20} tid {:<8} {:>9} allocs  {:>10}",
            t.name,
            t.os_tid,
            format_count(t.alloc_count),
            format_bytes(t.alloc_bytes)
        )?;
    }
    Ok(())
}
