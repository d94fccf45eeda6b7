//! `memlens diff`: what changed between a base and a head recording, for code review and CI.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use memlens_analysis::{
    all_processes, descendants, diff_sites, format_bytes, format_bytes_delta, format_count,
    incomparable_reasons, match_processes, sampling_mismatch, sampling_notice, short_command,
    stack_totals, tree_peak, EventFilter, Process, SiteDelta, Snapshot, StackTotals,
};
use memlens_format::{Recording, Summary};
use serde::Serialize;

use crate::load::{self, open_source, FileSource, Progress};
use crate::markdown;
use crate::term::{self, Style};

/// Arguments of `memlens diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The recording before the change.
    pub base: PathBuf,
    /// The recording after the change.
    pub head: PathBuf,
    /// Output format: `markdown` is ready to paste as a pull-request comment.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit with code 1 when a threshold is crossed, e.g. `peak>+10%`, `leaks>+1MiB`,
    /// `rss>+20%`, `allocs>+5%`, `allocs>+1000`, `reserved>+64MiB`, `total>+10%` (the heap of
    /// the program and the Pythons it started, together): a percentage, or bytes
    /// with a unit (B, KB, MB, GB, KiB, MiB, GiB); `allocs` takes a count. Repeat the flag or
    /// separate with commas. With a threshold, a recording that is incomplete (cut short, or
    /// of a run killed by a signal) or damaged (a chunk fails its checksum: every chunk's is
    /// checked) makes the gate fail with exit code 2: it cannot decide.
    #[arg(long = "fail-if", value_delimiter = ',')]
    pub fail_if: Vec<String>,
    /// Call sites to list per table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Hide call sites whose change is smaller than this many bytes.
    #[arg(long, default_value_t = 1024)]
    pub min_change: u64,
    /// Compare an exact recording with a sampled one (`run --sample`), or two sampling
    /// rates. Refused without this flag (exit code 2): the change would mix the estimates'
    /// error with the program's.
    #[arg(long)]
    pub allow_mixed_sampling: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

/// A whole-run figure compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Peak,
    Rss,
    Leaks,
    Allocs,
    /// The most address space C code had mapped (reserved, not heap).
    Reserved,
    /// The highest heap of all processes together (the program and the Pythons it started).
    Total,
}

/// What a recording's metrics are read from.
struct Figures<'a> {
    summary: &'a Summary,
    /// Most reserved address space, when the recording has any.
    reserved: Option<u64>,
    /// The heap of all processes together, when the program started others.
    total: Option<u64>,
}

impl Figures<'_> {
    fn of(side: &Side) -> Figures<'_> {
        Figures { summary: side.rec.summary(), reserved: side.reserved, total: side.total }
    }
}

impl Metric {
    const ALL: [Metric; 6] =
        [Metric::Peak, Metric::Total, Metric::Rss, Metric::Leaks, Metric::Allocs, Metric::Reserved];

    fn label(self) -> &'static str {
        match self {
            Metric::Peak => "Peak traced heap",
            Metric::Rss => "Peak RSS",
            Metric::Leaks => "Left at exit",
            Metric::Allocs => "Allocations",
            Metric::Reserved => "Reserved (mmap, big blocks; not heap)",
            Metric::Total => "Peak heap, all processes",
        }
    }

    fn value(self, f: &Figures) -> u64 {
        let s = f.summary;
        match self {
            Metric::Peak => s.peak_heap,
            Metric::Rss => s.peak_rss,
            Metric::Leaks => s.end_heap,
            Metric::Allocs => s.alloc_count,
            Metric::Reserved => f.reserved.unwrap_or(0),
            Metric::Total => f.total.unwrap_or(s.peak_heap),
        }
    }

    fn format(self, v: u64) -> String {
        if self == Metric::Allocs {
            format_count(v)
        } else {
            format_bytes(v)
        }
    }

    fn format_delta(self, d: i64) -> String {
        if self == Metric::Allocs {
            format!("{}{}", if d >= 0 { "+" } else { "-" }, format_count(d.unsigned_abs()))
        } else {
            format_bytes_delta(d)
        }
    }
}

