//! The user's code first: which frames are the program's own, and call sites named by them.
//!
//! Most memory is allocated inside libraries (`numpy.ones`, `json.loads`, pandas' readers),
//! but what a user can change is the line of their own code that called them. A *user site*
//! names the innermost frame of a stack outside the standard library and installed packages
//! (and outside memlens), with the innermost frame beside it when that one is a library's.

use rustc_hash::FxHashMap;

use crate::{is_internal_frame, FrameId, Recording, StackId, StackTotals, Totals};

/// Whether `file` belongs to an installed package (`site-packages`, `dist-packages`), the
/// standard library (`.../lib/python3.X/...`) or the interpreter itself (`<frozen os>`),
/// rather than to the program, or is a shared library of the system (`/usr/lib/.../libz.so.1`:
/// the file of a native frame without line information, `memlens run --native-stacks`).
/// Native frames' source files count the same way: Rust's standard library (`/rustc/<commit>/
/// library/...`) and crates from a registry (`.cargo/registry/src/...`), system headers (the
/// C++ standard library's templates), and CPython's own C sources (`.../Python-3.11.7/
/// Modules/...`, as a source build of the interpreter names them). Recognized from the path
/// alone, so it works on recordings made anywhere, in any virtualenv and Python version.
pub fn is_library_file(file: &str) -> bool {
    file.contains("/site-packages/")
        || file.contains("/dist-packages/")
        || file.starts_with("<frozen ")
        || stdlib_relative(file).is_some()
        || (["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"].iter().any(|d| file.starts_with(d))
            && file.contains(".so"))
        || file.starts_with("/rustc/")
        || file.contains("/.cargo/registry/src/")
        || file.starts_with("/usr/include/")
        || cpython_source(file)
}

/// Whether `file` is one of CPython's C sources: `Modules/`, `Objects/`, `Python/`, `Parser/`
/// or `Include/` right under a `Python-3.X...` source tree.
fn cpython_source(file: &str) -> bool {
    file.split('/').collect::<Vec<_>>().windows(2).any(|w| {
        let version = w[0].strip_prefix("Python-3.").unwrap_or("-");
        version.starts_with(|c: char| c.is_ascii_digit())
            && version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '+')
            && ["Modules", "Objects", "Python", "Parser", "Include"].contains(&w[1])
    })
}

/// The part of a standard-library path after `lib/python3.X/`, if `file` is one
/// (`/usr/lib/python3.11/json/decoder.py` -> `json/decoder.py`).
pub(crate) fn stdlib_relative(file: &str) -> Option<&str> {
    for marker in ["/lib/python3.", "/lib64/python3."] {
        if let Some(i) = file.find(marker) {
            let rest = &file[i + marker.len()..];
            // The version's minor number (and a `t` for free-threaded builds), then '/'.
            let version_len = rest.find('/')?;
            if rest[..version_len].chars().all(|c| c.is_ascii_digit() || c == 't') {
                return Some(&rest[version_len + 1..]);
            }
        }
    }
    None
}

/// The frames that name a stack's call site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserSite {
    /// The innermost frame in the program's own code, in a file of its own when there is
    /// one (rather than in code it made with exec or eval); when the whole stack is library
    /// code, its innermost frame. `None` for the empty stack.
    pub user: Option<FrameId>,
    /// The innermost frame, when it is not `user`: a library's, or code made up by exec or
    /// eval (a dataclass's generated `__init__`) that `user` called.
    pub library: Option<FrameId>,
}

/// The user site of `stack`. memlens's own frames, the import system's and the interpreter's
/// native ones are skipped.
pub fn user_site(rec: &Recording, stack: StackId) -> UserSite {
    let file = |f: FrameId| rec.frame(f).map_or("", |fr| rec.string(fr.file));
    // Innermost first.
    let frames: Vec<(FrameId, &str)> = rec
        .stack_frames(stack)
        .filter(|&f| !is_internal_frame(rec, f))
        .map(|f| (f, file(f)))
        .collect();
    let Some(&(innermost, _)) = frames.first() else {
        return UserSite { user: None, library: None };
    };
    // A line in a file of the program's own, before code it made up (a dataclass's or an
    // ORM's generated `__init__`, called from the program's line: that line is the user's).
    let users = || (0..frames.len()).filter(|&i| !is_library_frame(&frames, i));
    match users().find(|&i| !made_up(frames[i].1)).or_else(|| users().next()) {
        Some(0) | None => UserSite { user: Some(innermost), library: None },
        Some(i) => UserSite { user: Some(frames[i].0), library: Some(innermost) },
    }
}

