//! Analyses of object censuses: the top types at one census, what grew between two (by type
//! and by allocation site), and the deepest Python stack against the recursion limit.
//!
//! Pure functions over [`Census`] records; shared by `memlens summary` and the viewer.
//!
//! ```
//! use memlens_format::*;
//! use memlens_analysis::*;
//! let t = |q: u32, count, bytes| TypeCensus {
//!     module: StringId(0), qualname: StringId(q), count, bytes, ..Default::default()
//! };
//! let a = Census { types: vec![t(1, 10, 100)], ..Default::default() };
//! let b = Census { types: vec![t(1, 30, 300), t(2, 1, 5000)], ..Default::default() };
//! assert_eq!(top_types(&b, TypeOrder::Bytes, 1)[0].qualname, StringId(2));
//! let g = type_growth(&a, &b, TypeOrder::Bytes);
//! assert_eq!((g[0].qualname, g[0].count_delta, g[0].bytes_delta), (StringId(2), 1, 5000));
//! ```

use rustc_hash::FxHashMap;

use crate::{census_trigger, Census, FrameId, Recording, StackId, StringId, TypeCensus};

/// How [`top_types`] ranks types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeOrder {
    /// Largest total shallow size first.
    Bytes,
    /// Most objects first.
    Count,
}

/// The `n` largest types of a census, by bytes or by count (ties: by name id, for stable
/// output).
pub fn top_types(census: &Census, order: TypeOrder, n: usize) -> Vec<&TypeCensus> {
    let mut v: Vec<&TypeCensus> = census.types.iter().collect();
    match order {
        TypeOrder::Bytes => v.sort_by_key(|t| (std::cmp::Reverse(t.bytes), t.qualname)),
        TypeOrder::Count => v.sort_by_key(|t| (std::cmp::Reverse(t.count), t.qualname)),
    }
    v.truncate(n);
    v
}

/// How one type changed between two censuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeGrowth {
    /// `type.__module__`.
    pub module: StringId,
    /// `type.__qualname__`.
    pub qualname: StringId,
    /// Objects in the later census minus the earlier.
    pub count_delta: i64,
    /// Shallow bytes in the later census minus the earlier.
    pub bytes_delta: i64,
    /// Objects in the later census.
    pub count: u64,
    /// The allocation site whose linked objects of this type grew most in bytes (its figures
    /// are this type's only), when one grew.
    pub site: Option<SiteGrowth>,
}

/// How the objects linked to one allocation stack changed between two censuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteGrowth {
    /// The allocation stack.
    pub stack: StackId,
    /// Linked objects in the later census minus the earlier.
    pub count_delta: i64,
    /// Their recorded bytes, later minus earlier.
    pub bytes_delta: i64,
    /// `__module__` of the type whose objects from this site changed most in bytes.
    pub module: StringId,
    /// `__qualname__` of that type.
    pub qualname: StringId,
}