/// A parsed `--fail-if` threshold: fail when head − base exceeds the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub text: String,
    pub metric: Metric,
    pub limit: Limit,
}

/// How a threshold's limit is expressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Percent(f64),
    Absolute(u64),
}

/// Parses `METRIC>+N%`, `METRIC>+N UNIT` (UNIT one of B, KB, MB, GB, KiB, MiB, GiB; K, M and
/// G are KiB, MiB and GiB) or, for `allocs`, `allocs>+N` (a count); the `+` is optional. A
/// bare number for a byte metric is refused (is `peak>+10` ten bytes or ten percent?), and so
/// are NaN and infinities, which would never fire.
pub fn parse_threshold(text: &str) -> Result<Threshold> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let Some((name, value)) = compact.split_once('>') else {
        bail!("threshold `{text}`: expected METRIC>+VALUE, e.g. peak>+10% or leaks>+1MiB");
    };
    let metric = match name.to_ascii_lowercase().as_str() {
        "peak" => Metric::Peak,
        "total" => Metric::Total,
        "rss" => Metric::Rss,
        "leaks" | "leak" => Metric::Leaks,
        "allocs" | "allocations" => Metric::Allocs,
        "reserved" => Metric::Reserved,
        other => bail!(
            "threshold `{text}`: unknown metric `{other}` (use peak, total, rss, leaks, allocs or reserved)"
        ),
    };
    let value = value.strip_prefix('+').unwrap_or(value);
    let finite = |num: &str, what: &str| -> Result<f64> {
        match num.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => bail!("threshold `{text}`: {what} `{num}` is not a finite number"),
            Err(_) => bail!("threshold `{text}`: `{num}` is not a number"),
        }
    };
    let limit = if let Some(p) = value.strip_suffix('%') {
        Limit::Percent(finite(p, "the percentage")?)
    } else {
        let split = value.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(value.len());
        let (num, unit) = value.split_at(split);
        if num.is_empty() {
            bail!(
                "threshold `{text}`: expected a number after `>`, e.g. {name}>+10% or {}",
                if metric == Metric::Allocs { "allocs>+1000" } else { "leaks>+1MiB" }
            );
        }
        let num = finite(num, "the number")?;
        if metric == Metric::Allocs {
            if !unit.is_empty() {
                bail!(
                    "threshold `{text}`: allocs counts allocations: give a count (allocs>+1000) \
                     or a percentage (allocs>+5%), not `{unit}`"
                );
            }
            Limit::Absolute(num as u64)
        } else {
            let scale = match unit.to_ascii_lowercase().as_str() {
                "" => bail!(
                    "threshold `{text}`: give a unit: `{num}%` for a percentage, or bytes as \
                     `{num}B`, `{num}KB`, `{num}MB`, `{num}MiB`..."
                ),
                "b" => 1.0,
                "kb" => 1e3,
                "kib" | "k" => 1024.0,
                "mb" => 1e6,
                "mib" | "m" => 1024.0 * 1024.0,
                "gb" => 1e9,
                "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
                other => bail!(
                    "threshold `{text}`: unknown unit `{other}` (use %, B, KB, MB, GB, KiB, MiB \
                     or GiB)"
                ),
            };
            Limit::Absolute((num * scale) as u64)
        }
    };
    Ok(Threshold { text: text.to_owned(), metric, limit })
}

impl Threshold {
    fn crossed(&self, base: u64, head: u64) -> bool {
        let delta = head as f64 - base as f64;
        match self.limit {
            // Anything from nothing is an infinite increase.
            Limit::Percent(_) if base == 0 => head > 0,
            Limit::Percent(p) => delta / base as f64 * 100.0 > p,
            Limit::Absolute(a) => delta > a as f64,
        }
    }
}

#[derive(Debug, Serialize)]
struct MetricJson {
    metric: Metric,
    base: u64,
    head: u64,
    change: i64,
    change_percent: Option<f64>,
}

