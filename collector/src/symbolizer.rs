//! Names native return addresses: function, file and line, inlined frames included, in the
//! recorder (never in the traced process, which sends bare addresses and its module map).
//!
//! `addr2line` (gimli-rs, what Rust's own backtraces use) reads DWARF line tables and
//! inline trees lazily, one compilation unit at a time, falls back to the ELF symbol table
//! (`.symtab`, else `.dynsym`) where there is no debug information, and demangles C++ and
//! Rust names. It is a library over plain files: no daemon, no network, no async runtime
//! (blazesym and wholesym bring much more for features we do not use here: debuginfod,
//! Breakpad, PDB). A module's loader, symbol table and answers (by offset in the file) are
//! kept once per run, keyed by the module's build id and path ([`ModuleSymbols`]): a module
//! is opened once however many addresses point into it, and once for every process of a
//! program that loads it (each followed process is recorded on a thread of this one, so a
//! pool's workers share numpy's or OpenBLAS's symbols instead of reading them each).
//!
//! Bad input: a module that cannot be opened or parsed (deleted, not ELF, JIT code outside
//! any module) gives `module+0xoffset` or `[unknown]` frames, never an error; the work per
//! address is bounded by the depth of its inline chain ([`MAX_INLINED`]).

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustc_hash::FxHashMap as HashMap;

/// A loaded module (executable or shared library) of the traced process, as the tracer
/// described it.
pub use memlens_format::NativeModule as Module;

/// The module's file name, for frames without a symbol (`libfoo.so+0x1234`).
pub fn short_name(m: &Module) -> &str {
    m.path.rsplit('/').next().unwrap_or(&m.path)
}

/// One named frame of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub function: String,
    /// The source file, or the module's path when the line is not known.
    pub file: String,
    /// 0: not known.
    pub line: u32,
}

/// Inlined frames kept per address at most (the innermost ones).
const MAX_INLINED: usize = 32;

/// Names one process's addresses, caching answers by address; the modules' own symbols are
/// shared by the whole run ([`ModuleSymbols`]).
#[derive(Default)]
pub struct Symbolizer {
    answers: HashMap<u64, Vec<Symbol>>,
    /// The run's symbols of each module this process's addresses were in, by path.
    modules: HashMap<String, Arc<Mutex<ModuleSymbols>>>,
}

/// What is known of one module file, for every process of the run: its DWARF loader (`None`:
/// the file could not be read), its symbol tables (read when an address has no DWARF name)
/// and the frames found for each offset looked up so far.
#[derive(Default)]
struct ModuleSymbols {
    loader: Option<Option<addr2line::Loader>>,
    table: Option<SymbolTable>,
    answers: HashMap<u64, Vec<Symbol>>,
}

/// The run's [`ModuleSymbols`], by (build id, path): the same file in every process, and a
/// rebuilt one (another build id at the same path) apart.
fn run_modules() -> &'static Mutex<RunModules> {
    static MODULES: OnceLock<Mutex<RunModules>> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

type RunModules = HashMap<(Vec<u8>, String), Arc<Mutex<ModuleSymbols>>>;

/// A module's functions from its symbol tables (`.symtab` and `.dynsym`): (address, size,
/// demangled name), by address.
#[derive(Default)]
struct SymbolTable(Vec<(u64, u64, String)>);

impl SymbolTable {
    fn read(path: &str) -> SymbolTable {
        use object::{Object, ObjectSymbol, SymbolKind};
        let Ok(data) = std::fs::read(path) else { return SymbolTable::default() };
        let Ok(file) = object::File::parse(&*data) else { return SymbolTable::default() };
        let mut all: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                let name = addr2line::demangle_auto(s.name().ok()?.into(), None).into_owned();
                Some((s.address(), s.size(), name))
            })
            .collect();
        all.sort_unstable_by_key(|s| s.0);
        all.dedup_by_key(|s| s.0);
        SymbolTable(all)
    }

    /// The function whose code holds `probe`.
    fn find(&self, probe: u64) -> Option<&str> {
        let i = self.0.partition_point(|s| s.0 <= probe).checked_sub(1)?;
        let (start, size, name) = &self.0[i];
        (probe - start < *size).then_some(name.as_str())
    }
}

impl Symbolizer {
    /// The frames of the return address `address` in `module` (None: in no known module),
    /// outermost first: the function the call was made from, then the functions inlined
    /// into it down to the one holding the call.
    pub fn symbolize(&mut self, module: Option<&Module>, address: u64) -> &[Symbol] {
        if !self.answers.contains_key(&address) {
            let answer = match module {
                None => vec![Symbol { function: "[unknown]".into(), file: String::new(), line: 0 }],
                Some(m) => {
                    let shared = self.modules.entry(m.path.clone()).or_insert_with(|| {
                        let mut run = run_modules().lock().unwrap_or_else(PoisonError::into_inner);
                        run.entry((m.build_id.clone(), m.path.clone())).or_default().clone()
                    });
                    // A return address is just past the call: look up the call itself.
                    let probe = address.wrapping_sub(1).wrapping_sub(m.bias);
                    shared.lock().unwrap_or_else(PoisonError::into_inner).frames(m, probe)
                }
            };
            self.answers.insert(address, answer);
        }
        &self.answers[&address]
    }
}

