//! `memlens summary`: what a recording says, as text or as stable JSON for scripts and CI.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use memlens_analysis::{
    deepest_stack, descendants, family_stack_totals, format_bytes, format_count,
    format_duration_ns, how_it_ended, insights, last_census, not_recorded, not_recorded_note,
    replay, short_command, stack_totals, thread_totals, tree_peak, EventFilter, InsightOptions,
    Snapshot, StackTotals, TypeOrder,
};
use memlens_format::Recording;
use serde::Serialize;

use crate::load::{
    checking_chunks, damaged_chunks, needed_damaged, open, process_by_pid, replay_up_to_damage,
    warn_damaged, ProcessArg, READING_STOPS, REPLAY_STOPS,
};
use crate::report_model::{census_json, site_of, sites, write_census, CensusJson, SiteJson};
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
    #[command(flatten)]
    pub process: ProcessArg,
}

/// The JSON document. Field names are a stable interface: only add fields.
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    pub schema: u32,
    pub file: String,
    pub format_version: u16,
    pub complete: bool,
    pub truncated_at_byte: Option<u64>,
    /// The chunks of the file that fail their checksum (every chunk is checked, see
    /// `memlens_format::Recording::verify_chunks`), besides where a cut-short file ends.
    pub damaged_chunks: Vec<DamagedJson>,
    pub command_line: Vec<String>,
    pub python_version: String,
    pub pid: u32,
    pub platform: String,
    pub start_unix_ms: u64,
    /// Only process memory was sampled (`watch`, `run --rss-only`): no allocation data.
    pub rss_only: bool,
    /// `run --sample BYTES`: the mean bytes between sampled allocations; every figure (bytes
    /// and counts) is then an estimate. `null`: exact.
    pub sample_bytes: Option<u64>,
    /// For a sampled recording, `sampled every 512 KiB: figures are estimates`.
    pub estimates: Option<String>,
    /// A sampled recording of format 7 or older: its counts are of the sampled blocks, not
    /// estimates of the blocks they stand for (`memlens_format::Recording::block_count`).
    pub counts_of_sampled_blocks: bool,
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
    /// The number of the process these figures are about: 0 the program, 1, 2, ... the
    /// Pythons it started (`--process PID`).
    pub process: u32,
    /// Every process the recording holds, the program first (one entry when it started no
    /// Python, or was run with `--no-follow`).
    pub processes: Vec<ProcessJson>,
    /// The heap of all processes together, when there are several.
    pub all_processes: Option<AllProcessesJson>,
    /// Descendants that started as the program ended and could not be recorded (they connected
    /// to memlens too late): not among `processes`.
    pub descendants_not_recorded: u64,
}