/// A call site's change from base to head: the program's own function (see
/// `memlens_analysis::user_site`), with the library function it allocated in, if any;
/// files as `comparable_file` gives them. Unlike one recording's
/// [`crate::report_model::SiteJson`] it has no line numbers, so that a site matches across
/// two versions of the code.
#[derive(Debug, Serialize)]
struct SiteChangeJson {
    function: String,
    file: String,
    library: Option<LibraryJson>,
    base_bytes: u64,
    head_bytes: u64,
    change_bytes: i64,
}

#[derive(Debug, Serialize)]
struct DiffJson {
    schema: u32,
    base: String,
    head: String,
    warnings: Vec<String>,
    /// When either recording is sampled (`run --sample`): what its figures are estimates of.
    estimates: Option<String>,
    metrics: Vec<MetricJson>,
    peak_sites: Vec<SiteChangeJson>,
    leak_sites: Vec<SiteChangeJson>,
    /// The processes of both runs, paired (empty when neither started another Python).
    processes: Vec<ProcessChangeJson>,
    failed_thresholds: Vec<String>,
    /// Why either recording is incomplete (cut short, damaged, or of a run killed by a signal): with
    /// `--fail-if`, the gate then cannot decide (exit code 2).
    incomplete: Vec<String>,
}

/// A process of either run and its peak heap in each (`null` pid: no such process in that
/// run). Processes pair by command line with numbers left out, in the order they started.
#[derive(Debug, Serialize)]
struct ProcessChangeJson {
    command_line: Vec<String>,
    base_pid: Option<u32>,
    head_pid: Option<u32>,
    base_peak_bytes: u64,
    head_peak_bytes: u64,
    change_bytes: i64,
}

#[derive(Debug, Serialize)]
struct LibraryJson {
    function: String,
    file: String,
}

fn percent(base: u64, head: u64) -> Option<f64> {
    (base > 0).then(|| (head as f64 - base as f64) / base as f64 * 100.0)
}

fn sites(deltas: &[SiteDelta], top: usize, min_change: u64) -> Vec<SiteChangeJson> {
    deltas
        .iter()
        .filter(|d| d.delta().unsigned_abs() >= min_change)
        .take(top)
        .map(|d| SiteChangeJson {
            function: d.function.clone(),
            file: d.file.clone(),
            library: d.library.as_ref().map(|(function, file)| LibraryJson {
                function: function.clone(),
                file: file.clone(),
            }),
            base_bytes: d.base.bytes,
            head_bytes: d.head.bytes,
            change_bytes: d.delta(),
        })
        .collect()
}

/// One side of a comparison: the recording, and its memory by stack at the peak and at the end.
struct Side {
    rec: Recording,
    peak: StackTotals,
    end: StackTotals,
    /// Most reserved address space, when the recording has any.
    reserved: Option<u64>,
    /// The Pythons the program started, and the heap of all processes together (or why
    /// it cannot be read: a damaged process recording).
    family: Vec<Process>,
    total: Option<u64>,
    total_unreadable: Option<String>,
    /// Its file's damaged chunks, in one line (every chunk's checksum is checked: the
    /// comparison reads the aggregates, which say nothing of the events' chunks).
    damage: Option<String>,
}

impl Side {
    fn read(path: &Path, source: &Arc<FileSource>) -> Result<Side> {
        let mut rec = open_source(path, source)?;
        let figures = |rec: &Recording| -> Result<_> {
            let all = EventFilter::default();
            let peak = stack_totals(rec, Snapshot::AtPeak, &all)?;
            let end = stack_totals(rec, Snapshot::AtEnd, &all)?;
            let reserved = crate::mapped::mapped(rec)?.map(|m| m.max);
            Ok((peak, end, reserved))
        };
        // Every chunk's checksum, checked while the figures are read from the aggregates.
        let (damaged, read) = load::checking_chunks(path, &rec, || figures(&rec));
        let damaged = damaged?;
        load::warn_damaged(path, &damaged);
        let damage = load::damage_line(path, &damaged);
        let (peak, end, reserved) = match read {
            // They needed the events of a damaged chunk: the file up to it, then (which a
            // gate refuses anyway, as damaged).
            Err(e)
                if load::needed_damaged(&e, &damaged)
                    && load::replay_up_to_damage(path, &mut rec, &damaged, load::READING_STOPS) =>
            {
                figures(&rec)?
            }
            read => read?,
        };
        let family = descendants(&rec);
        let (mut total, mut total_unreadable) = (None, None);
        if !family.is_empty() {
            match tree_peak(&all_processes(&rec, &family)) {
                Ok((peak, _)) => total = Some(peak),
                Err(e) => total_unreadable = Some(format!("{e:#}")),
            }
        }
        Ok(Side { rec, peak, end, reserved, family, total, total_unreadable, damage })
    }

