//! `memlens census`: the object censuses of a recording (at start, at each `memlens.mark()`,
//! every `--census-interval`, at exit): the list, the top types at any one of them, and what
//! grew between two of them, by type and by allocation site. Text or stable JSON.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use memlens_analysis::{
    census_title, find_census, format_bytes, format_bytes_delta, format_count, format_count_delta,
    format_duration_ns, last_census_index, site_growth, type_growth, type_name, SiteGrowth,
    TypeOrder,
};
use memlens_format::{census_trigger, Census, Recording};
use serde::Serialize;

use crate::load::{open, pick_process, ProcessArg};
use crate::report_model::{census_json, site_of, write_census, CensusJson, FrameJson};
use crate::term::{self, Out, Style};

/// Arguments of `memlens census`.
#[derive(Debug, clap::Args)]
#[command(after_help = "CENSUS names one census: the label of a memlens.mark(), start, exit,
last, or its index in the list (`memlens census FILE` prints the list).

EXAMPLES:
    memlens census out.memlens                        # the censuses, and top types at the last
    memlens census out.memlens --at built             # at the census of memlens.mark(\"built\")
    memlens census out.memlens --at 0 --by count      # at the first one, most objects first
    memlens census out.memlens --growth start..exit   # what grew, by type and allocation site
    memlens census out.memlens --growth loaded..built --json")]
pub struct CensusArgs {
    /// The recording.
    pub file: PathBuf,
    /// The census to list the top types of (default: the last).
    #[arg(long, value_name = "CENSUS", conflicts_with = "growth")]
    pub at: Option<String>,
    /// Growth between two censuses: types and allocation sites that grew most from A to B.
    #[arg(long, value_name = "A..B")]
    pub growth: Option<String>,
    /// Rank types (and growth) by shallow size or by number of objects.
    #[arg(long, value_enum, default_value_t = By::Bytes)]
    pub by: By,
    /// How many types (and sites) to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print JSON (a stable interface: fields are only added) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub process: ProcessArg,
}

/// How to rank types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Total shallow size.
    Bytes,
    /// Number of objects.
    Count,
}

impl From<By> for TypeOrder {
    fn from(by: By) -> TypeOrder {
        match by {
            By::Bytes => TypeOrder::Bytes,
            By::Count => TypeOrder::Count,
        }
    }
}

/// What to show, from the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// Top types at the census with this index.
    At(usize),
    /// Growth between two censuses.
    Growth(usize, usize),
    /// The recording has no census.
    Nothing,
}

/// The JSON document.
#[derive(Debug, Serialize)]
pub struct CensusDocJson {
    pub schema: u32,
    pub file: String,
    /// Every census in the recording, in the order taken.
    pub censuses: Vec<CensusPointJson>,
    /// The census asked for with `--at` (default: the last) and its top types; null with
    /// `--growth` or when there is no census.
    pub census: Option<CensusJson>,
    /// With `--growth A..B`: what changed from A to B.
    pub growth: Option<GrowthJson>,
}

/// One census in the list.
#[derive(Debug, Serialize)]
pub struct CensusPointJson {
    /// What `--at` and `--growth` take.
    pub index: usize,
    pub time_ns: u64,
    /// start, mark, interval or exit.
    pub trigger: String,
    /// The mark's label (empty for other triggers).
    pub label: String,
    /// Live gc-tracked objects counted.
    pub objects: u64,
    /// Their total shallow size.
    pub bytes: u64,
}

/// Growth between two censuses.
#[derive(Debug, Serialize)]
pub struct GrowthJson {
    pub from: CensusPointJson,
    pub to: CensusPointJson,
    /// Types whose objects changed, largest growth first (by `--by`), shrinking ones last.
    pub types: Vec<TypeGrowthJson>,
    /// Allocation sites whose live objects changed, in the same order.
    pub sites: Vec<SiteGrowthJson>,
}

/// One type's change.
#[derive(Debug, Serialize)]
pub struct TypeGrowthJson {
    /// `module.qualname` (no module for builtins).
    pub name: String,
    pub count_delta: i64,
    /// Shallow bytes, later minus earlier.
    pub bytes_delta: i64,
    /// Objects in the later census.
    pub count: u64,
    /// The site whose objects of this type grew most (deltas of this type only).
    pub site: Option<SiteGrowthJson>,
}

