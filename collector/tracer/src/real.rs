//! The real libc allocation functions, found with `dlsym(RTLD_NEXT, ...)`, and the
//! tracer's own global allocator, which calls them directly so the tracer's Rust code
//! never goes through its own hooks.
//!
//! Layer: foundations; imports nothing of the tracer.
//!
//! `dlsym` itself may call `calloc`/`malloc` while we are resolving; those calls are
//! served from a small static bump arena ([`BootstrapArena`]) that is never freed.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> i32;
type AlignedAllocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type VallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type MmapFn = unsafe extern "C" fn(*mut c_void, usize, i32, i32, i32, i64) -> *mut c_void;
type MunmapFn = unsafe extern "C" fn(*mut c_void, usize) -> i32;
type ExitFn = unsafe extern "C" fn(i32) -> !;

/// The next definitions of the functions we interpose.
pub struct Real {
    pub malloc: MallocFn,
    pub calloc: CallocFn,
    pub realloc: ReallocFn,
    pub free: FreeFn,
    pub posix_memalign: PosixMemalignFn,
    pub aligned_alloc: AlignedAllocFn,
    pub memalign: AlignedAllocFn,
    pub valloc: VallocFn,
    pub pvalloc: VallocFn,
    pub mmap: MmapFn,
    pub mmap64: MmapFn,
    pub munmap: MunmapFn,
    pub exit: ExitFn,
    pub exit_upper: ExitFn,
    /// libc's `close`, `close_range`, `closefrom`, `dup2` and `dup3` (0 where this libc has
    /// none): only what [`crate::got`] puts back; the hooks make the system calls.
    pub fd_functions: [usize; 5],
}

/// The names of [`Real::fd_functions`], in order.
pub const FD_FUNCTIONS: [&std::ffi::CStr; 5] =
    [c"close", c"close_range", c"closefrom", c"dup2", c"dup3"];

const UNRESOLVED: u8 = 0;
const RESOLVING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);

struct RealCell(UnsafeCell<Option<Real>>);
// SAFETY: written exactly once, by the thread that moved STATE from UNRESOLVED to
// RESOLVING, before it publishes READY with Release; read only after READY is seen
// with Acquire.
unsafe impl Sync for RealCell {}
static REAL: RealCell = RealCell(UnsafeCell::new(None));

/// Returns the real functions, or `None` while they are being resolved (the caller
/// then serves the request from the bootstrap arena).
#[inline]
pub fn real() -> Option<&'static Real> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: READY is published after REAL was written (see RealCell).
        return unsafe { (*REAL.0.get()).as_ref() };
    }
    resolve_slow()
}

#[cold]
fn resolve_slow() -> Option<&'static Real> {
    match STATE.compare_exchange(UNRESOLVED, RESOLVING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            let r = Real {
                malloc: sym(c"malloc"),
                calloc: sym(c"calloc"),
                realloc: sym(c"realloc"),
                free: sym(c"free"),
                posix_memalign: sym(c"posix_memalign"),
                aligned_alloc: sym(c"aligned_alloc"),
                memalign: sym(c"memalign"),
                valloc: sym(c"valloc"),
                pvalloc: sym(c"pvalloc"),
                mmap: sym(c"mmap"),
                mmap64: sym(c"mmap64"),
                munmap: sym(c"munmap"),
                exit: sym(c"_exit"),
                exit_upper: sym(c"_Exit"),
                // SAFETY: dlsym with NUL-terminated names.
                fd_functions: FD_FUNCTIONS
                    .map(|name| unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize),
            };
            // SAFETY: we won the UNRESOLVED->RESOLVING race, so no one else writes
            // REAL, and no one reads it before READY.
            unsafe { *REAL.0.get() = Some(r) };
            STATE.store(READY, Ordering::Release);
            // SAFETY: just written and published.
            unsafe { (*REAL.0.get()).as_ref() }
        }
        Err(READY) => {
            // SAFETY: READY was observed with Acquire.
            unsafe { (*REAL.0.get()).as_ref() }
        }
        // Another call (possibly our own dlsym, re-entering) is resolving.
        Err(_) => None,
    }
}