/// A damaged chunk of the file.
#[derive(Debug, Serialize)]
pub struct DamagedJson {
    /// Its byte offset in the file.
    pub offset: u64,
    /// What it is: `event chunk 12`, `intervals chunk`, ...
    pub chunk: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One process of the recording.
#[derive(Debug, Serialize)]
pub struct ProcessJson {
    pub number: u32,
    pub pid: u32,
    /// The pid of its parent (`null` for the program).
    pub ppid: Option<u32>,
    pub command_line: Vec<String>,
    /// A program that is not Python: only its memory (RSS) was sampled.
    pub rss_only: bool,
    /// When its recording started, on the program's clock.
    pub start_ns: u64,
    pub duration_ns: u64,
    pub peak_heap_bytes: u64,
    pub peak_heap_time_ns: u64,
    pub peak_rss_bytes: u64,
    pub leaked_bytes: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub ended: String,
    pub complete: bool,
}

/// All processes together.
#[derive(Debug, Serialize)]
pub struct AllProcessesJson {
    /// The highest sum of the heaps of the processes alive at the same moment.
    pub peak_heap_bytes: u64,
    pub peak_heap_time_ns: u64,
    pub alloc_bytes: u64,
    /// The call sites holding the most at that peak, whichever process they are in, the
    /// biggest first: what the peak is made of.
    pub top_at_peak: Vec<ProcessSiteJson>,
}

/// A call site of one of several processes.
#[derive(Debug, Serialize)]
pub struct ProcessSiteJson {
    /// The process's number (0: the program) and pid.
    pub process: u32,
    pub pid: u32,
    #[serde(flatten)]
    pub site: SiteJson,
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
    let mut opened = open(&args.file)?;
    let how = if args.replay { How::Replay } else { How::Fastest };
    let file = args.file.display().to_string();
    // Every chunk's checksum is checked: while the summary is computed, or before a replay,
    // which cannot go past a damaged event chunk.
    let (damaged, summary) = if how == How::Replay {
        opened.progress.phase("checking every chunk");
        let damaged = damaged_chunks(&args.file, &opened.rec)?;
        warn_damaged(&args.file, &damaged);
        replay_up_to_damage(&args.file, &mut opened.rec, &damaged, REPLAY_STOPS);
        opened.progress.phase("computing the summary");
        let summary = summarize(&opened.rec, &args, &file, how);
        (damaged, summary)
    } else {
        opened.progress.phase("computing the summary");
        let (damaged, summary) =
            checking_chunks(&args.file, &opened.rec, || summarize(&opened.rec, &args, &file, how));
        let damaged = damaged?;
        warn_damaged(&args.file, &damaged);
        let summary = match summary {
            Err(e)
                if needed_damaged(&e, &damaged)
                    && replay_up_to_damage(
                        &args.file,
                        &mut opened.rec,
                        &damaged,
                        READING_STOPS,
                    ) =>
            {
                summarize(&opened.rec, &args, &file, how)
            }
            summary => summary,
        };
        (damaged, summary)
    };
    drop(opened.progress);
    let mut summary = summary?;
    summary.damaged_chunks = damaged
        .iter()
        .map(|d| DamagedJson { offset: d.offset, chunk: d.what(), reason: d.reason.clone() })
        .collect();
    if args.json {
        crate::json::write(&mut std::io::stdout().lock(), &summary)?;
    } else {
        write_text(&mut term::stdout(), &summary)?;
    }
    Ok(0)
}

/// The summary of the process `args` picks in the recording `top` (the program's), with the
/// list of every process and the heap of all of them together.
fn summarize(top: &Recording, args: &SummaryArgs, file: &str, how: How) -> Result<SummaryJson> {
    let family = descendants(top);
    let all: Vec<(u32, &Recording)> =
        std::iter::once((0, top)).chain(family.iter().map(|p| (p.number, &p.rec))).collect();
    let (number, rec) = process_by_pid(&args.file, top, &family, args.process.pid)?;
    let mut summary = build(rec, file, args.top, how)?;
    summary.process = number;
    summary.processes = all.iter().map(|&(n, r)| process_json(n, r)).collect();
    if all.len() > 1 {
        let recs: Vec<&Recording> = all.iter().map(|(_, r)| *r).collect();
        // The sites at the peak's instant: the snapshot looks within that instant only (AtPeak
        // would search the whole run for the peak again).
        let at_peak = |(peak, at)| {
            Ok(((peak, at), family_stack_totals(&recs, Snapshot::PeakInRange(at, at))?))
        };
        match tree_peak(&recs).and_then(at_peak) {
            Ok(((peak, at), per_process)) => {
                summary.all_processes = Some(AllProcessesJson {
                    peak_heap_bytes: peak,
                    peak_heap_time_ns: at,
                    alloc_bytes: recs.iter().map(|r| r.summary().alloc_bytes).sum(),
                    top_at_peak: family_sites(&all, &per_process, args.top),
                })
            }
            // A damaged process's recording: the others are still summarized.
            Err(e) => eprintln!(
                "memlens: warning: the heap of all processes together cannot be read: {}",
                term::escape_line(&format!("{e:#}"))
            ),
        }
    }
    Ok(summary)
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
        complete: rec.is_complete(),
        truncated_at_byte: rec.truncation().map(|t| t.offset),
        damaged_chunks: Vec::new(),
        command_line: rec.meta().command_line.clone(),
        python_version: rec.meta().python_version.clone(),
        pid: rec.meta().pid,
        platform: rec.meta().platform.clone(),
        start_unix_ms: rec.meta().start_unix_ms,
        rss_only: rec.meta().capture.rss_only,
        sample_bytes: rec.meta().sample_bytes(),
        estimates: memlens_analysis::sampling_notice(rec),
        counts_of_sampled_blocks: rec.meta().sample_bytes().is_some()
            && rec.block_count().is_exact(),
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
        process: 0,
        processes: Vec::new(),
        all_processes: None,
        descendants_not_recorded: not_recorded(rec),
    })
}

/// The `top` call sites holding the most in `per_process` (each process's memory by stack, in
/// the order of `all`), across the processes.
fn family_sites(
    all: &[(u32, &Recording)],
    per_process: &[StackTotals],
    top: usize,
) -> Vec<ProcessSiteJson> {
    let mut out: Vec<ProcessSiteJson> = all
        .iter()
        .zip(per_process)
        .flat_map(|(&(process, rec), totals)| {
            let pid = rec.meta().pid;
            sites(rec, totals, top).into_iter().map(move |site| ProcessSiteJson {
                process,
                pid,
                site,
            })
        })
        .collect();
    out.sort_by(|a, b| b.site.bytes.cmp(&a.site.bytes).then(a.process.cmp(&b.process)));
    out.truncate(top);
    out
}