    fn processes(&self) -> Vec<&Recording> {
        all_processes(&self.rec, &self.family)
    }
}

/// The processes of both runs, paired.
fn process_changes(base: &Side, head: &Side) -> Vec<ProcessChangeJson> {
    if base.family.is_empty() && head.family.is_empty() {
        return Vec::new();
    }
    let (b, h) = (base.processes(), head.processes());
    let mut changes: Vec<ProcessChangeJson> = match_processes(&b, &h)
        .into_iter()
        .map(|(i, j)| {
            let (bp, hp) = (i.map(|i| b[i]), j.map(|j| h[j]));
            let peak = |r: Option<&Recording>| r.map_or(0, |r| r.summary().peak_heap);
            let named = bp.or(hp).expect("a pair has a side");
            ProcessChangeJson {
                command_line: named.meta().command_line.clone(),
                base_pid: bp.map(|r| r.meta().pid),
                head_pid: hp.map(|r| r.meta().pid),
                base_peak_bytes: peak(bp),
                head_peak_bytes: peak(hp),
                change_bytes: peak(hp) as i64 - peak(bp) as i64,
            }
        })
        .collect();
    // Largest changes first; the program first among equals.
    changes.sort_by_key(|c| std::cmp::Reverse(c.change_bytes.unsigned_abs()));
    changes
}

/// Why `rec` cannot stand for a whole run, if it cannot: the file is cut short or damaged, or
/// the run was killed (its figures stop where it died). `None` for a complete recording.
pub fn incomplete(rec: &Recording) -> Option<String> {
    if let Some(t) = rec.truncation() {
        return Some(format!("it is damaged or cut short at byte {} ({})", t.offset, t.reason));
    }
    if !rec.has_trailer() {
        let why = "it has no end: the recording was cut short (memlens or the program was killed, \
                   or the disk filled up)";
        return Some(why.into());
    }
    let meta = rec.meta();
    let block = meta.extra.iter().any(|(k, v)| k == "mode" && v == "memlens.record()");
    match rec.end().map(|e| (e.exit_code, e.signal)) {
        Some((_, Some(sig))) => Some(format!("the program was killed by signal {sig}")),
        Some((None, None)) if !block && !meta.capture.rss_only => {
            Some("the program ended without saying how (killed?)".into())
        }
        None => Some("its end is not recorded".into()),
        _ => None,
    }
}

