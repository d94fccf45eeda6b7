//! Comparing two recordings: memory per call site, matched by function and file (not line, so
//! edits that shift lines don't break the match). A call site is a stack's user frame (see
//! [`crate::user_site`]): the line of the program's own code, whichever library it called.

use rustc_hash::FxHashMap;

use crate::user_code::{biggest, stdlib_relative};
use crate::{user_site, FrameId, Recording, StackTotals, Totals};

/// A call site present in either recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDelta {
    /// Qualified function name of the user frame.
    pub function: String,
    /// Its file, as [`comparable_file`] gives it.
    pub file: String,
    /// The library function called there that holds the most (head, else base), if any:
    /// (function, comparable file).
    pub library: Option<(String, String)>,
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

/// A file name that is the same in two checkouts, environments and Python versions: from
/// `site-packages/` (or `dist-packages/`) for installed packages, from the version directory
/// for the standard library (`.../lib/python3.11/json/decoder.py` -> `json/decoder.py`),
/// relative to the program's working directory when inside it. Packages come first: a
/// virtualenv inside the project directory holds the same packages as one elsewhere.
pub fn comparable_file<'a>(file: &'a str, cwd: &str) -> &'a str {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(i) = file.rfind(marker) {
            return &file[i + marker.len()..];
        }
    }
    if let Some(rest) = stdlib_relative(file) {
        return rest;
    }
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
    file
}

/// (function, comparable file) of a frame.
fn frame_key(rec: &Recording, frame: FrameId) -> (String, String) {
    match rec.frame(frame) {
        Some(f) => (
            rec.string(f.function).to_owned(),
            comparable_file(rec.string(f.file), &rec.meta().cwd).to_owned(),
        ),
        None => ("<unknown frame>".to_owned(), String::new()),
    }
}

type Key = (String, String);

/// Bytes per library frame under a user site (`None`: allocated at the user frame).
type Libraries = FxHashMap<Option<Key>, u64>;

/// Memory per user site, with bytes per library frame under it.
fn by_site(rec: &Recording, totals: &StackTotals) -> FxHashMap<Key, (Totals, Libraries)> {
    let mut map: FxHashMap<Key, (Totals, Libraries)> = FxHashMap::default();
    for &(stack, t) in &totals.stacks {
        let site = user_site(rec, stack);
        let key = match site.user {
            Some(f) => frame_key(rec, f),
            None => ("<no Python frame>".to_owned(), String::new()),
        };
        let entry = map.entry(key).or_default();
        entry.0.merge(t);
        *entry.1.entry(site.library.map(|f| frame_key(rec, f))).or_default() += t.bytes;
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
        .map(|((function, file), (head, head_libs))| {
            let (base, base_libs) = b.remove(&(function.clone(), file.clone())).unwrap_or_default();
            let library = biggest(&head_libs).or_else(|| biggest(&base_libs)).flatten();
            SiteDelta { function, file, library, base, head }
        })
        .collect();
    out.extend(b.into_iter().map(|((function, file), (base, libs))| SiteDelta {
        function,
        file,
        library: biggest(&libs).flatten(),
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

    /// Regression (issue 25): a virtualenv inside the project directory was made relative
    /// to the project (`.venv311/lib/python3.11/site-packages/...`), so the same package
    /// in two venvs of different Python versions did not match.
    #[test]
    fn packages_and_stdlib_match_across_python_versions_and_venv_places() {
        let pandas = "pandas/io/parsers/readers.py";
        for (file, cwd) in [
            ("/proj/.venv311/lib/python3.11/site-packages/pandas/io/parsers/readers.py", "/proj"),
            ("/proj/.venv312/lib/python3.12/site-packages/pandas/io/parsers/readers.py", "/proj"),
            ("/home/u/.cache/venv/lib/python3.13/site-packages/pandas/io/parsers/readers.py", "/p"),
            ("/usr/lib/python3/dist-packages/pandas/io/parsers/readers.py", "/proj"),
        ] {
            assert_eq!(comparable_file(file, cwd), pandas, "{file}");
        }
        for file in [
            "/root/.pyenv/versions/3.11.7/lib/python3.11/json/decoder.py",
            "/root/.pyenv/versions/3.12.1/lib/python3.12/json/decoder.py",
        ] {
            assert_eq!(comparable_file(file, "/root"), "json/decoder.py", "{file}");
        }
    }
}
