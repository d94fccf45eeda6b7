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
    // The stack mode is chosen before the hooks are installed, for good; how they are laid
    // out, for the first session (see `Layout`).
    let profile = mode() == StackMode::Profile;
    let sampled = crate::sampling::mean() != 0;
    for (domain, d) in [(DOMAIN_RAW, &RAW), (DOMAIN_MEM, &MEM), (DOMAIN_OBJ, &OBJ)] {
        let ctx = (d as *const Domain).cast_mut().cast();
        let mut ours = match (profile, sampled) {
            (false, false) => hooks::<false, false>(ctx),
            (false, true) => hooks::<false, true>(ctx),
            (true, false) => hooks::<true, false>(ctx),
            (true, true) => hooks::<true, true>(ctx),
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
            let free = current.free.map(|f| f as usize);
            let ours = current.ctx == (d as *const Domain).cast_mut().cast()
                && [
                    hook_free::<false> as *const () as usize,
                    hook_free::<true> as *const () as usize,
                ]
                .iter()
                .any(|f| free == Some(*f));
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

/// The hooks of the stack mode `PROFILE` and the layout `SAMPLED`.
///
/// The layout is chosen at install for the first session, and either one is right in
/// every session: with `SAMPLED`, the tests that an allocation or a free is not sampled
/// ([`unsampled`], [`unsampled_free`]) are inlined into the hooks and everything else they
/// may do is kept out of line, so that a hook that only passes a block on (nearly all under
/// `memlens run --sample`) saves and restores few registers; without it, everything is
/// inlined, since every block is recorded. (Under callgrind, churn.py with 20,000 rows on
/// 3.11: the sampled layout takes 2% fewer instructions than the other in a sampled run and
/// 3% more in an exact one.)
fn hooks<const PROFILE: bool, const SAMPLED: bool>(ctx: *mut c_void) -> PyMemAllocatorEx {
    PyMemAllocatorEx {
        ctx,
        malloc: Some(hook_malloc::<PROFILE, SAMPLED>),
        calloc: Some(hook_calloc::<PROFILE, SAMPLED>),
        realloc: Some(hook_realloc::<PROFILE, SAMPLED>),
        free: Some(hook_free::<SAMPLED>),
    }
}

/// Under `memlens run --sample`, whether an allocation of `size` bytes in a pymalloc domain
/// (nearly all of a program's allocations) is not sampled: the thread's countdown is then
/// decremented and nothing else is done. False also when the countdown is crossed, which
/// [`crate::emit::record_alloc`] finds again (it was left as it was).
#[inline(always)]
fn unsampled(g: &Guard, d: &Domain, size: usize) -> bool {
    d.ctx == Ctx::Pymalloc && crate::sampling::skip(g.tls(), size)
}

/// Under `memlens run --sample`, whether the free of `p` in a pymalloc domain is surely not
/// a sampled block's, as the sampled blocks' filter tells (a free it does not answer goes
/// on to [`crate::emit::record_free`]).
#[inline(always)]
fn unsampled_free(d: &Domain, p: usize) -> bool {
    d.ctx == Ctx::Pymalloc && crate::sampling::mean() != 0 && !crate::sampled_set::may_hold(p)
}

/// Records an allocation of the domain, in the layout `SAMPLED` (see [`hooks`]).
#[inline(always)]
fn alloc_in<const PROFILE: bool, const SAMPLED: bool>(
    g: &Guard,
    d: &Domain,
    p: usize,
    size: usize,
) {
    if !SAMPLED {
        record_alloc_in::<PROFILE>(g, d, p, size);
    } else if !unsampled(g, d, size) {
        record_alloc_out_of_line::<PROFILE>(g, d, p, size);
    }
}

/// Records a free of the domain, likewise.
#[inline(always)]
fn free_in<const SAMPLED: bool>(g: &Guard, d: &Domain, p: usize) {
    if !SAMPLED {
        record_free_in(g, d, p);
    } else if !unsampled_free(d, p) {
        record_free_out_of_line(g, d, p);
    }
}

/// Records an allocation of the domain: the raw domain's are blocks C code asked for itself
/// (zlib's, lzma's buffers...), big ones reservations as for `malloc`
/// ([`crate::emit::record_block`]).
#[inline(always)]
fn record_alloc_in<const PROFILE: bool>(g: &Guard, d: &Domain, p: usize, size: usize) {
    keep_stack::<PROFILE>(d);
    if d.kind == AllocKind::PyRaw {
        record_block(g, p, size, d.kind);
    } else {
        record_alloc(g, p, size, d.kind);
    }
}

/// [`record_alloc_in`], called from the sampled layout.
#[inline(never)]
fn record_alloc_out_of_line<const PROFILE: bool>(g: &Guard, d: &Domain, p: usize, size: usize) {
    record_alloc_in::<PROFILE>(g, d, p, size);
}

/// Records a free of the domain.
#[inline(always)]
fn record_free_in(g: &Guard, d: &Domain, p: usize) {
    if d.kind == AllocKind::PyRaw {
        record_block_free(g, p, d.kind);
    } else {
        record_free(g, p, d.kind);
    }
}

/// [`record_free_in`], called from the sampled layout.
#[inline(never)]
fn record_free_out_of_line(g: &Guard, d: &Domain, p: usize) {
    record_free_in(g, d, p);
}

unsafe extern "C" fn hook_malloc<const PROFILE: bool, const SAMPLED: bool>(
    ctx: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: CPython passes back the ctx we registered.
    let (d, prev) = unsafe { domain(ctx) };
    let g = Guard::enter(d.ctx);
    // SAFETY: calling the previous allocator with its own ctx, as CPython would.
    let p = unsafe { (prev.malloc.unwrap_unchecked())(prev.ctx, size) };
    if g.outermost() && !p.is_null() && active() {
        alloc_in::<PROFILE, SAMPLED>(&g, d, p as usize, size);
    }
    p
}

unsafe extern "C" fn hook_calloc<const PROFILE: bool, const SAMPLED: bool>(
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
        alloc_in::<PROFILE, SAMPLED>(&g, d, p as usize, n.saturating_mul(size));
    }
    p
}

unsafe extern "C" fn hook_realloc<const PROFILE: bool, const SAMPLED: bool>(
    ctx: *mut c_void,
    old: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: CPython passes back the ctx we registered.
    let (d, prev) = unsafe { domain(ctx) };
    let g = Guard::enter(d.ctx);
    let rec = g.outermost() && active();
    if rec && !old.is_null() {
        free_in::<SAMPLED>(&g, d, old as usize);
    }
    // SAFETY: calling the previous allocator with its own ctx.
    let p = unsafe { (prev.realloc.unwrap_unchecked())(prev.ctx, old, size) };
    if rec && !p.is_null() {
        alloc_in::<PROFILE, SAMPLED>(&g, d, p as usize, size);
    }
    p
}

unsafe extern "C" fn hook_free<const SAMPLED: bool>(ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: CPython passes back the ctx we registered.
    let (d, prev) = unsafe { domain(ctx) };
    let g = Guard::enter(d.ctx);
    if g.outermost() && !p.is_null() && active() {
        free_in::<SAMPLED>(&g, d, p as usize);
    }
    // SAFETY: calling the previous allocator with its own ctx.
    unsafe { (prev.free.unwrap_unchecked())(prev.ctx, p) }
}
