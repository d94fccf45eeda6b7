//! Native hooks without `LD_PRELOAD`: patching the global offset tables.
//!
//! Layer: the hooks layer, above [`crate::native_hooks`] (whose addresses it writes); the
//! session layer ([`crate::session`]) calls [`install`].
//!
//! Under `memlens run` the library is preloaded, so the dynamic linker binds every
//! `malloc`/`free`/`mmap`/... call of the program to [`crate::native_hooks`]. When
//! `memlens.record()` loads the tracer into a running interpreter instead, those calls
//! are already bound to libc. [`install`] then rewrites the GOT entries of every loaded
//! object (the executable, libpython, C extensions; not the dynamic linker, the vDSO or
//! this library) that import one of the hooked functions so they point at our hooks,
//! and hooks `dlopen` the same way so extensions imported later are patched as they
//! load. Entries stay patched after a `memlens.record()` block (the hooks forward to libc
//! when tracing is off, as they do when preloaded); `memlens attach` puts libc's functions
//! back when it detaches ([`uninstall`]).
//!
//! Only the entries the dynamic linker fills for imported functions are rewritten
//! (`R_X86_64_JUMP_SLOT` and `R_X86_64_GLOB_DAT` against an undefined symbol); a
//! function pointer a library stored elsewhere keeps pointing at libc, and so do the
//! direct calls of a non-PIE executable to a function whose address it takes (see
//! `patch_object`): for CPython those are its own `malloc`/`free` calls, which its raw
//! allocator domain reports anyway. Entries in a
//! read-only-after-relocation segment (`PT_GNU_RELRO`) are made writable for the write.
//! x86_64 Linux with glibc only.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::native_hooks as hooks;
use crate::real::{Real, FD_FUNCTIONS};

/// The functions we take over, each with our definition of it (`real` none) or libc's
/// (`real` given: what [`uninstall`] puts back). One list, so the two cannot differ.
fn table(real: Option<&Real>) -> [(&'static CStr, usize); 20] {
    let pick = |ours: usize, libc: fn(&Real) -> usize| real.map_or(ours, libc);
    let libc_dlopen: unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void = libc::dlopen;
    [
        (c"malloc", pick(hooks::malloc_hook as *const () as usize, |r| r.malloc as usize)),
        (c"calloc", pick(hooks::calloc_hook as *const () as usize, |r| r.calloc as usize)),
        (c"realloc", pick(hooks::realloc_hook as *const () as usize, |r| r.realloc as usize)),
        (c"free", pick(hooks::free_hook as *const () as usize, |r| r.free as usize)),
        (
            c"posix_memalign",
            pick(hooks::posix_memalign_hook as *const () as usize, |r| r.posix_memalign as usize),
        ),
        (
            c"aligned_alloc",
            pick(hooks::aligned_alloc_hook as *const () as usize, |r| r.aligned_alloc as usize),
        ),
        (c"memalign", pick(hooks::memalign_hook as *const () as usize, |r| r.memalign as usize)),
        (c"valloc", pick(hooks::valloc_hook as *const () as usize, |r| r.valloc as usize)),
        (c"pvalloc", pick(hooks::pvalloc_hook as *const () as usize, |r| r.pvalloc as usize)),
        (c"mmap", pick(hooks::mmap_hook as *const () as usize, |r| r.mmap as usize)),
        (c"mmap64", pick(hooks::mmap64_hook as *const () as usize, |r| r.mmap64 as usize)),
        (c"munmap", pick(hooks::munmap_hook as *const () as usize, |r| r.munmap as usize)),
        (c"_exit", pick(hooks::_exit_hook as *const () as usize, |r| r.exit as usize)),
        (c"_Exit", pick(hooks::exit_upper_hook as *const () as usize, |r| r.exit_upper as usize)),
        (c"dlopen", real.map_or(hooked_dlopen as *const () as usize, |_| libc_dlopen as usize)),
        fd_entry(real, 0, hooks::close_hook as *const () as usize),
        fd_entry(real, 1, hooks::close_range_hook as *const () as usize),
        fd_entry(real, 2, hooks::closefrom_hook as *const () as usize),
        fd_entry(real, 3, hooks::dup2_hook as *const () as usize),
        fd_entry(real, 4, hooks::dup3_hook as *const () as usize),
    ]
}

/// The entry of `real`'s fd function `i`: our hook, or libc's to put back (our hook again
/// where this libc has none: it makes the system call itself).
fn fd_entry(real: Option<&Real>, i: usize, ours: usize) -> (&'static CStr, usize) {
    let libc = real.map(|r| r.fd_functions[i]).filter(|&f| f != 0);
    (FD_FUNCTIONS[i], libc.unwrap_or(ours))
}

/// Serializes patching: two threads opening libraries at once must not interleave
/// their mprotect calls on the same page.
static PATCHING: Mutex<()> = Mutex::new(());

/// The GOTs point at our hooks (libraries loaded from now on get patched too).
static PATCHED: AtomicBool = AtomicBool::new(false);

/// Points every loaded object's imports of the hooked functions at our hooks. Does
/// nothing when the library was preloaded (the linker already did it). Idempotent.
pub fn install() -> Result<(), String> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Err("in-process native tracing needs x86_64 Linux; use native=False".into());
    }
    if preloaded() {
        return Ok(());
    }
    PATCHED.store(true, Ordering::Release);
    patch_all(&table(None));
    Ok(())
}