/// One allocation site's change.
#[derive(Debug, Serialize)]
pub struct SiteGrowthJson {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub count_delta: i64,
    /// Recorded allocation sizes, later minus earlier.
    pub bytes_delta: i64,
    /// The type whose objects from this site changed most.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The library function the program's line called that made the objects, as in
    /// `summary`'s call sites (`null`: made right at that line).
    pub library: Option<FrameJson>,
}

pub fn run(args: CensusArgs) -> Result<i32> {
    let opened = open(&args.file)?;
    let child = pick_process(&args.file, &opened.rec, args.process.pid)?;
    let rec = child.as_ref().map_or(&opened.rec, |p| &p.rec);
    let query = query(rec, &args)?;
    opened.progress.phase("computing the census");
    let doc = build(rec, &args.file.display().to_string(), query, args.by.into(), args.top);
    drop(opened.progress);
    if args.json {
        crate::json::write(&mut std::io::stdout().lock(), &doc)?;
    } else {
        write_text(&mut term::stdout(), &doc)?;
    }
    Ok(0)
}

/// Resolves `--at` / `--growth` against the recording's censuses.
pub fn query(rec: &Recording, args: &CensusArgs) -> Result<Query> {
    let find = |selector: &str| match find_census(rec, selector.trim()) {
        Some(i) => Ok(i),
        None => {
            bail!("no census {selector:?} in {}; it has: {}", args.file.display(), available(rec))
        }
    };
    if let Some(spec) = &args.growth {
        let Some((a, b)) = spec.split_once("..") else {
            bail!("--growth takes two censuses as A..B (for example start..exit), not {spec:?}");
        };
        return Ok(Query::Growth(find(a)?, find(b)?));
    }
    match (&args.at, last_census_index(rec)) {
        (Some(at), _) => Ok(Query::At(find(at)?)),
        (None, Some(last)) => Ok(Query::At(last)),
        (None, None) => Ok(Query::Nothing),
    }
}

/// The censuses a selector can name, for error messages.
fn available(rec: &Recording) -> String {
    if rec.censuses().is_empty() {
        return "no censuses (recorded with --no-census, or the program ended first)".into();
    }
    let names: Vec<String> = rec
        .censuses()
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i} ({})", census_title(c)))
        .collect();
    names.join(", ")
}

fn point(i: usize, c: &Census) -> CensusPointJson {
    CensusPointJson {
        index: i,
        time_ns: c.time_ns,
        trigger: census_trigger::name(c.trigger).to_owned(),
        label: c.label.clone(),
        objects: c.objects,
        bytes: c.types.iter().map(|t| t.bytes).sum(),
    }
}

fn site_growth_json(rec: &Recording, s: &SiteGrowth) -> SiteGrowthJson {
    let place = site_of(rec, s.stack, 0, 0);
    let (function, file, line, library) = match place {
        Some(p) => (p.function, p.file, p.line, p.library),
        None => ("<no Python frame>".into(), String::new(), 0, None),
    };
    SiteGrowthJson {
        function,
        file,
        line,
        count_delta: s.count_delta,
        bytes_delta: s.bytes_delta,
        type_name: type_name(rec, s.module, s.qualname),
        library,
    }
}

/// The sites of `sites` (in their order, largest growth first) with the rows that would print
/// the same (same line, same library function: several lines inside that function made the
/// objects) merged into one, named by the type of the row that changed most; then the `top`.
fn merged_sites(
    rec: &Recording,
    sites: &[SiteGrowth],
    order: TypeOrder,
    top: usize,
) -> Vec<SiteGrowthJson> {
    let mut rows: Vec<SiteGrowthJson> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for s in sites {
        let row = site_growth_json(rec, s);
        match index.get(&place(&row)) {
            // The first row of a place changed most: it names the type.
            Some(&i) => {
                rows[i].count_delta = rows[i].count_delta.saturating_add(row.count_delta);
                rows[i].bytes_delta = rows[i].bytes_delta.saturating_add(row.bytes_delta);
            }
            None => {
                index.insert(place(&row), rows.len());
                rows.push(row);
            }
        }
    }
    rows.retain(|r| r.count_delta != 0 || r.bytes_delta != 0);
    rows.sort_by_key(|r| {
        std::cmp::Reverse(match order {
            TypeOrder::Bytes => (r.bytes_delta, r.count_delta),
            TypeOrder::Count => (r.count_delta, r.bytes_delta),
        })
    });
    rows.truncate(top);
    rows
}