/// Whether `file` is a name made up for code made by exec or eval (`<string>`, `<sqlalchemy
/// generated __init__ ...>`), not a file; notebook cells and frozen modules are not.
fn made_up(file: &str) -> bool {
    file.starts_with('<') && !file.starts_with("<ipython-input-") && !file.starts_with("<frozen ")
}

/// Whether `frames[i]` (innermost first) is library code: [`is_library_file`], or code made
/// by exec or eval with a made-up file name such as `<string>` (namedtuple's and
/// dataclasses' methods) run by library code: such a frame takes its caller's side, and the
/// outermost one is the program's (`python -c`, stdin). Notebook cells are the program's.
fn is_library_frame(frames: &[(FrameId, &str)], i: usize) -> bool {
    match frames[i..].iter().find(|(_, name)| !made_up(name)) {
        Some((_, name)) => is_library_file(name),
        None => false,
    }
}

/// One row of [`user_sites`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSiteTotals {
    /// The user frame (`None`: allocations with no Python frame).
    pub user: Option<FrameId>,
    /// The library frame under it that holds more than half of its memory (none when the
    /// memory is spread over several, or allocated right at the user frame).
    pub library: Option<FrameId>,
    /// Memory of every stack with this user frame.
    pub totals: Totals,
}

/// Memory per user frame (by frame: function, file and line), largest first.
pub fn user_sites(rec: &Recording, totals: &StackTotals) -> Vec<UserSiteTotals> {
    // Bytes per library frame under each user frame (`None`: allocated at the user frame).
    type Libraries = FxHashMap<Option<FrameId>, u64>;
    let mut by_user: FxHashMap<Option<FrameId>, (Totals, Libraries)> = FxHashMap::default();
    for &(stack, t) in &totals.stacks {
        let site = user_site(rec, stack);
        let entry = by_user.entry(site.user).or_default();
        entry.0.merge(t);
        *entry.1.entry(site.library).or_default() += t.bytes;
    }
    let mut rows: Vec<UserSiteTotals> = by_user
        .into_iter()
        .map(|(user, (totals, libs))| UserSiteTotals {
            user,
            library: most_of(&libs).flatten(),
            totals,
        })
        .collect();
    rows.sort_by(|a, b| b.totals.bytes.cmp(&a.totals.bytes).then(a.user.cmp(&b.user)));
    rows
}

/// The key holding more than half of all the bytes, if one does: the library function a
/// site's memory is in, named beside it only when it is where most of it is (a line that
/// imports a package holds memory in hundreds of library functions, none of which is "where
/// it went").
pub(crate) fn most_of<K: Clone>(bytes: &FxHashMap<K, u64>) -> Option<K> {
    let all = crate::saturating_sum(bytes.values().copied());
    bytes.iter().find(|&(_, &b)| b > all / 2).map(|(k, _)| k.clone())
}

/// `function (file:line)` of a frame.
pub fn frame_label(rec: &Recording, frame: FrameId) -> String {
    match rec.frame(frame) {
        Some(f) => format!("{} ({}:{})", rec.string(f.function), rec.string(f.file), f.line),
        None => "<unknown frame>".into(),
    }
}