/// Points the entries [`install`] patched back at libc's functions. Does nothing when the
/// library was preloaded (the dynamic linker bound the program to it for good).
pub fn uninstall() {
    if preloaded() || !PATCHED.swap(false, Ordering::AcqRel) {
        return;
    }
    let Some(r) = crate::real::real() else { return };
    patch_all(&table(Some(r)));
}

/// True when the dynamic linker resolves `malloc` to this library (LD_PRELOAD).
fn preloaded() -> bool {
    // SAFETY: dlsym with a NUL-terminated name on the global scope.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
    object_base(p) == object_base(own_base as *const () as *const c_void)
}

/// `dlopen`, then patch what it loaded. Not exported under the name `dlopen`: it is
/// only reached through patched GOT entries.
unsafe extern "C" fn hooked_dlopen(file: *const c_char, flags: c_int) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments; this library's own reference to
    // `dlopen` is bound to libc's.
    let handle = unsafe { libc::dlopen(file, flags) };
    if !handle.is_null() && PATCHED.load(Ordering::Acquire) {
        patch_all(&table(None));
    }
    handle
}

/// Points every loaded object's imports of the functions in `table` at the addresses given.
fn patch_all(table: &[(&'static CStr, usize)]) {
    let _lock = PATCHING.lock().unwrap_or_else(|e| e.into_inner());
    let own = own_base();
    // SAFETY: dl_iterate_phdr calls `visit` with valid info for each loaded object;
    // `data` is our `Ctx`, alive for the call.
    unsafe {
        let mut ctx = Ctx { table, own };
        libc::dl_iterate_phdr(Some(visit), (&mut ctx as *mut Ctx).cast());
    }
}

struct Ctx<'a> {
    table: &'a [(&'static CStr, usize)],
    /// Load address of this library (skipped).
    own: usize,
}

/// Load address of this library.
fn own_base() -> usize {
    object_base(own_base as *const () as *const c_void)
}

/// Load address of the object containing `addr` (0 if none).
fn object_base(addr: *const c_void) -> usize {
    // SAFETY: Dl_info is plain data; all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables, with a valid out-pointer.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 {
        return 0;
    }
    info.dli_fbase as usize
}

// ELF tags and types (elf.h).
const PT_DYNAMIC: u32 = 2;
const PT_GNU_RELRO: u32 = 0x6474_e552;
const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_JMPREL: i64 = 23;
const R_X86_64_GLOB_DAT: u64 = 6;
const R_X86_64_JUMP_SLOT: u64 = 7;

#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

#[repr(C)]
struct Rela {
    offset: u64,
    info: u64,
    addend: i64,
}

