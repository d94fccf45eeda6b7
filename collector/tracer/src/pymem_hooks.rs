//! Hooks on CPython's three allocator domains (raw, mem, object), installed with
//! `PyMem_SetAllocator` around the previous allocators.
//!
//! Layer: the hooks layer; they write through [`crate::emit`], and the session layer
//! ([`crate::session`]) installs them. Where a profile function keeps the stacks, they
//! first put it back in front of a program's profiler that replaced it
//! ([`crate::profiler::keep_in_front`]).
//!
//! They record the exact requested sizes. A realloc is a free of the old block,
//! recorded *before* the real call, and an allocation of the new one, recorded
//! *after* it returns: so if another thread gets the freed address back, its
//! allocation is stamped later than our free and the parent sees them in order.

use std::cell::UnsafeCell;
use std::ffi::c_void;

use memlens_wire::AllocKind;

use crate::emit::{record_alloc, record_block, record_block_free, record_free};
use crate::guard::{Ctx, Guard};
use crate::python_api::{PyApi, PyMemAllocatorEx, DOMAIN_MEM, DOMAIN_OBJ, DOMAIN_RAW};
use crate::recording::active;
use crate::stacks::{mode, StackMode};

struct Domain {
    prev: UnsafeCell<PyMemAllocatorEx>,
    kind: AllocKind,
    ctx: Ctx,
}

// SAFETY: `prev` is written in `install`, with the GIL held and before our hooks are
// installed (so before any hook reads it); afterwards it is read-only until they are taken
// out again (`uninstall`), and a later `install` writes the same allocator back.
unsafe impl Sync for Domain {}

const EMPTY: PyMemAllocatorEx = PyMemAllocatorEx {
    ctx: std::ptr::null_mut(),
    malloc: None,
    calloc: None,
    realloc: None,
    free: None,
};

static RAW: Domain =
    Domain { prev: UnsafeCell::new(EMPTY), kind: AllocKind::PyRaw, ctx: Ctx::PyRaw };
static MEM: Domain =
    Domain { prev: UnsafeCell::new(EMPTY), kind: AllocKind::PyMem, ctx: Ctx::Pymalloc };
static OBJ: Domain =
    Domain { prev: UnsafeCell::new(EMPTY), kind: AllocKind::PymallocObject, ctx: Ctx::Pymalloc };

static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Wraps the current allocators of all three domains. Idempotent. Needs the GIL.
pub fn install(api: &PyApi) {
    if INSTALLED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    // The stack mode is chosen before the hooks are installed, for good.
    let profile = mode() == StackMode::Profile;
    for (domain, d) in [(DOMAIN_RAW, &RAW), (DOMAIN_MEM, &MEM), (DOMAIN_OBJ, &OBJ)] {
        let mut ours = PyMemAllocatorEx {
            ctx: (d as *const Domain).cast_mut().cast(),
            malloc: Some(if profile { hook_malloc::<true> } else { hook_malloc::<false> }),
            calloc: Some(if profile { hook_calloc::<true> } else { hook_calloc::<false> }),
            realloc: Some(if profile { hook_realloc::<true> } else { hook_realloc::<false> }),
            free: Some(hook_free),
        };
        // SAFETY: GIL held; prev is written before the hooks that read it exist.
        // The hooks stay installed until `uninstall` (they forward when tracing is off),
        // and `prev` is never written again while they are.
        unsafe {
            (api.mem_get_allocator)(domain, d.prev.get());
            (api.mem_set_allocator)(domain, &mut ours);
        }
    }
}

/// Puts back the allocators [`install`] wrapped, in each domain where ours is still the
/// current one (another tool that wrapped ours after us keeps its wrapper, which goes on
/// calling ours; that domain's hooks then stay). Returns false if one stayed. Needs the GIL
/// and tracing stopped.
pub fn uninstall(api: &PyApi) -> bool {
    if !INSTALLED.load(std::sync::atomic::Ordering::Acquire) {
        return true;
    }
    let mut all = true;
    for (domain, d) in [(DOMAIN_RAW, &RAW), (DOMAIN_MEM, &MEM), (DOMAIN_OBJ, &OBJ)] {
        let mut current = EMPTY;
        // SAFETY: GIL held; Get only copies the domain's allocator out. Hooks that are
        // running on other threads read `prev`, which stays as it is.
        unsafe {
            (api.mem_get_allocator)(domain, &mut current);
            let ours = current.ctx == (d as *const Domain).cast_mut().cast()
                && current.free.map(|f| f as usize) == Some(hook_free as *const () as usize);
            if ours {
                (api.mem_set_allocator)(domain, d.prev.get());
            } else {
                all = false;
            }
        }
    }
    if all {
        INSTALLED.store(false, std::sync::atomic::Ordering::Release);
    }
    all
}

