//! Comparing two recordings: memory per call site, matched by function and file (not line, so
//! edits that shift lines don't break the match). A call site is a stack's user frame (see
//! [`crate::user_site`]): the line of the program's own code, whichever library it called.
//!
//! CPython 3.12 inlines list, dict and set comprehensions into the function around them
//! (PEP 709): what a 3.11 run charges to `build.<locals>.<listcomp>` (or `<listcomp>`
//! alone before 3.11), a 3.12 run charges to `build`. When one recording is of a Python
//! before 3.12 and the other of 3.12 or later, such a frame counts as the function that runs
//! it ([`fold_comprehensions`]), so the two sides match. Generator expressions are not inlined
//! and keep their own frame.

use rustc_hash::FxHashMap;

use crate::user_code::{most_of, stdlib_relative};
use crate::{is_internal_frame, user_site, FrameId, Recording, StackId, StackTotals, Totals};

/// A call site present in either recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDelta {
    /// Qualified function name of the user frame.
    pub function: String,
    /// Its file, as [`comparable_file`] gives it.
    pub file: String,
    /// The library function called there that holds more than half of its memory (head,
    /// else base), if one does: (function, comparable file).
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

/// (function, comparable file) of a frame; with `fold`, the function's name without the
/// comprehensions in it ([`without_comprehensions`]).
fn frame_key(rec: &Recording, frame: FrameId, fold: bool) -> (String, String) {
    match rec.frame(frame) {
        Some(f) => {
            let function = rec.string(f.function);
            let function =
                if fold { without_comprehensions(function) } else { function.to_owned() };
            (function, comparable_file(rec.string(f.file), &rec.meta().cwd).to_owned())
        }
        None => ("<unknown frame>".to_owned(), String::new()),
    }
}

/// The comprehensions CPython 3.12 inlines (PEP 709); not `<genexpr>`.
const INLINED: [&str; 3] = ["<listcomp>", "<dictcomp>", "<setcomp>"];

/// Whether a function (a qualified name from 3.11 on, a bare one before) is a list, dict or
/// set comprehension.
fn is_comprehension(function: &str) -> bool {
    INLINED.contains(&function.rsplit('.').next().unwrap_or(function))
}

/// A qualified name as 3.12 has it, where list, dict and set comprehensions are part of the
/// function around them: `build.<locals>.<listcomp>` -> `build`, `f.<locals>.<listcomp>.
/// <genexpr>` -> `f.<locals>.<genexpr>`, `<listcomp>` (at module level) -> `<module>`.
pub fn without_comprehensions(function: &str) -> String {
    let mut parts: Vec<&str> = function.split('.').filter(|p| !INLINED.contains(p)).collect();
    if parts.len() < function.split('.').count() {
        while parts.last() == Some(&"<locals>") {
            parts.pop();
        }
    }
    if parts.is_empty() {
        "<module>".to_owned()
    } else {
        parts.join(".")
    }
}

/// Whether one of the two recordings is of a Python that runs comprehensions in frames of
/// their own (before 3.12) and the other of one that inlines them (3.12 and later). False
/// when either version is unknown.
pub fn fold_comprehensions(base: &Recording, head: &Recording) -> bool {
    let inlines = |rec: &Recording| -> Option<bool> {
        let mut numbers = rec.meta().python_version.split('.').map(|n| n.parse::<u32>().ok());
        let (major, minor) = (numbers.next()??, numbers.next()??);
        Some((major, minor) >= (3, 12))
    };
    matches!((inlines(base), inlines(head)), (Some(a), Some(b)) if a != b)
}

/// With comprehensions folded: the frame that runs the comprehension `user` (its caller in
/// `stack`, the function it is written in), or `user` itself when it is none.
fn enclosing(rec: &Recording, stack: StackId, user: FrameId) -> FrameId {
    let name = |f: FrameId| rec.frame(f).map_or("", |fr| rec.string(fr.function));
    if !is_comprehension(name(user)) {
        return user;
    }
    // Innermost first: the user frame, then its callers.
    let mut callers =
        rec.stack_frames(stack).filter(|&f| !is_internal_frame(rec, f)).skip_while(|&f| f != user);
    let mut at = callers.next().unwrap_or(user);
    while is_comprehension(name(at)) {
        match callers.next() {
            Some(f) => at = f,
            None => break,
        }
    }
    at
}

type Key = (String, String);

/// Bytes per library frame under a user site (`None`: allocated at the user frame).
type Libraries = FxHashMap<Option<Key>, u64>;

/// Memory per user site, with bytes per library frame under it; with `fold`, a comprehension
/// counts as the function it is written in.
fn by_site(
    rec: &Recording,
    totals: &StackTotals,
    fold: bool,
) -> FxHashMap<Key, (Totals, Libraries)> {
    let mut map: FxHashMap<Key, (Totals, Libraries)> = FxHashMap::default();
    for &(stack, t) in &totals.stacks {
        let site = user_site(rec, stack);
        let key = match site.user {
            Some(f) if fold => frame_key(rec, enclosing(rec, stack, f), true),
            Some(f) => frame_key(rec, f, false),
            None => ("<no Python frame>".to_owned(), String::new()),
        };
        let entry = map.entry(key).or_default();
        entry.0.merge(t);
        *entry.1.entry(site.library.map(|f| frame_key(rec, f, fold))).or_default() += t.bytes;
    }
    map
}

/// Memory per call site in both recordings, biggest absolute change first. Files are
/// compared by [`comparable_file`], so two checkouts in different folders match; between a
/// Python before 3.12 and 3.12 or later, comprehensions count as the function they are
/// written in ([`fold_comprehensions`]).
pub fn diff_sites(
    base: &Recording,
    base_totals: &StackTotals,
    head: &Recording,
    head_totals: &StackTotals,
) -> Vec<SiteDelta> {
    let fold = fold_comprehensions(base, head);
    let mut b = by_site(base, base_totals, fold);
    let h = by_site(head, head_totals, fold);
    let mut out: Vec<SiteDelta> = h
        .into_iter()
        .map(|((function, file), (head, head_libs))| {
            let (base, base_libs) = b.remove(&(function.clone(), file.clone())).unwrap_or_default();
            let libs = if head_libs.is_empty() { &base_libs } else { &head_libs };
            let library = most_of(libs).flatten();
            SiteDelta { function, file, library, base, head }
        })
        .collect();
    out.extend(b.into_iter().map(|((function, file), (base, libs))| SiteDelta {
        function,
        file,
        library: most_of(&libs).flatten(),
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
    use super::{comparable_file, without_comprehensions};

    #[test]
    fn comprehensions_are_named_as_their_function_would_be_in_3_12() {
        for (name, folded) in [
            ("build.<locals>.<listcomp>", "build"),
            ("Table.load.<locals>.<dictcomp>", "Table.load"),
            ("f.<locals>.<setcomp>.<listcomp>", "f"),
            ("f.<locals>.<listcomp>.<genexpr>", "f.<locals>.<genexpr>"),
            ("f.<locals>.<genexpr>", "f.<locals>.<genexpr>"),
            ("Config.<listcomp>", "Config"),
            ("<listcomp>", "<module>"),
            ("<genexpr>", "<genexpr>"),
            ("build", "build"),
            ("outer.<locals>.inner", "outer.<locals>.inner"),
        ] {
            assert_eq!(without_comprehensions(name), folded, "{name}");
        }
    }

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