impl ModuleSymbols {
    /// The frames of offset `probe` of `m`'s file: from DWARF, else the symbol tables, else
    /// `module+0xoffset`.
    fn frames(&mut self, m: &Module, probe: u64) -> Vec<Symbol> {
        if let Some(known) = self.answers.get(&probe) {
            return known.clone();
        }
        let loader =
            self.loader.get_or_insert_with(|| addr2line::Loader::new(Path::new(&m.path)).ok());
        let mut frames = dwarf_frames(loader.as_ref(), m, probe);
        if frames.is_empty() {
            let table = self.table.get_or_insert_with(|| SymbolTable::read(&m.path));
            let function = match table.find(probe) {
                Some(f) => f.to_owned(),
                None => format!("{}+{:#x}", short_name(m), probe + 1),
            };
            frames.push(Symbol { function, file: m.path.clone(), line: 0 });
        }
        self.answers.insert(probe, frames.clone());
        frames
    }
}

/// The frames DWARF gives `probe`, outermost first; none without debug information.
fn dwarf_frames(loader: Option<&addr2line::Loader>, module: &Module, probe: u64) -> Vec<Symbol> {
    let Some(loader) = loader else { return Vec::new() };
    let mut frames = Vec::new();
    if let Ok(mut iter) = loader.find_frames(probe) {
        while let Ok(Some(f)) = iter.next() {
            if frames.len() == MAX_INLINED {
                break;
            }
            let Some(function) = f.function.as_ref().and_then(|n| n.demangle().ok()) else {
                continue;
            };
            let (file, line) = match f.location {
                Some(addr2line::Location { file: Some(file), line, .. }) => {
                    (file.to_owned(), line.unwrap_or(0))
                }
                _ => (module.path.clone(), 0),
            };
            frames.push(Symbol { function: function.into_owned(), file, line });
        }
    }
    // addr2line gives the innermost (inlined) frame first.
    frames.reverse();
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary's own code, named from its own DWARF: the test function itself.
    #[test]
    fn names_an_address_of_this_binary_with_file_and_line() {
        let exe = std::env::current_exe().unwrap();
        let here = names_an_address_of_this_binary_with_file_and_line as fn() as usize as u64;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        // The bias is where the file's offset 0 is mapped (a PIE's first segment).
        let bias = maps
            .lines()
            .find(|l| l.ends_with(exe.to_str().unwrap()))
            .and_then(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
            .unwrap();
        let m = Module {
            path: exe.to_string_lossy().into_owned(),
            bias,
            start: bias,
            end: u64::MAX,
            build_id: Vec::new(),
        };
        let mut s = Symbolizer::default();
        let frames = s.symbolize(Some(&m), here + 5).to_vec();
        let last = frames.last().unwrap();
        assert!(
            last.function.ends_with("names_an_address_of_this_binary_with_file_and_line"),
            "{frames:?}"
        );
        assert!(last.file.ends_with("symbolizer.rs") && last.line > 0, "{frames:?}");
    }

    /// An address past a symbol's end is in none (a stripped library's static function), not
    /// in the symbol before it.
    #[test]
    fn symbol_table_lookups_respect_sizes() {
        let t = SymbolTable(vec![(0x1000, 0x10, "f".into()), (0x1020, 0x8, "g".into())]);
        let found: Vec<_> =
            [0xfff, 0x1000, 0x100f, 0x1010, 0x1027, 0x1028].map(|p| t.find(p)).into();
        assert_eq!(found, [None, Some("f"), Some("f"), None, Some("g"), None]);
    }

    /// Two processes (two recorders' symbolizers) that load the same module at different
    /// addresses share its symbols: the second finds the first's answer for the same offset.
    #[test]
    fn processes_of_a_run_share_a_modules_symbols() {
        let module = |bias| Module {
            path: "/nonexistent/libshared.so".into(),
            bias,
            start: bias,
            end: bias + 0x9000,
            build_id: vec![1, 2, 3],
        };
        let (a, b) = (module(0x10_000), module(0x50_000));
        let mut first = Symbolizer::default();
        let mut second = Symbolizer::default();
        assert_eq!(first.symbolize(Some(&a), 0x10_235)[0].function, "libshared.so+0x235");
        assert_eq!(second.symbolize(Some(&b), 0x50_235)[0].function, "libshared.so+0x235");
        let shared = |s: &Symbolizer| s.modules[&a.path].clone();
        assert!(Arc::ptr_eq(&shared(&first), &shared(&second)));
        assert_eq!(shared(&first).lock().unwrap().answers.len(), 1, "one offset, found once");
        // Another build at the same path is another module.
        let mut third = Symbolizer::default();
        third.symbolize(Some(&Module { build_id: vec![9], ..a.clone() }), 0x10_235);
        assert!(!Arc::ptr_eq(&shared(&first), &shared(&third)));
    }

    #[test]
    fn unreadable_modules_and_unknown_addresses_get_placeholders() {
        let m = Module {
            path: "/nonexistent/libgone.so".into(),
            bias: 0x1000,
            start: 0x1000,
            end: 0x9000,
            build_id: Vec::new(),
        };
        let mut s = Symbolizer::default();
        assert_eq!(s.symbolize(Some(&m), 0x1235)[0].function, "libgone.so+0x235");
        assert_eq!(s.symbolize(None, 0x77)[0].function, "[unknown]");
    }
}