fn compare(base: &Side, head: &Side, args: &DiffArgs, thresholds: &[Threshold]) -> DiffJson {
    let site_deltas = |pick: fn(&Side) -> &StackTotals| -> Vec<SiteDelta> {
        diff_sites(&base.rec, pick(base), &head.rec, pick(head))
    };
    let (bs, hs) = (Figures::of(base), Figures::of(head));
    // Reserved address space only when there is some to compare; the total only when a
    // program started other processes.
    let shown = |m: &Metric| match m {
        Metric::Reserved => bs.reserved.is_some() || hs.reserved.is_some(),
        Metric::Total => bs.total.is_some() || hs.total.is_some(),
        _ => true,
    };
    DiffJson {
        schema: 1,
        base: args.base.display().to_string(),
        head: args.head.display().to_string(),
        warnings: incomparable_reasons(&base.rec, &head.rec),
        estimates: estimates(&base.rec, &head.rec),
        metrics: Metric::ALL
            .iter()
            .filter(|m| shown(m))
            .map(|&m| {
                let (b, h) = (m.value(&bs), m.value(&hs));
                MetricJson {
                    metric: m,
                    base: b,
                    head: h,
                    change: h as i64 - b as i64,
                    change_percent: percent(b, h),
                }
            })
            .collect(),
        peak_sites: sites(&site_deltas(|s| &s.peak), args.top, args.min_change),
        leak_sites: sites(&site_deltas(|s| &s.end), args.top, args.min_change),
        processes: process_changes(base, head),
        failed_thresholds: thresholds
            .iter()
            .filter(|t| t.crossed(t.metric.value(&bs), t.metric.value(&hs)))
            .map(|t| t.text.clone())
            .collect(),
        incomplete: [("base", &args.base, base), ("head", &args.head, head)]
            .into_iter()
            .flat_map(|(side, path, s)| {
                let program = incomplete(&s.rec).map(|why| {
                    format!("the {side} recording {} is incomplete: {why}", path.display())
                });
                let damaged =
                    s.damage.iter().map(move |line| format!("the {side} recording {line}"));
                // A child's stream cut short under-counts the total (a child killed by a
                // signal, a pool's terminated worker, ends normally for this purpose).
                let children = s.family.iter().filter(|p| !p.rec.is_complete()).map(move |p| {
                    format!(
                        "the {side} recording {} is incomplete: the recording of process {} \
                         (pid {}) is cut short",
                        path.display(),
                        p.number,
                        p.rec.meta().pid
                    )
                });
                let total = s.total_unreadable.iter().map(move |e| {
                    format!(
                        "the {side} recording {} is incomplete: the heap of all its processes \
                         cannot be read ({e})",
                        path.display()
                    )
                });
                program.into_iter().chain(damaged).chain(children).chain(total)
            })
            .collect(),
    }
}

fn change_text(m: &MetricJson) -> String {
    let pct = m.change_percent.map(|p| format!(" ({p:+.1}%)")).unwrap_or_default();
    format!("{}{pct}", m.metric.format_delta(m.change))
}

/// What a diff of sampled recordings says about its figures.
fn estimates(base: &Recording, head: &Recording) -> Option<String> {
    if let Some(mixed) = sampling_mismatch(base, head) {
        return Some(format!("{mixed}: figures are estimates"));
    }
    sampling_notice(base).map(|n| format!("both recordings are {n}"))
}

/// One row of the report's tables: a metric or a call site, its base and head figures and
/// the change (its sign colours it on a terminal).
struct Row<'a> {
    what: RowOf<'a>,
    base: String,
    head: String,
    change: i64,
    change_text: String,
}