/// # Safety
/// `ctx` must be the `ctx` we registered: a pointer to one of the static `Domain`s.
#[inline]
unsafe fn domain<'a>(ctx: *mut c_void) -> (&'a Domain, &'a PyMemAllocatorEx) {
    // SAFETY: per the function contract; `prev` is read-only after install.
    unsafe {
        let d = &*(ctx as *const Domain);
        (d, &*d.prev.get())
    }
}

/// Before an allocation's stack is used: in the profile stack mode (`PROFILE`, the hooks
/// [`install`] chose for it, so that the other modes pay nothing), the thread's profile
/// function must still be memlens's. Only where the GIL is held (the mem and object domains).
#[inline(always)]
fn keep_stack<const PROFILE: bool>(d: &Domain) {
    if PROFILE && d.ctx == Ctx::Pymalloc {
        crate::profiler::keep_in_front();
    }
}

/// Records an allocation of the domain: the raw domain's are blocks C code asked for itself
/// (zlib's, lzma's buffers...), big ones reservations as for `malloc`
/// ([`crate::emit::record_block`]).
#[inline(always)]
fn alloc_in(g: &Guard, d: &Domain, p: usize, size: usize) {
    if d.kind == AllocKind::PyRaw {
        record_block(g, p, size, d.kind);
    } else {
        record_alloc(g, p, size, d.kind);
    }
}

/// Records a free of the domain, likewise.
#[inline(always)]
fn free_in(g: &Guard, d: &Domain, p: usize) {
    if d.kind == AllocKind::PyRaw {
        record_block_free(g, p, d.kind);
    } else {
        record_free(g, p, d.kind);
    }
}

unsafe extern "C" fn hook_malloc<const PROFILE: bool>(
    ctx: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: CPython passes back the ctx we registered.
    let (d, prev) = unsafe { domain(ctx) };
    let g = Guard::enter(d.ctx);
    // SAFETY: calling the previous allocator with its own ctx, as CPython would.
    let p = unsafe { (prev.malloc.unwrap_unchecked())(prev.ctx, size) };
    if g.outermost() && !p.is_null() && active() {
        keep_stack::<PROFILE>(d);
        alloc_in(&g, d, p as usize, size);
    }
    p
}

unsafe extern "C" fn hook_calloc<const PROFILE: bool>(
    ctx: *mut c_void,
    n: usize,
    size: usize,
) -> *mut c_void {
    // SAFETY: CPython passes back the ctx we registered.
    let (d, prev) = unsafe { domain(ctx) };
    let g = Guard::enter(d.ctx);
    // SAFETY: calling the previous allocator with its own ctx.
    let p = unsafe { (prev.calloc.unwrap_unchecked())(prev.ctx, n, size) };
    if g.outermost() && !p.is_null() && active() {
        keep_stack::<PROFILE>(d);
        alloc_in(&g, d, p as usize, n.saturating_mul(size));
    }
    p
}

unsafe extern "C" fn hook_realloc<const PROFILE: bool>(
    ctx: *mut c_void,
    old: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: CPython passes back the ctx we registered.
    let (d, prev) = unsafe { domain(ctx) };
    let g = Guard::enter(d.ctx);
    let rec = g.outermost() && active();
    if rec && !old.is_null() {
        free_in(&g, d, old as usize);
    }
    // SAFETY: calling the previous allocator with its own ctx.
    let p = unsafe { (prev.realloc.unwrap_unchecked())(prev.ctx, old, size) };
    if rec && !p.is_null() {
        keep_stack::<PROFILE>(d);
        alloc_in(&g, d, p as usize, size);
    }
    p
}

unsafe extern "C" fn hook_free(ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: CPython passes back the ctx we registered.
    let (d, prev) = unsafe { domain(ctx) };
    let g = Guard::enter(d.ctx);
    if g.outermost() && !p.is_null() && active() {
        free_in(&g, d, p as usize);
    }
    // SAFETY: calling the previous allocator with its own ctx.
    unsafe { (prev.free.unwrap_unchecked())(prev.ctx, p) }
}
