//! The per-thread re-entrancy guard: only the outermost hook on a thread records.
//!
//! Layer: foundations, the bottom of the tracer: every hook enters it, and it imports
//! nothing of the tracer (it keeps the thread's state untyped for [`crate::thread_state`]).
//!
//! `PyObject_Malloc` may call `PyMem_RawMalloc`, which calls `malloc`, which may call
//! `mmap`; counting each level would count the same bytes several times. Each hook
//! enters the guard; only a hook that entered at depth 0 records. The one exception
//! is pymalloc's arena `mmap`, which happens directly (depth 1) inside an object- or
//! mem-domain hook and is recorded as `PymallocArena`.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, Ordering};

/// What the outermost guarded call on this thread is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Ctx {
    /// The tracer's own work (profile callback, drain thread, API calls): never record.
    /// Zero, what a thread's [`Tls`] starts as.
    Tracer = 0,
    /// A native malloc-family or mmap hook.
    Native,
    /// A Python raw-domain hook.
    PyRaw,
    /// A Python mem- or object-domain hook (pymalloc).
    Pymalloc,
}

/// Everything the hooks keep per thread, in one thread-local, which starts as all
/// zero bytes on every thread.
#[repr(C)]
pub struct Tls {
    depth: Cell<u32>,
    outer: Cell<Ctx>,
    /// How many stack segments the thread runs on above its own stack (see
    /// [`crate::c_stack::on_fresh_segment`]): above 0, `stack_low` and `stack_size` are a
    /// segment's. (Here, in the bytes `depth` and `outer` leave free.)
    pub segments: Cell<u16>,
    /// The thread's tracer state, a `ThreadState` (see [`crate::thread_state`], which alone
    /// casts it back): untyped, so that this bottom layer names nothing above it.
    pub state: Cell<*mut c_void>,
    /// Bytes the thread may still allocate before its next sampled allocation (see
    /// [`crate::sampling`]): here, not in the state, so that an allocation that is not
    /// sampled costs a decrement of the thread-locals the hook already holds.
    pub countdown: Cell<i64>,
    /// The thread's sampling random state (0: not seeded yet).
    pub rng: Cell<u64>,
    /// The block the thread's last recorded allocation returned, `[start, end)`: the
    /// object created next in it is a fresh one (see [`crate::ref_tracer`]). Here, so that
    /// the reference tracer's common case costs a compare of thread-locals.
    fresh: Cell<(usize, usize)>,
    /// The thread's C stack, `[stack_low, stack_low + stack_size)` (see [`crate::c_stack`],
    /// which alone sets them): here, so that the frame-evaluation hook's check of the room
    /// left is a subtraction and a compare. Zero size: not looked up yet.
    pub stack_low: Cell<usize>,
    pub stack_size: Cell<usize>,
}

impl Tls {
    /// Notes the block just allocated: an object created in it is a fresh one.
    #[inline(always)]
    pub fn note_alloc(&self, address: usize, size: usize) {
        self.fresh.set((address, address.wrapping_add(size)));
    }

    /// Whether `object` lies in the block the thread allocated last, which then counts as
    /// used: a second object created there came from somewhere else (a free list).
    #[inline(always)]
    pub fn take_fresh(&self, object: usize) -> bool {
        let (start, end) = self.fresh.take();
        start <= object && object < end
    }

    /// Whether no hook of the tracer is running on this thread.
    #[inline(always)]
    pub fn outside_hooks(&self) -> bool {
        self.depth.get() == 0
    }
}

/// The bytes reserved for [`Tls`] in the initial-exec block below.
const TLS_BYTES: usize = 64;
const _: () = assert!(std::mem::size_of::<Tls>() <= TLS_BYTES && std::mem::align_of::<Tls>() <= 16);

// A Rust thread-local in a shared library is reached through `__tls_get_addr`, a call
// into the dynamic linker at every hook. This one is in the library's static TLS block
// (the initial-exec model): two instructions. Linux x86-64, where the tracer runs. A
// preloaded library (`memlens run`) always gets static TLS; a `dlopen`ed one
// (`memlens.record()` in a plain `python3`) gets its 64 bytes from the spare static TLS
// glibc keeps for such libraries, and should that ever be used up, loading fails with
// glibc's "cannot allocate memory in static TLS block" (tested with numpy loaded first).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
std::arch::global_asm!(
    ".pushsection .tbss.memlens_tls,\"awT\",@nobits",
    ".p2align 4",
    ".globl memlens_tls",
    ".hidden memlens_tls",
    ".type memlens_tls,@object",
    ".size memlens_tls, {bytes}",
    "memlens_tls:",
    ".zero {bytes}",
    ".popsection",
    bytes = const TLS_BYTES,
);