fn sym<T: Copy>(name: &std::ffi::CStr) -> T {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the definition after
    // this library (libc's).
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if p.is_null() {
        const MSG: &[u8] = b"memlens tracer: dlsym(RTLD_NEXT) failed for a libc function\n";
        // SAFETY: writing a static buffer to stderr, then aborting: without the real
        // allocator the process cannot go on.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::abort();
        }
    }
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: T is one of the function pointer types above, pointer-sized, and the
    // symbol has that C signature in glibc.
    unsafe { std::mem::transmute_copy(&p) }
}

/// A bump arena for allocations made while `dlsym` resolves the real functions.
/// 64 KiB: glibc's dlsym needs well under 1 KiB (a dlerror buffer).
pub struct BootstrapArena;

const ARENA_SIZE: usize = 64 * 1024;
#[repr(C, align(16))]
struct ArenaBytes(UnsafeCell<[u8; ARENA_SIZE]>);
// SAFETY: regions are handed out by an atomic bump pointer, so no two callers ever
// get overlapping bytes.
unsafe impl Sync for ArenaBytes {}
static ARENA: ArenaBytes = ArenaBytes(UnsafeCell::new([0; ARENA_SIZE]));
static ARENA_USED: AtomicUsize = AtomicUsize::new(0);

impl BootstrapArena {
    /// Zeroed, 16-byte aligned memory, or null when the arena is exhausted.
    pub fn alloc(size: usize) -> *mut c_void {
        let size = (size.max(1) + 15) & !15;
        let start = ARENA_USED.fetch_add(size, Ordering::Relaxed);
        if start + size > ARENA_SIZE {
            return std::ptr::null_mut();
        }
        // SAFETY: [start, start+size) is inside the arena and exclusively ours.
        unsafe { ARENA.0.get().cast::<u8>().add(start).cast() }
    }

    /// Bytes from `p` to the end of the arena (for copying a block of unknown size).
    pub fn remaining_from(p: *mut c_void) -> usize {
        (ARENA.0.get() as usize + ARENA_SIZE).saturating_sub(p as usize)
    }

    pub fn contains(p: *mut c_void) -> bool {
        let base = ARENA.0.get() as usize;
        (base..base + ARENA_SIZE).contains(&(p as usize))
    }
}

/// `malloc` without any hook; used by the tracer's own code.
pub fn raw_malloc(size: usize) -> *mut c_void {
    match real() {
        // SAFETY: calling libc's malloc.
        Some(r) => unsafe { (r.malloc)(size) },
        None => BootstrapArena::alloc(size),
    }
}

/// `free` without any hook; ignores bootstrap-arena pointers.
pub fn raw_free(p: *mut c_void) {
    if p.is_null() || BootstrapArena::contains(p) {
        return;
    }
    if let Some(r) = real() {
        // SAFETY: p came from libc's allocator (not the arena, checked above).
        unsafe { (r.free)(p) }
    }
}

/// The tracer's global allocator: straight to libc, never through the hooks.
pub struct RealAllocator;

// SAFETY: forwards to libc malloc/posix_memalign/realloc/free, which satisfy
// GlobalAlloc's contract for the alignments we pass them.
unsafe impl GlobalAlloc for RealAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 16 {
            return raw_malloc(layout.size()).cast();
        }
        match real() {
            Some(r) => {
                let mut p = std::ptr::null_mut();
                // SAFETY: align is a power of two multiple of sizeof(void*).
                if unsafe { (r.posix_memalign)(&mut p, layout.align(), layout.size()) } != 0 {
                    return std::ptr::null_mut();
                }
                p.cast()
            }
            None => std::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        raw_free(ptr.cast())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match real() {
            Some(r) if layout.align() <= 16 && !BootstrapArena::contains(ptr.cast()) => {
                // SAFETY: ptr came from libc malloc (align <= 16, not arena).
                unsafe { (r.realloc)(ptr.cast(), new_size).cast() }
            }
            _ => {
                // SAFETY: standard alloc-copy-free fallback with valid layouts.
                unsafe {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}
