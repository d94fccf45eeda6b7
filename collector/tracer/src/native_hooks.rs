//! The exported libc allocation functions that LD_PRELOAD puts in front of libc's, and
//! the functions that close or replace file descriptors, which must leave the tracer's own
//! alone ([`crate::fds`]).
//!
//! Layer: the hooks layer; they write through [`crate::emit`] and end a session at `_exit`
//! with [`crate::drain::stop`]. [`crate::got`] and the session layer install them.
//!
//! The hooks themselves are the `*_hook` functions, which are not exported: their
//! addresses are this library's code even when the library was not preloaded and the
//! exported names resolve to libc's ([`crate::got`] needs them). The exported
//! functions at the end of the file only call them.
//!
//! Each forwards to the real function (see [`crate::real`]); when native tracing is
//! active and this is the outermost hook on the thread it also records. While the
//! real functions are being resolved (dlsym may allocate) requests are served from
//! the bootstrap arena.

use std::ffi::{c_int, c_uint, c_void};

use memlens_wire::AllocKind;

use crate::emit::{record_alloc, record_block, record_block_free, record_free, record_resident};
use crate::fds;
use crate::guard::{Ctx, Guard};
use crate::real::{real, BootstrapArena};
use crate::recording::native_active;
use crate::reservations;

#[inline]
fn after_alloc(g: &Guard, p: *mut c_void, size: usize) {
    if g.outermost() && !p.is_null() && native_active() {
        record_block(g, p as usize, size, AllocKind::Malloc);
    }
}

pub unsafe extern "C" fn malloc_hook(size: usize) -> *mut c_void {
    let Some(r) = real() else { return BootstrapArena::alloc(size) };
    if !native_active() {
        // SAFETY: forwarding to libc with the caller's arguments.
        return unsafe { (r.malloc)(size) };
    }
    let g = Guard::enter(Ctx::Native);
    // SAFETY: forwarding to libc.
    let p = unsafe { (r.malloc)(size) };
    after_alloc(&g, p, size);
    p
}

pub unsafe extern "C" fn calloc_hook(n: usize, size: usize) -> *mut c_void {
    // The arena is zeroed memory that is never reused, as calloc requires.
    let Some(r) = real() else { return BootstrapArena::alloc(n.saturating_mul(size)) };
    if !native_active() {
        // SAFETY: forwarding to libc.
        return unsafe { (r.calloc)(n, size) };
    }
    let g = Guard::enter(Ctx::Native);
    // SAFETY: forwarding to libc.
    let p = unsafe { (r.calloc)(n, size) };
    after_alloc(&g, p, n.saturating_mul(size));
    p
}

pub unsafe extern "C" fn realloc_hook(old: *mut c_void, size: usize) -> *mut c_void {
    if BootstrapArena::contains(old) {
        // Moving a bootstrap block to the real heap: its old size is unknown, but
        // the arena is only used for tiny dlsym buffers, so copy what fits.
        // SAFETY: malloc_hook is our hook above; the arena block is readable up to the
        // arena's end, so copy at most what remains of it.
        unsafe {
            let p = malloc_hook(size);
            if !p.is_null() {
                let avail = BootstrapArena::remaining_from(old);
                std::ptr::copy_nonoverlapping(old.cast::<u8>(), p.cast::<u8>(), size.min(avail));
            }
            return p;
        }
    }
    let Some(r) = real() else { return BootstrapArena::alloc(size) };
    if !native_active() {
        // SAFETY: forwarding to libc.
        return unsafe { (r.realloc)(old, size) };
    }
    let g = Guard::enter(Ctx::Native);
    let rec = g.outermost();
    if rec && !old.is_null() {
        record_block_free(&g, old as usize, AllocKind::Malloc);
    }
    // SAFETY: forwarding to libc.
    let p = unsafe { (r.realloc)(old, size) };
    if rec && !p.is_null() && native_active() {
        record_block(&g, p as usize, size, AllocKind::Malloc);
    }
    p
}

pub unsafe extern "C" fn free_hook(p: *mut c_void) {
    if p.is_null() || BootstrapArena::contains(p) {
        return;
    }
    let Some(r) = real() else { return };
    if native_active() {
        let g = Guard::enter(Ctx::Native);
        if g.outermost() {
            record_block_free(&g, p as usize, AllocKind::Malloc);
        }
        // SAFETY: forwarding to libc.
        unsafe { (r.free)(p) };
        return;
    }
    // SAFETY: forwarding to libc.
    unsafe { (r.free)(p) }
}