enum RowOf<'a> {
    Metric(Metric),
    Site(&'a SiteChangeJson),
    Process(&'a ProcessChangeJson),
}

/// The title of the table of processes (peak heap per process).
const PROCESSES: &str = "Peak heap by process";

/// How a process is named in a table: its pids and its command line, shortened as the
/// viewer and `summary` shorten it.
fn process_name(p: &ProcessChangeJson) -> String {
    let pid = |x: Option<u32>| x.map_or_else(|| "-".to_owned(), |x| x.to_string());
    let command = short_command(&p.command_line, 70);
    format!("pid {} -> {}: {command}", pid(p.base_pid), pid(p.head_pid))
}

/// What a report is written to: the text for a terminal or a log ([`TextReport`]) or the
/// markdown of a pull-request comment ([`MarkdownReport`]). [`render`] walks the report once;
/// a backend says how each part looks, and makes every name from the recordings inert.
trait Report {
    fn start(&mut self, base: &str, head: &str) -> std::io::Result<()>;
    /// What the figures are estimates of, when either recording is sampled.
    fn estimates(&mut self, what: &str) -> std::io::Result<()>;
    /// A recording cut short or of a run killed by a signal (`incomplete`), or a reason the
    /// runs may not be comparable.
    fn notice(&mut self, incomplete: bool, why: &str) -> std::io::Result<()>;
    /// The metrics (`title` none) or one table of call sites, largest changes first.
    fn table(&mut self, title: Option<&str>, rows: &[Row<'_>]) -> std::io::Result<()>;
    fn failed(&mut self, thresholds: &[String]) -> std::io::Result<()>;
}

/// The report: what both backends show, in this order.
fn render(d: &DiffJson, out: &mut impl Report) -> std::io::Result<()> {
    out.start(&d.base, &d.head)?;
    if let Some(e) = &d.estimates {
        out.estimates(e)?;
    }
    for w in &d.incomplete {
        out.notice(true, w)?;
    }
    for w in &d.warnings {
        out.notice(false, w)?;
    }
    let metrics: Vec<Row<'_>> = d
        .metrics
        .iter()
        .map(|m| Row {
            what: RowOf::Metric(m.metric),
            base: m.metric.format(m.base),
            head: m.metric.format(m.head),
            change: m.change,
            change_text: change_text(m),
        })
        .collect();
    out.table(None, &metrics)?;
    if !d.processes.is_empty() {
        let rows: Vec<Row<'_>> = d
            .processes
            .iter()
            .map(|p| Row {
                what: RowOf::Process(p),
                base: p.base_pid.map_or_else(|| "-".into(), |_| format_bytes(p.base_peak_bytes)),
                head: p.head_pid.map_or_else(|| "-".into(), |_| format_bytes(p.head_peak_bytes)),
                change: p.change_bytes,
                change_text: format_bytes_delta(p.change_bytes),
            })
            .collect();
        out.table(Some(PROCESSES), &rows)?;
    }
    for (title, sites) in
        [("Call sites at the peak", &d.peak_sites), ("Left at exit", &d.leak_sites)]
    {
        let rows: Vec<Row<'_>> = sites
            .iter()
            .map(|s| Row {
                what: RowOf::Site(s),
                base: format_bytes(s.base_bytes),
                head: format_bytes(s.head_bytes),
                change: s.change_bytes,
                change_text: format_bytes_delta(s.change_bytes),
            })
            .collect();
        out.table(Some(title), &rows)?;
    }
    out.failed(&d.failed_thresholds)
}

/// The markdown: every name and every other text from the recordings or the command line
/// goes through [`markdown::code`] or [`markdown::text`].
struct MarkdownReport(String);

impl Report for MarkdownReport {
    fn start(&mut self, _: &str, _: &str) -> std::io::Result<()> {
        self.0.push_str("### memlens: memory change\n\n");
        Ok(())
    }

    fn estimates(&mut self, what: &str) -> std::io::Result<()> {
        let _ = writeln!(self.0, "> **Estimates:** {}.\n", markdown::text(what));
        Ok(())
    }

    fn notice(&mut self, incomplete: bool, why: &str) -> std::io::Result<()> {
        let what = if incomplete {
            "**Incomplete:**"
        } else {
            "**Warning:** the runs may not be comparable:"
        };
        let _ = writeln!(self.0, "> {what} {}.\n", markdown::text(why));
        Ok(())
    }

    fn table(&mut self, title: Option<&str>, rows: &[Row<'_>]) -> std::io::Result<()> {
        let s = &mut self.0;
        if let Some(title) = title {
            let _ = writeln!(s, "\n**{title}**, largest changes first\n");
            if rows.is_empty() {
                s.push_str("No call site changed.\n");
                return Ok(());
            }
        }
        s.push_str(match title {
            Some(PROCESSES) => "| process ",
            Some(_) => "| call site ",
            None => "| ",
        });
        s.push_str("| base | head | change |\n|---|---:|---:|---:|\n");
        for r in rows {
            let what = match r.what {
                RowOf::Metric(k) => k.label().to_owned(),
                RowOf::Process(p) => markdown::code(&process_name(p)),
                RowOf::Site(site) => {
                    // A name and its file in parentheses; no parentheses for no file (a
                    // site with no Python frame).
                    let named = |function: &str, file: &str| match file {
                        "" => markdown::code(function),
                        file => format!("{} ({})", markdown::code(function), markdown::code(file)),
                    };
                    let file = site.file.rsplit('/').next().unwrap_or(&site.file);
                    let via = site
                        .library
                        .as_ref()
                        .map(|l| format!(" in {}", named(&l.function, &l.file)))
                        .unwrap_or_default();
                    format!("{}{via}", named(&site.function, file))
                }
            };
            let _ = writeln!(s, "| {what} | {} | {} | {} |", r.base, r.head, r.change_text);
        }
        Ok(())
    }

    fn failed(&mut self, thresholds: &[String]) -> std::io::Result<()> {
        if !thresholds.is_empty() {
            let failed: Vec<String> = thresholds.iter().map(|t| markdown::code(t)).collect();
            let _ = writeln!(self.0, "\n**Failed:** {}", failed.join(", "));
        }
        Ok(())
    }
}

/// The text for a terminal or a log, through [`term::Out`] (names escaped, colour on a
/// terminal).
struct TextReport<'o, W: std::io::Write>(&'o mut term::Out<W>);

impl<W: std::io::Write> Report for TextReport<'_, W> {
    fn start(&mut self, base: &str, head: &str) -> std::io::Result<()> {
        writeln!(self.0, "base {base}\nhead {head}")
    }

    fn estimates(&mut self, what: &str) -> std::io::Result<()> {
        self.0.paint_line(Style::Warn, &format!("estimates: {what}"))
    }

    fn notice(&mut self, incomplete: bool, why: &str) -> std::io::Result<()> {
        let what = if incomplete { "" } else { "the runs may not be comparable: " };
        self.0.paint_line(Style::Warn, &format!("warning: {what}{why}"))
    }

    fn table(&mut self, title: Option<&str>, rows: &[Row<'_>]) -> std::io::Result<()> {
        let out = &mut *self.0;
        writeln!(out)?;
        if let Some(title) = title {
            out.paint(Style::Heading, title)?;
            writeln!(out, " (largest changes first)")?;
            if rows.is_empty() {
                writeln!(out, "  no call site changed")?;
            }
        }
        for r in rows {
            match r.what {
                RowOf::Metric(k) => {
                    write!(out, "{:<25} {:>12} -> {:>12}  ", k.label(), r.base, r.head)?;
                    out.paint_change(r.change, &r.change_text)?;
                    writeln!(out)?;
                }
                RowOf::Process(p) => {
                    write!(out, "  ")?;
                    out.paint_change(r.change, &format!("{:>11}", r.change_text))?;
                    let name = term::escape_line(&process_name(p)).into_owned();
                    writeln!(out, "  {:>10} -> {:>10}  {name}", r.base, r.head)?;
                }
                RowOf::Site(s) => {
                    // A name and its file, or the name alone (a site with no Python frame).
                    let named = |function: &str, file: &str, gap: &str| {
                        let function = term::escape_line(function);
                        match file {
                            "" => function.into_owned(),
                            file => format!("{function}{gap}{}", term::escape_line(file)),
                        }
                    };
                    let via = s
                        .library
                        .as_ref()
                        .map(|l| format!("  (in {})", named(&l.function, &l.file, " ")))
                        .unwrap_or_default();
                    write!(out, "  ")?;
                    out.paint_change(r.change, &format!("{:>11}", r.change_text))?;
                    writeln!(
                        out,
                        "  {:>10} -> {:>10}  {}{via}",
                        r.base,
                        r.head,
                        named(&s.function, &s.file, "  ")
                    )?;
                }
            }
        }
        Ok(())
    }

    fn failed(&mut self, thresholds: &[String]) -> std::io::Result<()> {
        for t in thresholds {
            writeln!(self.0)?;
            self.0.paint_line(Style::Bad, &format!("FAILED: {t}"))?;
        }
        Ok(())
    }
}

pub fn run(args: DiffArgs) -> Result<i32> {
    let thresholds = args.fail_if.iter().map(|t| parse_threshold(t)).collect::<Result<Vec<_>>>()?;
    let (base_file, head_file) = (load::source(&args.base)?, load::source(&args.head)?);
    let progress = Progress::start(&[(&args.base, &base_file), (&args.head, &head_file)]);
    // The two recordings are read side by side, one per core.
    let (base, head) = std::thread::scope(|s| {
        let base = s.spawn(|| Side::read(&args.base, &base_file));
        let head = Side::read(&args.head, &head_file);
        (base.join().expect("reading the base recording panicked"), head)
    });
    let (base, head) = (base?, head?);
    if let Some(mixed) = sampling_mismatch(&base.rec, &head.rec) {
        if !args.allow_mixed_sampling {
            drop(progress);
            bail!(
                "not comparing: {mixed}, so the change would mix sampling error with the \
                 program's (record both runs the same way, or pass --allow-mixed-sampling)"
            );
        }
    }
    progress.phase("comparing");
    let d = compare(&base, &head, &args, &thresholds);
    drop(progress);
    match args.format {
        Format::Json => crate::json::write(&mut std::io::stdout().lock(), &d)?,
        Format::Markdown => {
            let mut md = MarkdownReport(String::new());
            render(&d, &mut md)?;
            write!(std::io::stdout(), "{}", md.0)?;
        }
        Format::Text => render(&d, &mut TextReport(&mut term::stdout()))?,
    }
    if !thresholds.is_empty() && !d.incomplete.is_empty() {
        // A cut recording (an OOM kill, a full disk) under-counts: passing it would let a
        // regression through. The gate fails closed.
        for why in &d.incomplete {
            eprintln!("memlens: {}", term::escape_line(why));
        }
        let damaged = base.damage.is_some() || head.damage.is_some();
        if damaged {
            eprintln!(
                "memlens: error: --fail-if cannot decide on a damaged recording; exit code 2 \
                 (record the run again, or copy the file again if it was damaged in transit)"
            );
        } else {
            eprintln!(
                "memlens: error: --fail-if cannot decide on an incomplete recording; exit code 2 \
                 (record both runs to the end)"
            );
        }
        return Ok(2);
    }
    if d.failed_thresholds.is_empty() {
        Ok(0)
    } else {
        for t in &d.failed_thresholds {
            eprintln!("memlens: diff threshold crossed: {}", term::escape_line(t));
        }
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse() {
        let t = parse_threshold("peak>+10%").unwrap();
        assert_eq!((t.metric, t.limit), (Metric::Peak, Limit::Percent(10.0)));
        let t = parse_threshold("leaks > 1MiB").unwrap();
        assert_eq!((t.metric, t.limit), (Metric::Leaks, Limit::Absolute(1 << 20)));
        assert_eq!(parse_threshold("rss>+2kb").unwrap().limit, Limit::Absolute(2000));
        assert!(parse_threshold("peak<10%").is_err());
        assert!(parse_threshold("speed>10%").unwrap_err().to_string().contains("unknown metric"));
        assert!(parse_threshold("peak>10parsecs").is_err());
        assert_eq!(parse_threshold("allocs>+1000").unwrap().limit, Limit::Absolute(1000));
    }

    /// Thresholds that could never fire, or that say nothing of their unit, are refused.
    #[test]
    fn thresholds_that_cannot_fire_or_are_ambiguous_are_refused() {
        for (bad, says) in [
            ("peak>+NaN%", "not a finite number"),
            ("peak>+inf%", "not a finite number"),
            ("peak>+infinity%", "not a finite number"),
            ("peak>+10", "give a unit: `10%` for a percentage, or bytes as `10B`"),
            ("leaks>+1.5", "give a unit"),
            ("peak>+", "expected a number"),
            ("peak>+%", "is not a number"),
            ("allocs>+1MB", "allocs counts allocations"),
            ("peak>+10XB", "unknown unit `xb`"),
        ] {
            let e = parse_threshold(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn thresholds_cross() {
        let pct = parse_threshold("peak>+10%").unwrap();
        assert!(!pct.crossed(100, 110));
        assert!(pct.crossed(100, 111));
        assert!(pct.crossed(0, 1));
        assert!(!pct.crossed(0, 0));
        let abs = parse_threshold("leaks>+1KiB").unwrap();
        assert!(!abs.crossed(5000, 6024));
        assert!(abs.crossed(5000, 6025));
        assert!(!abs.crossed(9000, 100));
    }
}
