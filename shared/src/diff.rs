//! Comparing two recordings: memory per call site, matched by function and file (not line, so
//! edits that shift lines don't break the match).

use rustc_hash::FxHashMap;

use crate::{Recording, StackTotals, Totals};

/// A call site present in either recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDelta {
    /// Qualified function name of the innermost frame.
    pub function: String,
    /// Its file.
    pub file: String,
    /// Memory there in the base recording.
    pub base: Totals,
    /// Memory there in the head recording.
    pub head: Totals,
}

impl SiteDelta {
    /// Head bytes minus base bytes.
    pub fn delta(&self) -> i64 {
        self.head.bytes as i64 - self.base.bytes as i64
    }
}

fn by_site(rec: &Recording, totals: &StackTotals) -> FxHashMap<(String, String), Totals> {
    let mut map: FxHashMap<(String, String), Totals> = FxHashMap::default();
    for &(stack, t) in &totals.stacks {
        let key = match rec.stack_frames(stack).next().and_then(|f| rec.frame(f)) {
            Some(f) => (rec.string(f.function).to_owned(), rec.string(f.file).to_owned()),
            None => ("<no Python frame>".to_owned(), String::new()),
        };
        map.entry(key).or_default().merge(t);
    }
    map
}

/// Memory per call site in both recordings, biggest absolute change first.
pub fn diff_sites(
    base: &Recording,
    base_totals: &StackTotals,
    head: &Recording,
    head_totals: &StackTotals,
) -> Vec<SiteDelta> {
    let mut b = by_site(base, base_totals);
    let h = by_site(head, head_totals);
    let mut out: Vec<SiteDelta> = h
        .into_iter()
        .map(|((function, file), head)| {
            let base = b.remove(&(function.clone(), file.clone())).unwrap_or_default();
            SiteDelta { function, file, base, head }
        })
        .collect();
    out.extend(b.into_iter().map(|((function, file), base)| SiteDelta {
        function,
        file,
        base,
        head: Totals::default(),
    }));
    out.sort_by(|x, y| {
        y.delta()
            .unsigned_abs()
            .cmp(&x.delta().unsigned_abs())
            .then_with(|| (&x.function, &x.file).cmp(&(&y.function, &y.file)))
    });
    out
}

/// Reasons two recordings may not be comparable: different program or Python version.
pub fn incomparable_reasons(base: &Recording, head: &Recording) -> Vec<String> {
    let mut out = Vec::new();
    let program = |r: &Recording| {
        let cmd = &r.meta().command_line;
        // python3 path/to/script.py args: the script and args matter, not the interpreter path.
        cmd.iter().skip(1).map(|a| a.rsplit('/').next().unwrap_or(a).to_owned()).collect::<Vec<_>>()
    };
    if program(base) != program(head) {
        out.push(format!(
            "different commands: `{}` vs `{}`",
            base.meta().command_line.join(" "),
            head.meta().command_line.join(" ")
        ));
    }
    if base.meta().python_version != head.meta().python_version {
        out.push(format!(
            "different Python versions: {} vs {}",
            base.meta().python_version,
            head.meta().python_version
        ));
    }
    out
}
