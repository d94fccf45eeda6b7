//! The JSON models that several commands share (`summary`, `census`, `spans`): call sites,
//! frames and censuses, how they are built from a recording, and a census's text form.
//! Each command's own document type stays in its command; these are its parts.

use std::io::Write;

use anyhow::Result;
use memlens_analysis::{
    format_bytes, format_count, format_duration_ns, top_types, type_name, user_site, user_sites,
    StackTotals, TypeOrder,
};
use memlens_format::{census_trigger, Census, FrameId, Recording, StackId};
use serde::Serialize;

use crate::term::{self, Out, Style};

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
    /// The innermost frame, when it is in a library (of several, the one holding more than
    /// half of the bytes, if one does).
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

/// The call site of `stack` ([`user_site`]; bytes and count from the caller).
pub fn site_of(rec: &Recording, stack: StackId, bytes: u64, count: u64) -> Option<SiteJson> {
    let s = user_site(rec, stack);
    s.user.map(|user| site(rec, Some(user), s.library, bytes, count))
}

/// A census as JSON, with its `top` types by `order`.
pub fn census_json(rec: &Recording, c: &Census, order: TypeOrder, top: usize) -> CensusJson {
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
pub fn sites(rec: &Recording, totals: &StackTotals, top: usize) -> Vec<SiteJson> {
    user_sites(rec, totals)
        .into_iter()
        .filter(|s| s.totals.bytes > 0)
        .take(top)
        .map(|s| site(rec, s.user, s.library, s.totals.bytes, s.totals.count))
        .collect()
}

/// The census's top types under a heading.
pub fn write_census<W: Write>(out: &mut Out<W>, c: &CensusJson) -> Result<()> {
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
