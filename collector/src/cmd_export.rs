//! `memlens export`: a recording's memory by stack in the formats other profilers read:
//! pprof (for `go tool pprof`, Grafana Pyroscope, Parca), speedscope's JSON, and collapsed
//! stacks (flamegraph.pl, inferno). The encodings live in `memlens_analysis` (no I/O); this
//! command picks the view, computes its totals (from the aggregates: a few reads however long
//! the run was), compresses and writes.

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use memlens_analysis::{
    format_bytes, format_duration_ns, pprof, replay, sampling_notice, speedscope, stack_totals,
    thread_stack_totals, write_collapsed, EventFilter, ExportView, PprofOptions, Snapshot,
    StackTotals, ThreadStackTotals,
};
use memlens_format::Recording;

use crate::load::{
    damage_line, damaged_chunks, needed_damaged, open, pick_process, replay_up_to_damage,
    warn_damaged, ProcessArg, READING_STOPS, REPLAY_STOPS,
};

/// Arguments of `memlens export`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "pprof has all four of its heap sample types: inuse_space/inuse_objects (live at the view's
moment; for total, at exit) and alloc_space/alloc_objects (allocated over the run, or within
the range), with each sample labelled by thread. speedscope files hold one profile per view
(peak, leaks, total, and the range if given), opening on --view. Collapsed stacks hold the
view's bytes.

WHEN (--from, --to) is a time since the start (2.5s, 300ms, 40us, 1000ns; a bare number is
seconds), the label of a memlens.mark(), start or end.

EXAMPLES:
    memlens export out.memlens --format pprof -o heap.pb.gz
    go tool pprof -http :8080 heap.pb.gz                     # explore it in pprof's web UI
    memlens export out.memlens --format pprof --view leaks -o leaks.pb.gz
    memlens export out.memlens --format speedscope -o out.speedscope.json   # open in speedscope.app
    memlens export out.memlens --format collapsed -o - | inferno-flamegraph > peak.svg
    memlens export out.memlens --format collapsed --from loaded --to built -o range.txt
    memlens export out.memlens --format pprof --process 4242 -o worker.pb.gz   # one pool worker"
)]
pub struct ExportArgs {
    /// The recording to export.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Which memory to show.
    #[arg(long, value_enum)]
    pub view: Option<View>,
    /// Start of the range (implies --view range): a time, a marker label, start or end.
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// End of the range, inclusive (implies --view range; default: the end).
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// Where to write, `-` for stdout (default: FILE with the format's extension:
    /// .pb.gz, .speedscope.json, .collapsed.txt).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Export a recording that was cut short or is damaged (what can be read), instead of
    /// refusing.
    #[arg(long)]
    pub allow_incomplete: bool,
    /// Compute by replaying every event instead of from the recording's aggregates (slower;
    /// what older recordings get anyway).
    #[arg(long)]
    pub replay: bool,
    #[command(flatten)]
    pub process: ProcessArg,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// pprof's profile.proto, gzipped.
    Pprof,
    /// speedscope's JSON file format.
    Speedscope,
    /// Collapsed stacks (`a;b;c 1234` lines).
    Collapsed,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Pprof => "pb.gz",
            Format::Speedscope => "speedscope.json",
            Format::Collapsed => "collapsed.txt",
        }
    }
}

/// `--view`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// Live at the traced heap's highest point (the default).
    Peak,
    /// Still live at exit.
    Leaks,
    /// Everything allocated over the run.
    Total,
    /// Between --from and --to: live at the span's highest point, allocated within it.
    Range,
}