pub unsafe extern "C" fn posix_memalign_hook(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> i32 {
    let Some(r) = real() else { return libc::ENOMEM };
    let g = Guard::enter(Ctx::Native);
    // SAFETY: forwarding to libc.
    let rc = unsafe { (r.posix_memalign)(out, align, size) };
    if rc == 0 {
        // SAFETY: on success libc wrote the pointer to *out.
        after_alloc(&g, unsafe { *out }, size);
    }
    rc
}

macro_rules! aligned_hook {
    ($name:ident, $field:ident) => {
        pub unsafe extern "C" fn $name(align: usize, size: usize) -> *mut c_void {
            let Some(r) = real() else { return std::ptr::null_mut() };
            let g = Guard::enter(Ctx::Native);
            // SAFETY: forwarding to libc.
            let p = unsafe { (r.$field)(align, size) };
            after_alloc(&g, p, size);
            p
        }
    };
}
aligned_hook!(aligned_alloc_hook, aligned_alloc);
aligned_hook!(memalign_hook, memalign);

macro_rules! page_hook {
    ($name:ident, $field:ident) => {
        pub unsafe extern "C" fn $name(size: usize) -> *mut c_void {
            let Some(r) = real() else { return std::ptr::null_mut() };
            let g = Guard::enter(Ctx::Native);
            // SAFETY: forwarding to libc.
            let p = unsafe { (r.$field)(size) };
            after_alloc(&g, p, size);
            p
        }
    };
}
page_hook!(valloc_hook, valloc);
page_hook!(pvalloc_hook, pvalloc);

#[inline]
fn mmap_common(
    real_fn: unsafe extern "C" fn(*mut c_void, usize, i32, i32, i32, i64) -> *mut c_void,
    addr: *mut c_void,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: i64,
) -> *mut c_void {
    if !native_active() {
        // SAFETY: forwarding to libc.
        return unsafe { real_fn(addr, len, prot, flags, fd, off) };
    }
    let g = Guard::enter(Ctx::Native);
    let arena = g.directly_inside_pymalloc();
    // SAFETY: forwarding to libc.
    let p = unsafe { real_fn(addr, len, prot, flags, fd, off) };
    if p != libc::MAP_FAILED && native_active() {
        if g.outermost() {
            record_mapping(&g, p as usize, len, flags);
        } else if arena {
            record_alloc(&g, p as usize, len, AllocKind::PymallocArena);
        }
    }
    p
}

/// A mapping made by C code: reserved address space, whose resident part the drain
/// follows if it is anonymous ([`crate::reservations`]).
fn record_mapping(g: &Guard, p: usize, len: usize, flags: i32) {
    if flags & libc::MAP_FIXED != 0 {
        // Mapped over part of a reservation (committing pages of a region reserved earlier):
        // the reservation counts it already. Over anything else, it replaces what was there.
        if reservations::inside_registered(p, len) {
            return;
        }
        record_unmapped(g, p, len);
    }
    record_alloc(g, p, len, AllocKind::Reserved);
    if flags & libc::MAP_ANONYMOUS != 0 {
        reservations::add(p, len);
    }
}

/// [addr, addr+len) is unmapped (or mapped over): the free of the mapping recorded at `addr`,
/// and of every registered one the range drops whole.
fn record_unmapped(g: &Guard, addr: usize, len: usize) {
    for key in reservations::remove(addr, len) {
        record_free(g, key, AllocKind::Reserved);
    }
    record_free(g, addr, AllocKind::Reserved);
}

pub unsafe extern "C" fn mmap_hook(
    addr: *mut c_void,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: i64,
) -> *mut c_void {
    let Some(r) = real() else { return libc::MAP_FAILED };
    mmap_common(r.mmap, addr, len, prot, flags, fd, off)
}

pub unsafe extern "C" fn mmap64_hook(
    addr: *mut c_void,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: i64,
) -> *mut c_void {
    let Some(r) = real() else { return libc::MAP_FAILED };
    mmap_common(r.mmap64, addr, len, prot, flags, fd, off)
}

pub unsafe extern "C" fn munmap_hook(addr: *mut c_void, len: usize) -> i32 {
    let Some(r) = real() else { return -1 };
    if native_active() {
        let g = Guard::enter(Ctx::Native);
        if g.outermost() {
            let addr = addr as usize;
            if let Some(bytes) = reservations::unmapping(addr, len) {
                record_resident(&g, addr, bytes);
            }
            record_unmapped(&g, addr, len);
        } else if g.directly_inside_pymalloc() {
            record_free(&g, addr as usize, AllocKind::PymallocArena);
        }
        // SAFETY: forwarding to libc.
        return unsafe { (r.munmap)(addr, len) };
    }
    // SAFETY: forwarding to libc.
    unsafe { (r.munmap)(addr, len) }
}

/// `os._exit()` and friends: flush everything to the recorder before the process
/// disappears without running atexit handlers, and say how it ends.
pub unsafe extern "C" fn _exit_hook(status: i32) -> ! {
    crate::drain::stop();
    crate::process_end::exiting(status);
    match real() {
        // SAFETY: forwarding to libc; never returns.
        Some(r) => unsafe { (r.exit)(status) },
        // SAFETY: the raw syscall as a last resort.
        None => unsafe {
            libc::syscall(libc::SYS_exit_group, status);
            libc::abort()
        },
    }
}

pub unsafe extern "C" fn exit_upper_hook(status: i32) -> ! {
    crate::drain::stop();
    crate::process_end::exiting(status);
    match real() {
        // SAFETY: forwarding to libc; never returns.
        Some(r) => unsafe { (r.exit_upper)(status) },
        // SAFETY: the raw syscall as a last resort.
        None => unsafe {
            libc::syscall(libc::SYS_exit_group, status);
            libc::abort()
        },
    }
}

/// `close`: one of the tracer's own numbers is not closed (see [`crate::fds`]), the program
/// is told it was.
pub unsafe extern "C" fn close_hook(fd: c_int) -> c_int {
    if fds::is_own(fd) {
        return 0;
    }
    fds::sys_close(fd)
}

/// The close_range system call.
fn sys_close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // SAFETY: close_range with plain integer arguments.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_long,
            last as libc::c_long,
            flags as libc::c_long,
        ) as c_int
    }
}