fn delta(a: u64, b: u64) -> i64 {
    (b as i128 - a as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// A type, as censuses name it.
type TypeKey = (StringId, StringId);

/// `[count in a, bytes in a, count in b, bytes in b]`.
type Pair = [u64; 4];

fn changed(e: &Pair) -> bool {
    e[0] != e[2] || e[1] != e[3]
}

/// The sort key of a change: largest growth first (shrinking last).
fn growth_key(
    order: TypeOrder,
    count_delta: i64,
    bytes_delta: i64,
) -> std::cmp::Reverse<(i64, i64)> {
    std::cmp::Reverse(match order {
        TypeOrder::Bytes => (bytes_delta, count_delta),
        TypeOrder::Count => (count_delta, bytes_delta),
    })
}

/// Counts and bytes per type, and per (type, linked site), in censuses `a` and `b`.
#[allow(clippy::type_complexity)]
fn pair_up(
    a: &Census,
    b: &Census,
) -> (FxHashMap<TypeKey, Pair>, FxHashMap<(TypeKey, StackId), Pair>) {
    let mut types: FxHashMap<TypeKey, Pair> = FxHashMap::default();
    let mut sites: FxHashMap<(TypeKey, StackId), Pair> = FxHashMap::default();
    for (i, c) in [a, b].into_iter().enumerate() {
        for t in &c.types {
            let key = (t.module, t.qualname);
            let e = types.entry(key).or_default();
            e[2 * i] += t.count;
            e[2 * i + 1] += t.bytes;
            for s in &t.sites {
                let e = sites.entry((key, s.stack)).or_default();
                e[2 * i] += s.count;
                e[2 * i + 1] += s.bytes;
            }
        }
    }
    (types, sites)
}

/// Types whose objects changed between censuses `a` and `b`, largest growth first by `order`
/// (shrinking types last). Types present in only one census count as 0 in the other.
pub fn type_growth(a: &Census, b: &Census, order: TypeOrder) -> Vec<TypeGrowth> {
    let (types, sites) = pair_up(a, b);
    // The linked site of each type that grew most in bytes (ties: the lowest stack id).
    let mut best: FxHashMap<TypeKey, SiteGrowth> = FxHashMap::default();
    for (&((module, qualname), stack), e) in &sites {
        let bytes_delta = delta(e[1], e[3]);
        if bytes_delta <= 0 {
            continue;
        }
        let site =
            SiteGrowth { stack, count_delta: delta(e[0], e[2]), bytes_delta, module, qualname };
        let rank = |s: &SiteGrowth| (s.bytes_delta, std::cmp::Reverse(s.stack));
        let cur = best.entry((module, qualname)).or_insert(site);
        if rank(&site) > rank(cur) {
            *cur = site;
        }
    }
    let mut v: Vec<TypeGrowth> = types
        .into_iter()
        .filter(|(_, e)| changed(e))
        .map(|((module, qualname), e)| TypeGrowth {
            module,
            qualname,
            count_delta: delta(e[0], e[2]),
            bytes_delta: delta(e[1], e[3]),
            count: e[2],
            site: best.get(&(module, qualname)).copied(),
        })
        .collect();
    v.sort_by_key(|g| (growth_key(order, g.count_delta, g.bytes_delta), g.module, g.qualname));
    v
}

/// Allocation sites (the line that allocated: a stack's innermost frame) whose live objects
/// changed between censuses, largest growth first by `order`. Stacks that end at the same
/// line count as one site, named by the stack whose objects changed most. Only the top
/// [`TypeCensus::MAX_SITES`] stacks of each type are recorded, so a type spread over more
/// than that is undercounted here.
pub fn site_growth(rec: &Recording, a: &Census, b: &Census, order: TypeOrder) -> Vec<SiteGrowth> {
    let (_, sites) = pair_up(a, b);
    // Per site: the sums, the type that moved most, and the stack that moved most.
    type Site = (Pair, (u64, TypeKey), (u64, StackId));
    let mut by: FxHashMap<Option<FrameId>, Site> = FxHashMap::default();
    for ((key, stack), e) in sites {
        let site = rec.stack(stack).map(|n| n.frame);
        let (sum, top, by_stack) = by.entry(site).or_insert(([0; 4], (0, key), (0, stack)));
        for (s, x) in sum.iter_mut().zip(e) {
            *s += x;
        }
        let moved = delta(e[1], e[3]).unsigned_abs();
        if (moved, std::cmp::Reverse(key)) > (top.0, std::cmp::Reverse(top.1)) {
            *top = (moved, key);
        }
        if (moved, std::cmp::Reverse(stack)) > (by_stack.0, std::cmp::Reverse(by_stack.1)) {
            *by_stack = (moved, stack);
        }
    }
    let mut v: Vec<SiteGrowth> = by
        .into_values()
        .filter(|(e, _, _)| changed(e))
        .map(|(e, (_, (module, qualname)), (_, stack))| SiteGrowth {
            stack,
            count_delta: delta(e[0], e[2]),
            bytes_delta: delta(e[1], e[3]),
            module,
            qualname,
        })
        .collect();
    v.sort_by_key(|g| (growth_key(order, g.count_delta, g.bytes_delta), g.stack));
    v
}

/// What a census was taken at, for lists and menus: `start`, `exit`, `interval` or
/// `mark "label"`.
pub fn census_title(c: &Census) -> String {
    match c.trigger {
        census_trigger::MARK => format!("mark {:?}", c.label),
        t => census_trigger::name(t).to_owned(),
    }
}

/// The index (in [`Recording::censuses`]) of the census `selector` names: the label of a
/// `memlens.mark()`, then `start`, `exit` or `last`, then a plain index. `None` when none
/// matches.
pub fn find_census(rec: &Recording, selector: &str) -> Option<usize> {
    let all = rec.censuses();
    let with = |trigger: u8| all.iter().position(|c| c.trigger == trigger);
    all.iter().position(|c| c.trigger == census_trigger::MARK && c.label == selector).or_else(
        || match selector {
            "start" => with(census_trigger::START),
            "exit" => all.iter().rposition(|c| c.trigger == census_trigger::EXIT),
            "last" => last_census_index(rec),
            _ => selector.parse::<usize>().ok().filter(|&i| i < all.len()),
        },
    )
}

/// The index of the latest census, if any.
pub fn last_census_index(rec: &Recording) -> Option<usize> {
    let all = rec.censuses();
    (0..all.len()).max_by_key(|&i| (all[i].time_ns, i))
}

/// `module.qualname`, without the module for builtins.
pub fn type_name(rec: &Recording, module: StringId, qualname: StringId) -> String {
    match rec.string(module) {
        "builtins" | "" => rec.string(qualname).to_owned(),
        m => format!("{m}.{}", rec.string(qualname)),
    }
}

/// The deepest Python stack that allocated memory, and its depth in frames. The stack table
/// only holds stacks that allocated, so a deeper stack that allocated nothing is not seen.
pub fn deepest_stack(rec: &Recording) -> Option<(StackId, u32)> {
    // Parents come before children, so one pass fills the depths.
    let mut depth = vec![0u32; rec.stack_count()];
    let mut best: Option<(StackId, u32)> = None;
    for i in 1..rec.stack_count() {
        let id = StackId(i as u32);
        let parent = rec.stack(id).map_or(0, |n| n.parent.index());
        depth[i] = depth.get(parent).copied().unwrap_or(0).saturating_add(1);
        if best.is_none_or(|(_, d)| depth[i] > d) {
            best = Some((id, depth[i]));
        }
    }
    best
}

/// The latest census of the recording, if any.
pub fn last_census(rec: &Recording) -> Option<&Census> {
    last_census_index(rec).map(|i| &rec.censuses()[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::TypeSite;

    fn ty(q: u32, count: u64, bytes: u64, sites: &[(u32, u64, u64)]) -> TypeCensus {
        TypeCensus {
            module: StringId(0),
            qualname: StringId(q),
            count,
            bytes,
            sites: sites
                .iter()
                .map(|&(s, count, bytes)| TypeSite { stack: StackId(s), count, bytes })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn top_types_by_bytes_and_count() {
        let c = Census {
            types: vec![ty(1, 10, 1000, &[]), ty(2, 500, 900, &[]), ty(3, 1, 5, &[])],
            ..Default::default()
        };
        let names = |v: Vec<&TypeCensus>| v.iter().map(|t| t.qualname.0).collect::<Vec<_>>();
        assert_eq!(names(top_types(&c, TypeOrder::Bytes, 2)), [1, 2]);
        assert_eq!(names(top_types(&c, TypeOrder::Count, 3)), [2, 1, 3]);
    }

    #[test]
    fn growth_by_type_and_site() {
        let a = Census {
            types: vec![ty(1, 10, 100, &[(5, 10, 100)]), ty(2, 4, 40, &[(6, 4, 40)])],
            ..Default::default()
        };
        let b = Census {
            types: vec![ty(1, 30, 300, &[(5, 30, 300)]), ty(3, 1, 8, &[])],
            ..Default::default()
        };
        let g = type_growth(&a, &b, TypeOrder::Bytes);
        let got: Vec<(u32, i64, i64)> =
            g.iter().map(|g| (g.qualname.0, g.count_delta, g.bytes_delta)).collect();
        assert_eq!(got, [(1, 20, 200), (3, 1, 8), (2, -4, -40)]);
        let sites: Vec<Option<StackId>> = g.iter().map(|g| g.site.map(|s| s.stack)).collect();
        assert_eq!(sites, [Some(StackId(5)), None, None]);
        let by_count: Vec<u32> =
            type_growth(&a, &b, TypeOrder::Count).iter().map(|g| g.qualname.0).collect();
        assert_eq!(by_count, [1, 3, 2]);
        let s = site_growth(&stacks(), &a, &b, TypeOrder::Bytes);
        let got: Vec<(u32, i64, u32)> =
            s.iter().map(|s| (s.stack.0, s.bytes_delta, s.qualname.0)).collect();
        assert_eq!(got, [(5, 200, 1), (6, -40, 2)]);
        assert!(type_growth(&a, &a, TypeOrder::Count).is_empty());
    }

    #[test]
    fn growth_names_the_site_and_type_that_grew_most() {
        // Type 1 grows at site 5 (+100 B) and site 7 (+900 B); site 7 also loses type 2.
        let a = Census {
            types: vec![ty(1, 2, 20, &[(5, 1, 10), (7, 1, 10)]), ty(2, 5, 50, &[(7, 5, 50)])],
            ..Default::default()
        };
        let b = Census {
            types: vec![
                ty(1, 20, 1020, &[(5, 10, 110), (7, 10, 910)]),
                ty(2, 1, 10, &[(7, 1, 10)]),
            ],
            ..Default::default()
        };
        let g = type_growth(&a, &b, TypeOrder::Bytes);
        let site = g[0].site.unwrap();
        assert_eq!(g[0].qualname, StringId(1));
        assert_eq!((site.stack, site.count_delta, site.bytes_delta), (StackId(7), 9, 900));
        let s = site_growth(&stacks(), &a, &b, TypeOrder::Bytes);
        assert_eq!((s[0].stack, s[0].bytes_delta, s[0].qualname), (StackId(7), 860, StringId(1)));
    }

    /// A recording with stacks 1 to 8, each its own frame, and stack 9: a second caller of
    /// stack 7's frame.
    fn stacks() -> Recording {
        use memlens_format::{Meta, ProcessEnd, RecordingWriter};
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        let mut last = StackId::ROOT;
        for i in 1..=8u32 {
            let f = w.intern_frame(&format!("f{i}"), "app.py", i);
            last = w.intern_stack(StackId::ROOT, f);
            assert_eq!(last, StackId(i));
        }
        let f7 = w.intern_frame("f7", "app.py", 7);
        assert_eq!(w.intern_stack(last, f7), StackId(9));
        Recording::open(&w.finish(ProcessEnd::default()).unwrap()).unwrap()
    }

    /// census --growth listed one line at +72 B and again at -72 B: objects made at one line
    /// moved from one caller's stack to another's. They are one site, which did not change.
    #[test]
    fn stacks_ending_at_one_line_are_one_site() {
        let a = Census { types: vec![ty(1, 1, 72, &[(7, 1, 72)])], ..Default::default() };
        let b = Census { types: vec![ty(1, 1, 72, &[(9, 1, 72)])], ..Default::default() };
        assert!(site_growth(&stacks(), &a, &b, TypeOrder::Bytes).is_empty());
        let c = Census { types: vec![ty(1, 2, 144, &[(9, 2, 144)])], ..Default::default() };
        let s = site_growth(&stacks(), &a, &c, TypeOrder::Bytes);
        let got: Vec<(u32, i64)> = s.iter().map(|s| (s.stack.0, s.bytes_delta)).collect();
        assert_eq!(got, [(9, 72)]);
    }

    #[test]
    fn censuses_are_found_by_label_trigger_or_index() {
        use memlens_format::{Meta, ProcessEnd, RecordingWriter};
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        let at = |time_ns, trigger, label: &str| Census {
            time_ns,
            trigger,
            label: label.into(),
            ..Default::default()
        };
        w.census(at(10, census_trigger::START, ""));
        w.census(at(20, census_trigger::MARK, "loaded"));
        w.census(at(30, census_trigger::MARK, "7"));
        w.census(at(40, census_trigger::EXIT, ""));
        let bytes = w.finish(ProcessEnd { time_ns: 50, exit_code: Some(0), signal: None }).unwrap();
        let rec = Recording::open(&bytes).unwrap();
        let find = |s: &str| find_census(&rec, s);
        assert_eq!(
            [find("start"), find("loaded"), find("exit"), find("last"), find("1"), find("7")],
            [Some(0), Some(1), Some(3), Some(3), Some(1), Some(2)]
        );
        assert_eq!([find("4"), find("nope"), find("")], [None, None, None]);
        let titles: Vec<String> = rec.censuses().iter().map(census_title).collect();
        assert_eq!(titles, ["start", "mark \"loaded\"", "mark \"7\"", "exit"]);
    }
}
