//! `memlens spans`: memory used within each span, one row per span. The Python side
//! marks them with `with memlens.span("name"):`; under `memlens run -m pytest` the pytest
//! plugin makes one span per test, and in a recorded IPython kernel the extension one per
//! cell.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use memlens_analysis::{format_bytes, format_count, span_usage, spans};
use memlens_format::Recording;
use serde::Serialize;

use crate::load::{open, pick_process, ProcessArg};
use crate::report_model::{sites, SiteJson};
use crate::term::{self, Style};

/// Arguments of `memlens spans`.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:
    memlens spans out.memlens                       # largest spans first
    memlens spans --json --name 'tests/test_a.py::test_x' out.memlens")]
pub struct SpansArgs {
    /// The recording.
    pub file: PathBuf,
    /// Print JSON (a stable interface: fields are only added) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only the spans with this name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How many call sites to list per span (JSON) .
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    #[command(flatten)]
    pub process: ProcessArg,
}

/// The JSON document.
#[derive(Debug, Serialize)]
pub struct SpansJson {
    pub schema: u32,
    pub file: String,
    /// The recording was finished (its process ended and memlens wrote the trailer).
    pub complete: bool,
    /// Spans in the order they began.
    pub spans: Vec<SpanJson>,
    /// Spans that began but have not ended (yet) in this recording.
    pub open: Vec<String>,
}

/// One span.
#[derive(Debug, Serialize)]
pub struct SpanJson {
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// High-water mark of the blocks allocated within the span.
    pub peak_bytes: u64,
    pub peak_count: u64,
    /// Blocks allocated within the span and still live at its end.
    pub leaked_bytes: u64,
    pub leaked_count: u64,
    pub allocated_bytes: u64,
    pub allocated_count: u64,
    pub top_at_peak: Vec<SiteJson>,
    pub top_leaks: Vec<SiteJson>,
}

/// Computes the spans of a recording.
pub fn build(rec: &Recording, file: &str, name: Option<&str>, top: usize) -> Result<SpansJson> {
    let (mut spans, open) = spans(rec);
    if let Some(name) = name {
        spans.retain(|s| s.name == name);
    }
    let ranges: Vec<(u64, u64)> = spans.iter().map(|s| (s.start_ns, s.end_ns)).collect();
    let usage = span_usage(rec, &ranges)?;
    Ok(SpansJson {
        schema: 1,
        file: file.to_owned(),
        complete: rec.is_complete(),
        spans: spans
            .into_iter()
            .zip(usage)
            .map(|(span, u)| SpanJson {
                name: span.name,
                start_ns: span.start_ns,
                end_ns: span.end_ns,
                peak_bytes: u.peak.bytes,
                peak_count: u.peak.count,
                leaked_bytes: u.leaked.total.bytes,
                leaked_count: u.leaked.total.count,
                allocated_bytes: u.allocated.bytes,
                allocated_count: u.allocated.count,
                top_at_peak: sites(rec, &u.at_peak, top),
                top_leaks: sites(rec, &u.leaked, top),
            })
            .collect(),
        open: open.into_iter().map(|o| o.name).collect(),
    })
}

pub fn run(args: SpansArgs) -> Result<i32> {
    let opened = open(&args.file)?;
    let child = pick_process(&args.file, &opened.rec, args.process.pid)?;
    let rec = child.as_ref().map_or(&opened.rec, |p| &p.rec);
    opened.progress.phase("computing the spans");
    let doc = build(rec, &args.file.display().to_string(), args.name.as_deref(), args.top)?;
    drop(opened.progress);
    if args.json {
        crate::json::write(&mut std::io::stdout().lock(), &doc)?;
        return Ok(0);
    }
    let mut out = term::stdout();
    let mut rows: Vec<&SpanJson> = doc.spans.iter().collect();
    rows.sort_by_key(|s| std::cmp::Reverse(s.peak_bytes));
    out.paint_line(
        Style::Heading,
        &format!("{:>10}  {:>10}  {:>9}  span", "peak", "leaked", "allocs"),
    )?;
    for s in rows {
        writeln!(
            out,
            "{:>10}  {:>10}  {:>9}  {}",
            format_bytes(s.peak_bytes),
            format_bytes(s.leaked_bytes),
            format_count(s.allocated_count),
            term::escape_line(&s.name)
        )?;
    }
    if doc.spans.is_empty() && doc.open.is_empty() {
        writeln!(out, "(no spans: the program marked none, e.g. with `with memlens.span(NAME):`)")?;
    }
    for name in &doc.open {
        writeln!(out, "(span \"{}\" began but did not end)", term::escape_line(name))?;
    }
    Ok(0)
}