#[repr(C)]
struct Sym {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our Ctx back.
    let (info, ctx) = unsafe { (&*info, &*data.cast::<Ctx>()) };
    let base = info.dlpi_addr as usize;
    let name = if info.dlpi_name.is_null() {
        &b""[..]
    } else {
        // SAFETY: dlpi_name is NUL-terminated (empty for the executable).
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    let skip = base == ctx.own
        || name.windows(5).any(|w| w == b"ld-li")
        || name.starts_with(b"linux-vdso")
        || name.starts_with(b"linux-gate");
    if skip || info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers of a loaded object.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let relro = phdrs
        .iter()
        .find(|p| p.p_type == PT_GNU_RELRO)
        .map(|p| (base + p.p_vaddr as usize, p.p_memsz as usize));
    for p in phdrs.iter().filter(|p| p.p_type == PT_DYNAMIC) {
        // SAFETY: the dynamic segment of a loaded object, terminated by DT_NULL.
        unsafe { patch_object(base, (base + p.p_vaddr as usize) as *const Dyn, relro, ctx.table) };
    }
    0
}

/// # Safety
/// `dynamic` is the loaded dynamic section of the object loaded at `base`.
unsafe fn patch_object(
    base: usize,
    dynamic: *const Dyn,
    relro: Option<(usize, usize)>,
    table: &[(&'static CStr, usize)],
) {
    // glibc relocates these addresses in place when it loads an object, but not in
    // every object (the vDSO's, for one): an address below the base is unrelocated.
    let addr = |v: u64| if (v as usize) < base { base + v as usize } else { v as usize };
    let (mut strtab, mut symtab) = (0, 0);
    let (mut jmprel, mut jmprel_size, mut rela, mut rela_size) = (0, 0, 0, 0);
    let mut d = dynamic;
    // SAFETY: reading the dynamic array up to its DT_NULL terminator.
    unsafe {
        while (*d).tag != DT_NULL {
            let v = (*d).val;
            match (*d).tag {
                DT_STRTAB => strtab = addr(v),
                DT_SYMTAB => symtab = addr(v),
                DT_JMPREL => jmprel = addr(v),
                DT_PLTRELSZ => jmprel_size = v as usize,
                DT_RELA => rela = addr(v),
                DT_RELASZ => rela_size = v as usize,
                _ => {}
            }
            d = d.add(1);
        }
    }
    if strtab == 0 || symtab == 0 {
        return;
    }
    for (table_addr, size) in [(jmprel, jmprel_size), (rela, rela_size)] {
        if table_addr == 0 {
            continue;
        }
        let n = size / std::mem::size_of::<Rela>();
        // SAFETY: the relocation table of a loaded object, `size` bytes long.
        let relocs = unsafe { std::slice::from_raw_parts(table_addr as *const Rela, n) };
        for r in relocs {
            let kind = r.info & 0xffff_ffff;
            if kind != R_X86_64_JUMP_SLOT && kind != R_X86_64_GLOB_DAT {
                continue;
            }
            // SAFETY: the symbol index of a valid relocation is inside the symbol
            // table, and its name offset inside the string table.
            let (sym, name) = unsafe {
                let sym = &*(symtab as *const Sym).add((r.info >> 32) as usize);
                (sym, CStr::from_ptr((strtab + sym.name as usize) as *const c_char))
            };
            // Skip symbols defined here, and imports with a value: a non-PIE executable
            // (Debian's python3) gives the functions whose address it takes a
            // "canonical" PLT stub that becomes their address for the whole process,
            // the dynamic linker's own `malloc` pointer included; patching the GOT entry
            // behind that stub would send the linker's allocations (such as our own
            // first TLS access on a new thread) into our hooks, recursively.
            if sym.shndx != 0 || sym.value != 0 {
                continue;
            }
            if let Some(&(_, hook)) = table.iter().find(|(n, _)| *n == name) {
                // SAFETY: r.offset is the GOT slot the linker filled for this import.
                unsafe { write_slot((base + r.offset as usize) as *mut usize, hook, relro) };
            }
        }
    }
}

/// # Safety
/// `slot` is a GOT entry of a loaded object; `relro` its object's RELRO range.
unsafe fn write_slot(slot: *mut usize, value: usize, relro: Option<(usize, usize)>) {
    // SAFETY: reading a mapped GOT entry.
    if unsafe { slot.read_volatile() } == value {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let at = slot as usize & !(page - 1);
    // The linker write-protects only the RELRO segment's whole pages (its end rounded
    // down): a slot on its last, partial page stays writable.
    let protected = relro
        .is_some_and(|(start, len)| at >= start & !(page - 1) && at < (start + len) & !(page - 1));
    let page_start = at as *mut c_void;
    // SAFETY: making one page of the object's own RELRO segment writable for the
    // write and read-only again after it, as the dynamic linker left it.
    unsafe {
        if protected && libc::mprotect(page_start, page, libc::PROT_READ | libc::PROT_WRITE) != 0 {
            return;
        }
        slot.write_volatile(value);
        if protected {
            libc::mprotect(page_start, page, libc::PROT_READ);
        }
    }
}