pub fn run(args: ExportArgs) -> Result<i32> {
    let mut opened = open(&args.file)?;
    opened.progress.phase("checking every chunk");
    let damaged = damaged_chunks(&args.file, &opened.rec)?;
    if let Some(line) = damage_line(&args.file, &damaged) {
        if !args.allow_incomplete {
            bail!(
                "{line}: an export of it could look like a whole run to the tools that read \
                 it; export what can be read with --allow-incomplete (`memlens check` lists \
                 the damage)"
            );
        }
        warn_damaged(&args.file, &damaged);
        if args.replay {
            replay_up_to_damage(&args.file, &mut opened.rec, &damaged, REPLAY_STOPS);
        }
    }
    let child = pick_process(&args.file, &opened.rec, args.process.pid)?;
    let rec = child.as_ref().map_or(&opened.rec, |p| &p.rec);
    if rec.meta().capture.rss_only {
        bail!(
            "process {} of {} was not traced (only its memory was sampled): nothing to export",
            rec.meta().pid,
            args.file.display()
        );
    }
    refuse_unusable(rec, &args.file, args.allow_incomplete)?;
    let view = resolve_view(rec, args.view, args.from.as_deref(), args.to.as_deref())?;
    let output = match &args.output {
        Some(p) => p.clone(),
        None => default_output(&args.file, args.format),
    };
    let to_stdout = output.as_os_str() == "-";
    if to_stdout && args.format == Format::Pprof && std::io::stdout().is_terminal() {
        bail!("pprof files are binary: not writing one to a terminal (give -o FILE, or pipe it)");
    }
    opened.progress.phase("computing the export");
    let how = if args.replay { How::Replay } else { How::Fastest };
    let bytes = match encode(rec, args.format, view, how, &args.file) {
        // The program's figures needed the events of a damaged chunk (--allow-incomplete):
        // what can be read is the file up to it.
        Err(e)
            if child.is_none()
                && needed_damaged(&e, &damaged)
                && replay_up_to_damage(&args.file, &mut opened.rec, &damaged, READING_STOPS) =>
        {
            encode(&opened.rec, args.format, view, how, &args.file)?
        }
        bytes => bytes?,
    };
    drop(opened.progress);
    if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()?;
    } else {
        std::fs::write(&output, &bytes)
            .with_context(|| format!("cannot write {}", output.display()))?;
        eprintln!(
            "memlens: wrote {} ({}, {}; a file of {})",
            output.display(),
            format_name(args.format),
            view.title(),
            format_bytes(bytes.len() as u64)
        );
    }
    Ok(0)
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Pprof => "pprof",
        Format::Speedscope => "speedscope",
        Format::Collapsed => "collapsed stacks",
    }
}

/// Exports are read by other tools that cannot tell a cut recording from a whole one: one
/// that was cut short is refused unless asked for (exit code 2, as the gates do), and one
/// without allocation data is an error.
fn refuse_unusable(rec: &Recording, file: &Path, allow_incomplete: bool) -> Result<()> {
    if rec.meta().capture.rss_only {
        bail!(
            "{} holds process memory samples only (memlens watch / run --rss-only): no \
             allocations to export",
            file.display()
        );
    }
    let complete = rec.is_complete();
    if !complete && !allow_incomplete {
        bail!(
            "{} is incomplete (cut short): an export of it would look like a whole run to the \
             tools that read it; export what could be read with --allow-incomplete",
            file.display()
        );
    }
    Ok(())
}

/// FILE with the format's extension instead of `.memlens`.
fn default_output(file: &Path, format: Format) -> PathBuf {
    let stem = file.file_stem().map_or_else(|| "memlens".into(), |s| s.to_os_string());
    let mut name = stem;
    name.push(".");
    name.push(format.extension());
    file.with_file_name(name)
}