/// The document for `query`.
pub fn build(
    rec: &Recording,
    file: &str,
    query: Query,
    order: TypeOrder,
    top: usize,
) -> CensusDocJson {
    let all = rec.censuses();
    let mut doc = CensusDocJson {
        schema: 1,
        file: file.to_owned(),
        censuses: all.iter().enumerate().map(|(i, c)| point(i, c)).collect(),
        census: None,
        growth: None,
    };
    match query {
        Query::Nothing => {}
        Query::At(i) => doc.census = Some(census_json(rec, &all[i], order, top)),
        Query::Growth(a, b) => {
            let types = type_growth(&all[a], &all[b], order);
            let sites = site_growth(rec, &all[a], &all[b], order);
            doc.growth = Some(GrowthJson {
                from: point(a, &all[a]),
                to: point(b, &all[b]),
                types: types
                    .iter()
                    .take(top)
                    .map(|g| TypeGrowthJson {
                        name: type_name(rec, g.module, g.qualname),
                        count_delta: g.count_delta,
                        bytes_delta: g.bytes_delta,
                        count: g.count,
                        site: g.site.map(|s| site_growth_json(rec, &s)),
                    })
                    .collect(),
                sites: merged_sites(rec, &sites, order, top),
            });
        }
    }
    doc
}

fn title(p: &CensusPointJson) -> String {
    let what = match p.trigger.as_str() {
        "mark" => format!("mark \"{}\"", term::escape_line(&p.label)),
        t => t.to_owned(),
    };
    format!("#{} {what} at {}", p.index, format_duration_ns(p.time_ns))
}

/// Where a site is, as `summary` shows a call site: the line, and the library function it
/// called (`(in X lib.py:N)`).
fn place(s: &SiteGrowthJson) -> String {
    let mut place = if s.file.is_empty() {
        s.function.clone()
    } else {
        format!("{} {}:{}", s.function, s.file, s.line)
    };
    if let Some(lib) = &s.library {
        place += &format!("  (in {} {}:{})", lib.function, lib.file, lib.line);
    }
    place
}

fn write_text<W: Write>(out: &mut Out<W>, doc: &CensusDocJson) -> Result<()> {
    writeln!(out, "{}", doc.file)?;
    if doc.censuses.is_empty() {
        writeln!(
            out,
            "  no object censuses (recorded with --no-census, or the program ended first)"
        )?;
        return Ok(());
    }
    writeln!(out)?;
    out.paint_line(Style::Heading, "Censuses")?;
    for p in &doc.censuses {
        writeln!(
            out,
            "  {:<34} {:>11} objects  {:>10}",
            title(p),
            format_count(p.objects),
            format_bytes(p.bytes)
        )?;
    }
    if let Some(c) = &doc.census {
        write_census(out, c)?;
    }
    if let Some(g) = &doc.growth {
        writeln!(out)?;
        out.paint_line(
            Style::Heading,
            &format!("Growth from {} to {}", title(&g.from), title(&g.to)),
        )?;
        writeln!(out)?;
        out.paint_line(Style::Heading, "  By type")?;
        if g.types.is_empty() {
            writeln!(out, "    (no change)")?;
        }
        for t in &g.types {
            let at =
                t.site.as_ref().map(|s| format!("  mostly at {}", place(s))).unwrap_or_default();
            write!(out, "    ")?;
            out.paint_change(t.bytes_delta, &format!("{:>11}", format_bytes_delta(t.bytes_delta)))?;
            writeln!(
                out,
                "  {:>10} objects  {} (now {}){at}",
                format_count_delta(t.count_delta),
                t.name,
                format_count(t.count)
            )?;
        }
        writeln!(out)?;
        out.paint_line(Style::Heading, "  By allocation site")?;
        if g.sites.is_empty() {
            writeln!(out, "    (no change in traced objects)")?;
        }
        for s in &g.sites {
            write!(out, "    ")?;
            out.paint_change(s.bytes_delta, &format!("{:>11}", format_bytes_delta(s.bytes_delta)))?;
            writeln!(
                out,
                "  {:>10} objects  {}  (mostly {})",
                format_count_delta(s.count_delta),
                place(s),
                s.type_name
            )?;
        }
    }
    Ok(())
}