/// `close_range`: the range is closed around the tracer's own numbers. Marking a range
/// close-on-exec (`CLOSE_RANGE_CLOEXEC`) closes nothing, and ours are so already.
pub unsafe extern "C" fn close_range_hook(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if flags & libc::CLOSE_RANGE_CLOEXEC as c_int != 0 || first > last {
        return sys_close_range(first, last, flags);
    }
    let mut from = first;
    let (own, n) = fds::own_sorted();
    for &fd in &own[..n] {
        let fd = fd as c_uint;
        if fd < from || fd > last {
            continue;
        }
        if fd > from && sys_close_range(from, fd - 1, flags) < 0 {
            return -1;
        }
        from = fd + 1;
    }
    if from <= last {
        return sys_close_range(from, last, flags);
    }
    0
}

/// `closefrom` (glibc 2.34): [`close_range_hook`] up to the last number, or one by one up
/// to the limit of open files where the kernel has no close_range (before Linux 5.9).
pub unsafe extern "C" fn closefrom_hook(lowfd: c_int) {
    let first = lowfd.max(0) as c_uint;
    // SAFETY: as close_range_hook's contract.
    if unsafe { close_range_hook(first, c_uint::MAX, 0) } == 0 {
        return;
    }
    // SAFETY: getrlimit fills the struct.
    let limit = unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            rl.rlim_cur.min(1 << 20) as c_int
        } else {
            1024
        }
    };
    for fd in lowfd.max(0)..limit {
        // SAFETY: closing numbers the caller asked closed; ours are skipped.
        unsafe { close_hook(fd) };
    }
}

/// `dup2`: a program that puts a file on one of the tracer's numbers gets it, the
/// tracer's moving to another number first.
pub unsafe extern "C" fn dup2_hook(oldfd: c_int, newfd: c_int) -> c_int {
    if oldfd != newfd {
        fds::make_room(newfd);
    }
    // SAFETY: the dup2 system call with the caller's arguments.
    unsafe { libc::syscall(libc::SYS_dup2, oldfd as libc::c_long, newfd as libc::c_long) as c_int }
}

/// `dup3`: as [`dup2_hook`].
pub unsafe extern "C" fn dup3_hook(oldfd: c_int, newfd: c_int, flags: c_int) -> c_int {
    if oldfd != newfd {
        fds::make_room(newfd);
    }
    // SAFETY: the dup3 system call with the caller's arguments.
    unsafe {
        libc::syscall(
            libc::SYS_dup3,
            oldfd as libc::c_long,
            newfd as libc::c_long,
            flags as libc::c_long,
        ) as c_int
    }
}

/// The exported names, each calling its hook.
macro_rules! export {
    ($($name:ident => $hook:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the caller's contract is the libc function's, which the hook has.
            unsafe { $hook($($arg),*) }
        }
    )*};
}

export! {
    malloc => malloc_hook(size: usize) -> *mut c_void;
    calloc => calloc_hook(n: usize, size: usize) -> *mut c_void;
    realloc => realloc_hook(old: *mut c_void, size: usize) -> *mut c_void;
    free => free_hook(p: *mut c_void) -> ();
    posix_memalign => posix_memalign_hook(out: *mut *mut c_void, align: usize, size: usize) -> i32;
    aligned_alloc => aligned_alloc_hook(align: usize, size: usize) -> *mut c_void;
    memalign => memalign_hook(align: usize, size: usize) -> *mut c_void;
    valloc => valloc_hook(size: usize) -> *mut c_void;
    pvalloc => pvalloc_hook(size: usize) -> *mut c_void;
    mmap => mmap_hook(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut c_void;
    mmap64 => mmap64_hook(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut c_void;
    munmap => munmap_hook(addr: *mut c_void, len: usize) -> i32;
    _exit => _exit_hook(status: i32) -> !;
    _Exit => exit_upper_hook(status: i32) -> !;
    close => close_hook(fd: c_int) -> c_int;
    close_range => close_range_hook(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    closefrom => closefrom_hook(lowfd: c_int) -> ();
    dup2 => dup2_hook(oldfd: c_int, newfd: c_int) -> c_int;
    dup3 => dup3_hook(oldfd: c_int, newfd: c_int, flags: c_int) -> c_int;
}
