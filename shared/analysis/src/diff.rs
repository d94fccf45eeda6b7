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

/// A file name that is the same in two checkouts or environments: relative to the program's
/// working directory when inside it, from `site-packages/` for installed packages, from the
/// version directory for the standard library.
pub fn comparable_file<'a>(file: &'a str, cwd: &str) -> &'a str {
    let cwd = cwd.trim_end_matches('/');
    if !cwd.is_empty() {
        if let Some(rest) = file.strip_prefix(cwd).and_then(|r| r.strip_prefix('/')) {
            return rest;
        }
    }
    // memlens' own package, written to a fresh `memlens-py-<pid>-<n>/` folder for each run.
    if let Some(rest) = file.find("/memlens-py-").map(|i| &file[i + 1..]) {
        if let Some(j) = rest.find('/') {
            return &rest[j + 1..];
        }
    }
    if let Some(i) = file.rfind("/site-packages/") {
        return &file[i + "/site-packages/".len()..];
    }
    if let Some(i) = file.find("/lib/python3.") {
        // `/usr/lib/python3.11/json/decoder.py` -> `json/decoder.py`.
        let rest = &file[i + "/lib/python3.".len()..];
        if let Some(j) = rest.find('/') {
            return &rest[j + 1..];
        }
    }
    file
}

fn by_site(rec: &Recording, totals: &StackTotals) -> FxHashMap<(String, String), Totals> {
    let mut map: FxHashMap<(String, String), Totals> = FxHashMap::default();
    let cwd = rec.meta().cwd.as_str();
    for &(stack, t) in &totals.stacks {
        let key = match rec.stack_frames(stack).next().and_then(|f| rec.frame(f)) {
            Some(f) => (
                rec.string(f.function).to_owned(),
                comparable_file(rec.string(f.file), cwd).to_owned(),
            ),
            None => ("<no Python frame>".to_owned(), String::new()),
        };
        map.entry(key).or_default().merge(t);
    }
    map
}

/// Memory per call site in both recordings, biggest absolute change first. Files are
/// compared by [`comparable_file`], so two checkouts in different folders match.
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
    let rss_only = |r: &Recording| r.meta().capture.rss_only;
    if rss_only(base) != rss_only(head) {
        let which = if rss_only(base) { "the base" } else { "the head" };
        out.push(format!(
            "{which} holds memory samples only (--rss-only), so it has no allocations to compare"
        ));
        return out;
    }
    let (bv, hv) = (&base.meta().python_version, &head.meta().python_version);
    if !bv.is_empty() && !hv.is_empty() && bv != hv {
        out.push(format!(
            "different Python versions: {} vs {}",
            base.meta().python_version,
            head.meta().python_version
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::comparable_file;

    #[test]
    fn files_compare_across_checkouts_and_environments() {
        assert_eq!(comparable_file("/ci/base/app/main.py", "/ci/base"), "app/main.py");
        assert_eq!(comparable_file("/ci/head/app/main.py", "/ci/head/"), "app/main.py");
        assert_eq!(
            comparable_file("/venv/lib/python3.11/site-packages/numpy/core/numeric.py", "/ci"),
            "numpy/core/numeric.py"
        );
        assert_eq!(
            comparable_file("/usr/lib/python3.11/json/decoder.py", "/ci"),
            "json/decoder.py"
        );
        assert_eq!(
            comparable_file("<frozen importlib._bootstrap>", "/ci"),
            "<frozen importlib._bootstrap>"
        );
        assert_eq!(comparable_file("/elsewhere/x.py", ""), "/elsewhere/x.py");
    }
}