/// A stack's call site in words: the user frame, with the library frame it called
/// (`make (app.py:12) in ones (numpy/_core/numeric.py:232)`).
pub fn site_label(rec: &Recording, stack: StackId) -> String {
    let site = user_site(rec, stack);
    let Some(user) = site.user else { return "<no Python frame>".into() };
    match site.library {
        Some(lib) => format!("{} in {}", frame_label(rec, user), frame_label(rec, lib)),
        None => frame_label(rec, user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::{Meta, ProcessEnd, RecordingWriter};

    #[test]
    fn library_files_are_recognized_by_path() {
        for f in [
            "/venv/lib/python3.11/site-packages/numpy/_core/numeric.py",
            "/usr/lib/python3/dist-packages/yaml/__init__.py",
            "/usr/lib/python3.11/json/decoder.py",
            "/root/.pyenv/versions/3.12.1/lib/python3.12/asyncio/queues.py",
            "/opt/py/lib64/python3.13t/threading.py",
            "<frozen os>",
            "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
            "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/alloc.rs",
            "/root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/hashbrown-0.15.2/src/raw.rs",
            "/usr/include/c++/12/bits/stl_vector.h",
            "/tmp/python-build.20260509073455.222/Python-3.11.7/Modules/_ctypes/callproc.c",
            "/build/Python-3.12.1/Objects/listobject.c",
        ] {
            assert!(is_library_file(f), "{f}");
        }
        for f in [
            "/srv/app/main.py",
            "app.py",
            "<string>",
            "<ipython-input-3-abc>",
            "/lib/python3.x/a.py",
            "/srv/app/build/libmine.so",
            "/srv/app/rust/src/lib.rs",
            "/srv/Python-3.11-tools/Modules/mine.c",
        ] {
            assert!(!is_library_file(f), "{f}");
        }
        assert_eq!(stdlib_relative("/usr/lib/python3.11/json/decoder.py"), Some("json/decoder.py"));
    }

    fn push(
        w: &mut RecordingWriter<Vec<u8>>,
        parent: StackId,
        function: &str,
        file: &str,
    ) -> StackId {
        let f = w.intern_frame(function, file, 1);
        w.intern_stack(parent, f)
    }

    #[test]
    fn the_user_frame_is_the_innermost_outside_libraries_and_memlens() {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        let module = push(&mut w, StackId::ROOT, "<module>", "/srv/app/main.py");
        let make = push(&mut w, module, "make", "/srv/app/main.py");
        let ones =
            push(&mut w, make, "ones", "/venv/lib/python3.11/site-packages/numpy/numeric.py");
        let census = push(&mut w, ones, "census", "/tmp/memlens-py-1-2/memlens/_census.py");
        let nt = push(&mut w, module, "namedtuple", "/usr/lib/python3.11/collections/__init__.py");
        let tuple_new = push(&mut w, nt, "<lambda>", "<string>");
        let dash_c = push(&mut w, StackId::ROOT, "<module>", "<string>");
        let dash_c_function = push(&mut w, dash_c, "f", "<string>");
        let generated = push(&mut w, make, "__init__", "<string>");
        let orm = push(&mut w, make, "__init__", "<sqlalchemy generated __init__ for User>");
        let cell = push(&mut w, nt, "<module>", "<ipython-input-3-0123>");
        let rec = Recording::from_vec(w.finish(ProcessEnd::default()).unwrap()).unwrap();
        let frame = |s: StackId| rec.stack(s).map(|n| n.frame);
        assert_eq!(user_site(&rec, make), UserSite { user: frame(make), library: None });
        let via_numpy = UserSite { user: frame(make), library: frame(ones) };
        assert_eq!(user_site(&rec, ones), via_numpy);
        assert_eq!(user_site(&rec, census), via_numpy, "memlens's own frames are skipped");
        assert_eq!(user_site(&rec, module).user, frame(module));
        let eval_in_library = UserSite { user: frame(module), library: frame(tuple_new) };
        assert_eq!(user_site(&rec, tuple_new), eval_in_library, "eval'd code is its caller's");
        assert_eq!(user_site(&rec, dash_c).user, frame(dash_c), "python -c code is the program's");
        let in_made_up = |s| UserSite { user: frame(make), library: frame(s) };
        assert_eq!(user_site(&rec, generated), in_made_up(generated), "the line that called it");
        assert_eq!(user_site(&rec, orm), in_made_up(orm));
        let dash_c_site = UserSite { user: frame(dash_c_function), library: None };
        assert_eq!(user_site(&rec, dash_c_function), dash_c_site, "no line in a file");
        assert_eq!(user_site(&rec, cell).user, frame(cell), "notebook cells are the program's");
        assert_eq!(user_site(&rec, StackId::ROOT), UserSite { user: None, library: None });
        assert_eq!(
            site_label(&rec, ones),
            "make (/srv/app/main.py:1) in ones (/venv/lib/python3.11/site-packages/numpy/numeric.py:1)"
        );
    }

    #[test]
    fn a_site_names_the_library_function_that_holds_most_of_its_memory() {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        let module = push(&mut w, StackId::ROOT, "<module>", "/srv/app/main.py");
        let lib = |w: &mut RecordingWriter<Vec<u8>>, name| {
            push(w, module, name, "/venv/lib/python3.11/site-packages/pkg/mod.py")
        };
        let (a, b, c) = (lib(&mut w, "a"), lib(&mut w, "b"), lib(&mut w, "c"));
        let rec = Recording::from_vec(w.finish(ProcessEnd::default()).unwrap()).unwrap();
        let frame = |s: StackId| rec.stack(s).map(|n| n.frame);
        let named = |held: &[(StackId, u64)]| {
            let stacks = held.iter().map(|&(s, bytes)| (s, Totals { bytes, count: 1 })).collect();
            let sites = user_sites(&rec, &StackTotals { stacks, total: Totals::default() });
            assert_eq!(sites.len(), 1);
            assert_eq!(sites[0].user, frame(module));
            sites[0].library
        };
        assert_eq!(named(&[(a, 60), (b, 40)]), frame(a));
        assert_eq!(named(&[(a, 40), (b, 30), (c, 30)]), None, "spread over several");
        assert_eq!(named(&[(a, 50), (b, 50)]), None);
        assert_eq!(named(&[(module, 70), (a, 30)]), None, "allocated at the line itself");
    }
}