fn process_json(number: u32, rec: &Recording) -> ProcessJson {
    let s = rec.summary();
    let end = rec.end().copied().unwrap_or_default();
    ProcessJson {
        number,
        pid: rec.meta().pid,
        ppid: rec.meta().ppid(),
        command_line: rec.meta().command_line.clone(),
        rss_only: rec.meta().capture.rss_only,
        start_ns: rec.samples().first().map_or(0, |x| x.time_ns),
        duration_ns: s.duration_ns,
        peak_heap_bytes: s.peak_heap,
        peak_heap_time_ns: s.peak_heap_time_ns,
        peak_rss_bytes: s.peak_rss,
        leaked_bytes: s.end_heap,
        alloc_count: s.alloc_count,
        alloc_bytes: s.alloc_bytes,
        exit_code: end.exit_code,
        signal: end.signal,
        ended: how_it_ended(rec),
        complete: rec.is_complete(),
    }
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
        writeln!(
            out,
            "  {:>10}  {share:5.1}%  {:>9} allocs  {}{}",
            format_bytes(s.bytes),
            format_count(s.count),
            s.function,
            place(s)
        )?;
    }
    Ok(())
}

/// Where a site is: `  file:line  (in library_function lib.py:N)`.
fn place(s: &SiteJson) -> String {
    let mut place =
        if s.file.is_empty() { String::new() } else { format!("  {}:{}", s.file, s.line) };
    if let Some(lib) = &s.library {
        place += &format!("  (in {} {}:{})", lib.function, lib.file, lib.line);
    }
    place
}

/// The processes table (`memlens summary --process PID` for one of them).
fn write_processes<W: Write>(out: &mut Out<W>, s: &SummaryJson) -> Result<()> {
    writeln!(out)?;
    out.paint_line(Style::Heading, "Processes")?;
    if let Some(all) = &s.all_processes {
        writeln!(
            out,
            "  all together: peak heap {} at {}, {} allocated",
            format_bytes(all.peak_heap_bytes),
            format_duration_ns(all.peak_heap_time_ns),
            format_bytes(all.alloc_bytes)
        )?;
        for s in &all.top_at_peak {
            let share = 100.0 * s.site.bytes as f64 / all.peak_heap_bytes.max(1) as f64;
            writeln!(
                out,
                "    {:>10}  {share:5.1}%  pid {:<8} {}{}",
                format_bytes(s.site.bytes),
                s.pid,
                s.site.function,
                place(&s.site)
            )?;
        }
    }
    writeln!(
        out,
        "  {:>3} {:>8} {:>8} {:>10} {:>10} {:>10}  ended; command",
        "#", "pid", "parent", "peak heap", "at exit", "peak RSS"
    )?;
    for p in &s.processes {
        let command = short_command(&p.command_line, 60);
        let command = term::escape_line(&command);
        // A program that is not Python has no traced heap.
        let heap = |b| if p.rss_only { "-".to_owned() } else { format_bytes(b) };
        writeln!(
            out,
            "  {:>3} {:>8} {:>8} {:>10} {:>10} {:>10}  {}; {command}",
            p.number,
            p.pid,
            p.ppid.map_or_else(|| "-".to_owned(), |x| x.to_string()),
            heap(p.peak_heap_bytes),
            heap(p.leaked_bytes),
            format_bytes(p.peak_rss_bytes),
            p.ended,
        )?;
    }
    if s.descendants_not_recorded > 0 {
        let note = not_recorded_note(s.descendants_not_recorded);
        out.paint_line(Style::Warn, &format!("  {note}"))?;
    }
    writeln!(out, "  (memlens summary --process PID for one of them)")?;
    Ok(())
}

fn write_text<W: Write>(out: &mut Out<W>, s: &SummaryJson) -> Result<()> {
    writeln!(out, "{}", s.file)?;
    if s.process != 0 {
        writeln!(
            out,
            "  process     {} of {}, started by the program",
            s.process,
            s.processes.len()
        )?;
    }
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
    // Counts of a sampled recording are estimates (the notice says so) but in older files,
    // where they are of the blocks it sampled.
    let allocations = if s.counts_of_sampled_blocks { "sampled blocks" } else { "allocations" };
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
            "  reserved    {} of address space at the peak (C code's mappings and big malloc blocks), \
             of which {} resident (in the heap); {} at most, {} at the end ({} resident)",
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
        if s.counts_of_sampled_blocks { "sampled " } else { "" },
        format_bytes(s.alloc_bytes)
    )?;
    if !s.complete {
        out.paint_line(
            Style::Warn,
            "  warning     the recording is incomplete; figures cover what was read",
        )?;
    }
    if let Some(d) = s.damaged_chunks.first() {
        let more = match s.damaged_chunks.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        out.paint_line(
            Style::Warn,
            &format!(
                "  warning     the file is damaged ({} at byte {}{more}); `memlens check` lists \
                 the damage",
                d.chunk, d.offset
            ),
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
    if s.processes.len() > 1 || s.descendants_not_recorded > 0 {
        write_processes(out, s)?;
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