/// The calling thread's [`Tls`]. It has no destructor, so it stays valid until the
/// thread is gone; the reference must not be handed to another thread.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
pub fn tls() -> &'static Tls {
    let p: *const Tls;
    // SAFETY: the thread pointer plus the block's offset (resolved at load time) is this
    // thread's copy of `memlens_tls`, zeroed by the loader: a valid `Tls`, used only on
    // this thread.
    unsafe {
        std::arch::asm!(
            "mov {p}, qword ptr fs:[0]",
            "add {p}, qword ptr [rip + memlens_tls@GOTTPOFF]",
            p = out(reg) p,
            options(pure, readonly, nostack),
        );
        &*p
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
thread_local! {
    static TLS: Tls = const {
        Tls {
            depth: Cell::new(0),
            outer: Cell::new(Ctx::Tracer),
            segments: Cell::new(0),
            state: Cell::new(std::ptr::null_mut()),
            countdown: Cell::new(0),
            rng: Cell::new(0),
            fresh: Cell::new((0, 0)),
            stack_low: Cell::new(0),
            stack_size: Cell::new(0),
        }
    };
}

/// The calling thread's [`Tls`] (see the x86-64 version).
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[inline]
pub fn tls() -> &'static Tls {
    // SAFETY: no destructor, and every user stays on the calling thread.
    TLS.with(|t| unsafe { &*(t as *const Tls) })
}

/// Held while a hook runs; dropping it leaves the guard.
pub struct Guard {
    tls: &'static Tls,
    outermost: bool,
}

impl Guard {
    #[inline]
    pub fn enter(ctx: Ctx) -> Guard {
        let tls = tls();
        let d = tls.depth.get();
        tls.depth.set(d + 1);
        if d == 0 {
            tls.outer.set(ctx);
        }
        Guard { tls, outermost: d == 0 }
    }

    /// True if this is the first hook on the thread's call stack.
    #[inline]
    pub fn outermost(&self) -> bool {
        self.outermost
    }

    /// The thread's thread-locals (no second lookup).
    #[inline]
    pub fn tls(&self) -> &'static Tls {
        self.tls
    }

    /// True when this hook is nested exactly one level inside a pymalloc (mem/object
    /// domain) hook: that is where pymalloc maps and unmaps its arenas.
    #[inline]
    pub fn directly_inside_pymalloc(&self) -> bool {
        self.tls.depth.get() == 2 && self.tls.outer.get() == Ctx::Pymalloc
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        self.tls.depth.set(self.tls.depth.get() - 1);
    }
}

/// Marks the current thread as never recording (the drain thread).
pub fn disable_forever() {
    let tls = tls();
    tls.depth.set(tls.depth.get() + 1_000_000);
    tls.outer.set(Ctx::Tracer);
}

/// The thread (its kernel id) that a fatal signal stopped for good, 0 if none: its handler
/// waits for the recording to be complete, then the process dies of the signal, so whatever
/// the thread held when the signal came (a tracer lock, a record half written) it never
/// releases. Set by [`stop_for_good`].
static STOPPED_FOR_GOOD: AtomicI32 = AtomicI32::new(0);

/// The calling thread's kernel id. Async-signal-safe.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// From a fatal signal's handler that will not return to the code it interrupted: the
/// calling thread is stopped for good (see [`stopped_for_good`]). Async-signal-safe.
pub fn stop_for_good() {
    STOPPED_FOR_GOOD.store(gettid(), Ordering::Release);
}

/// The thread a fatal signal stopped for good, if any: a lock it holds is never released,
/// and whoever waits for one gives up (the drain's last pass, so that the records before
/// the signal still reach the recording).
pub fn stopped_for_good() -> Option<i32> {
    Some(STOPPED_FOR_GOOD.load(Ordering::Acquire)).filter(|&t| t != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_nest_on_a_thread_local_that_starts_zeroed_on_each_thread() {
        let outer = Guard::enter(Ctx::Pymalloc);
        let inner = Guard::enter(Ctx::Native);
        assert!(outer.outermost() && !inner.outermost());
        assert!(inner.directly_inside_pymalloc());
        let here = tls() as *const Tls as usize;
        let there = std::thread::spawn(|| {
            let t = tls();
            (t as *const Tls as usize, t.depth.get(), t.outer.get(), t.state.get().is_null())
        })
        .join()
        .unwrap();
        assert_ne!(here, there.0);
        assert_eq!((there.1, there.2, there.3), (0, Ctx::Tracer, true));
        drop(inner);
        drop(outer);
        assert_eq!(tls().depth.get(), 0);
        assert!(Guard::enter(Ctx::Native).outermost());
    }
}
