//! The per-thread re-entrancy guard: only the outermost hook on a thread records.
//!
//! `PyObject_Malloc` may call `PyMem_RawMalloc`, which calls `malloc`, which may call
//! `mmap`; counting each level would count the same bytes several times. Each hook
//! enters the guard; only a hook that entered at depth 0 records. The one exception
//! is pymalloc's arena `mmap`, which happens directly (depth 1) inside an object- or
//! mem-domain hook and is recorded as `PymallocArena`.

use std::cell::Cell;

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

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static OUTER: Cell<Ctx> = const { Cell::new(Ctx::Tracer) };
}

/// Held while a hook runs; dropping it leaves the guard.
pub struct Guard {
    outermost: bool,
}

impl Guard {
    #[inline]
    pub fn enter(ctx: Ctx) -> Guard {
        let d = DEPTH.with(|d| {
            let v = d.get();
            d.set(v + 1);
            v
        });
        if d == 0 {
            OUTER.with(|o| o.set(ctx));
        }
        Guard { outermost: d == 0 }
    }

    /// True if this is the first hook on the thread's call stack.
    #[inline]
    pub fn outermost(&self) -> bool {
        self.outermost
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// True when the caller is a hook nested exactly one level inside a pymalloc
/// (mem/object domain) hook: that is where pymalloc maps and unmaps its arenas.
#[inline]
pub fn directly_inside_pymalloc() -> bool {
    DEPTH.with(|d| d.get()) == 2 && OUTER.with(|o| o.get()) == Ctx::Pymalloc
}

/// Marks the current thread as never recording (the drain thread).
pub fn disable_forever() {
    DEPTH.with(|d| d.set(d.get() + 1_000_000));
    OUTER.with(|o| o.set(Ctx::Tracer));
}
