//! Analyses of object censuses: the top types at one census, what grew between two (by type
//! and by allocation site), and the deepest Python stack against the recursion limit.
//!
//! Pure functions over [`Census`] records; shared by `memlens summary` and the viewer.
//!
//! ```
//! use memlens_format::*;
//! let t = |q: u32, count, bytes| TypeCensus {
//!     module: StringId(0), qualname: StringId(q), count, bytes, ..Default::default()
//! };
//! let a = Census { types: vec![t(1, 10, 100)], ..Default::default() };
//! let b = Census { types: vec![t(1, 30, 300), t(2, 1, 5000)], ..Default::default() };
//! assert_eq!(top_types(&b, TypeOrder::Bytes, 1)[0].qualname, StringId(2));
//! let g = type_growth(&a, &b);
//! assert_eq!((g[0].qualname, g[0].count_delta, g[0].bytes_delta), (StringId(2), 1, 5000));
//! ```

use rustc_hash::FxHashMap;

use crate::{Census, Recording, StackId, StringId, TypeCensus};

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
}

fn delta(a: u64, b: u64) -> i64 {
    (b as i128 - a as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Types whose objects changed between censuses `a` and `b`, largest growth in bytes first
/// (shrinking types last). Types present in only one census count as 0 in the other.
pub fn type_growth(a: &Census, b: &Census) -> Vec<TypeGrowth> {
    let mut by: FxHashMap<(StringId, StringId), (u64, u64, u64, u64)> = FxHashMap::default();
    for t in &a.types {
        let e = by.entry((t.module, t.qualname)).or_default();
        e.0 += t.count;
        e.1 += t.bytes;
    }
    for t in &b.types {
        let e = by.entry((t.module, t.qualname)).or_default();
        e.2 += t.count;
        e.3 += t.bytes;
    }
    let mut v: Vec<TypeGrowth> = by
        .into_iter()
        .filter(|(_, (c0, b0, c1, b1))| c0 != c1 || b0 != b1)
        .map(|((module, qualname), (c0, b0, c1, b1))| TypeGrowth {
            module,
            qualname,
            count_delta: delta(c0, c1),
            bytes_delta: delta(b0, b1),
            count: c1,
        })
        .collect();
    v.sort_by_key(|g| (std::cmp::Reverse(g.bytes_delta), g.module, g.qualname));
    v
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
}

/// Allocation sites whose live objects changed between censuses, largest growth first. Only
/// the top [`TypeCensus::MAX_SITES`] sites of each type are recorded, so a type spread over
/// more sites than that is undercounted here.
pub fn site_growth(a: &Census, b: &Census) -> Vec<SiteGrowth> {
    let mut by: FxHashMap<StackId, [u64; 4]> = FxHashMap::default();
    for (i, c) in [a, b].into_iter().enumerate() {
        for s in c.types.iter().flat_map(|t| &t.sites) {
            let e = by.entry(s.stack).or_default();
            e[2 * i] += s.count;
            e[2 * i + 1] += s.bytes;
        }
    }
    let mut v: Vec<SiteGrowth> = by
        .into_iter()
        .filter(|(_, e)| e[0] != e[2] || e[1] != e[3])
        .map(|(stack, e)| SiteGrowth {
            stack,
            count_delta: delta(e[0], e[2]),
            bytes_delta: delta(e[1], e[3]),
        })
        .collect();
    v.sort_by_key(|g| (std::cmp::Reverse(g.bytes_delta), g.stack));
    v
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
    rec.censuses().iter().max_by_key(|c| c.time_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TypeSite;

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
        let g = type_growth(&a, &b);
        let got: Vec<(u32, i64, i64)> =
            g.iter().map(|g| (g.qualname.0, g.count_delta, g.bytes_delta)).collect();
        assert_eq!(got, [(1, 20, 200), (3, 1, 8), (2, -4, -40)]);
        let s = site_growth(&a, &b);
        let got: Vec<(u32, i64)> = s.iter().map(|s| (s.stack.0, s.bytes_delta)).collect();
        assert_eq!(got, [(5, 200), (6, -40)]);
        assert!(type_growth(&a, &a).is_empty());
    }
}
