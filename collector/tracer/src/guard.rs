//! The per-thread re-entrancy guard: only the outermost hook on a thread records.
//!
//! `PyObject_Malloc` may call `PyMem_RawMalloc`, which calls `malloc`, which may call
//! `mmap`; counting each level would count the same bytes several times. Each hook
//! enters the guard; only a hook that entered at depth 0 records. The one exception
//! is pymalloc's arena `mmap`, which happens directly (depth 1) inside an object- or
//! mem-domain hook and is recorded as `PymallocArena`.

use std::cell::Cell;

use crate::thread_state::ThreadState;

/// What the outermost guarded call on this thread is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ctx {
    /// A native malloc-family or mmap hook.
    Native,
    /// A Python raw-domain hook.
    PyRaw,
    /// A Python mem- or object-domain hook (pymalloc).
    Pymalloc,
    /// The tracer's own work (profile callback, drain thread, API calls): never record.
    Tracer,
}

/// Everything the hooks keep per thread, in one thread-local: in a shared library each
/// thread-local access is a call into the dynamic linker, so a hook makes one.
pub struct Tls {
    depth: Cell<u32>,
    outer: Cell<Ctx>,
    /// The thread's tracer state (see [`crate::thread_state`]).
    pub state: Cell<*mut ThreadState>,
}

thread_local! {
    static TLS: Tls = const {
        Tls { depth: Cell::new(0), outer: Cell::new(Ctx::Tracer), state: Cell::new(std::ptr::null_mut()) }
    };
}

/// The calling thread's [`Tls`]. It has no destructor, so it stays valid until the
/// thread is gone; the reference must not be handed to another thread.
#[inline]
pub fn tls() -> &'static Tls {
    // SAFETY: see above; every user stays on the calling thread.
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