/// The view from `--view`, `--from` and `--to`.
fn resolve_view(
    rec: &Recording,
    view: Option<View>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<ExportView> {
    let ranged = from.is_some() || to.is_some();
    Ok(match (view, ranged) {
        (Some(View::Range), _) | (None, true) => {
            let end = rec.summary().duration_ns;
            let from = from.map_or(Ok(0), |w| parse_when(rec, w))?;
            let to = to.map_or(Ok(end), |w| parse_when(rec, w))?;
            if from > end {
                bail!(
                    "--from {} is after the end of the recording, which lasts {}: nothing in \
                     the range was recorded (give times from 0 to the end, or marker labels)",
                    format_duration_ns(from),
                    format_duration_ns(end)
                );
            }
            if from > to {
                bail!(
                    "--from ({}) is after --to ({}): the range is empty",
                    format_duration_ns(from),
                    format_duration_ns(to)
                );
            }
            let (from, to) = within_recording(from, to, end);
            ExportView::Range { from, to }
        }
        (Some(v), true) => bail!("--from and --to go with --view range, not --view {v:?}"),
        (Some(View::Peak) | None, false) => ExportView::Peak,
        (Some(View::Leaks), false) => ExportView::Leaks,
        (Some(View::Total), false) => ExportView::Total,
    })
}

/// The range `from..=to` (ns, `from` within the recording) cut at the recording's end,
/// `end` ns, with a warning when it goes past it.
fn within_recording(from: u64, to: u64, end: u64) -> (u64, u64) {
    if to > end {
        eprintln!(
            "memlens: warning: --to {} is after the end of the recording, which lasts {}: the \
             range ends there",
            format_duration_ns(to),
            format_duration_ns(end)
        );
    }
    (from, to.min(end))
}

/// A moment of the recording (ns since its start): `start`, `end`, a `memlens.mark()` label
/// (its first marker), or a time with a unit (ns, us, ms, s; a bare number is seconds).
pub fn parse_when(rec: &Recording, when: &str) -> Result<u64> {
    if let Some(m) = rec.markers().iter().find(|m| m.label == when) {
        return Ok(m.time_ns);
    }
    match when {
        "start" => return Ok(0),
        "end" => return Ok(rec.summary().duration_ns),
        _ => {}
    }
    let t = when.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        _ => f64::NAN,
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && scale.is_finite() => Ok((v * scale).round() as u64),
        _ => {
            let labels: Vec<&str> =
                rec.markers().iter().map(|m| m.label.as_str()).take(10).collect();
            let known = if labels.is_empty() {
                "the recording has no markers".to_owned()
            } else {
                format!("its markers: {}", labels.join(", "))
            };
            bail!(
                "{when:?} is neither a time (2.5s, 300ms, 40us, 1000ns), start, end nor a \
                 marker label ({known})"
            )
        }
    }
}

/// How the totals are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// From the aggregates when the recording has them.
    Fastest,
    /// By replaying every event.
    Replay,
}

fn by_thread(rec: &Recording, snapshot: Snapshot, how: How) -> Result<ThreadStackTotals> {
    Ok(match how {
        How::Fastest => thread_stack_totals(rec, snapshot)?,
        How::Replay => replay::thread_stack_totals(rec, snapshot)?,
    })
}

fn by_stack(rec: &Recording, snapshot: Snapshot, how: How) -> Result<StackTotals> {
    let all = EventFilter::default();
    Ok(match how {
        How::Fastest => stack_totals(rec, snapshot, &all)?,
        How::Replay => replay::stack_totals(rec, snapshot, &all)?,
    })
}

/// The file's bytes.
fn encode(
    rec: &Recording,
    format: Format,
    view: ExportView,
    how: How,
    file: &Path,
) -> Result<Vec<u8>> {
    let name = file.display().to_string();
    Ok(match format {
        Format::Pprof => {
            let in_use = by_thread(rec, view.in_use(), how)?;
            let allocated = by_thread(rec, view.allocated(), how)?;
            let meta = rec.meta();
            let options = PprofOptions {
                time_nanos: meta.start_unix_ms.saturating_mul(1_000_000),
                duration_nanos: rec.summary().duration_ns,
                // A sampled recording's figures are estimates: say so where pprof shows them.
                comments: [
                    format!("memlens export of {name}: {}", view.title()),
                    format!("command: {}", meta.command_line.join(" ")),
                    format!("Python {}", meta.python_version),
                ]
                .into_iter()
                .chain(sampling_notice(rec))
                .collect(),
            };
            let proto = pprof(rec, &in_use, &allocated, view, &options);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&proto)?;
            gz.finish()?
        }
        Format::Speedscope => {
            let mut views = vec![ExportView::Peak, ExportView::Leaks, ExportView::Total];
            if let ExportView::Range { .. } = view {
                views.push(view);
            }
            let active = views.iter().position(|&v| v == view).unwrap_or(0);
            let profiles = views
                .into_iter()
                .map(|v| Ok((v.title(), by_stack(rec, v.weight(), how)?)))
                .collect::<Result<Vec<_>>>()?;
            serde_json::to_vec(&speedscope(rec, &profiles, active, &name))?
        }
        Format::Collapsed => {
            let mut out = Vec::new();
            write_collapsed(rec, &by_stack(rec, view.weight(), how)?, &mut out)?;
            out
        }
    })
}
