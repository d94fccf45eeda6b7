//! How much of the thread's C stack is left, for the frame-evaluation hook.
//!
//! Layer: foundations, beside [`crate::guard`], whose thread-locals keep each thread's
//! stack bounds.
//!
//! With a frame-evaluation hook installed (PEP 523), CPython runs every Python call as a C
//! call through the hook ([`crate::profiler`]): from 3.11 on, where it otherwise runs
//! Python-to-Python calls inside one C frame, that is what makes a deep recursion use the
//! thread's C stack (and on 3.9 and 3.10, where Python calls use it anyway, the hook's
//! frame adds to each). Plain Python's recursion limits do not allow for that: a raised
//! `sys.setrecursionlimit` lets the hooked calls run past the end of the stack. So the hook
//! asks at each call how much of the stack is left ([`room`]): the bounds are looked up
//! once per thread (`pthread_getattr_np`, which also knows the main thread's), and the
//! check is a subtraction and a compare against the stack pointer.
//!
//! Below a margin ([`margin`]) the hook runs the frame on a fresh stack segment
//! ([`on_fresh_segment`]; 3.14+, which checks the stack's address itself, is told where the
//! segment is), so that a program recurses as deep as its recursion limit lets it, as it
//! does without memlens; where it cannot (greenlets), it does not run the frame but raises
//! `RecursionError` in it. Above the margin, on 3.12 and 3.13, it gives back the
//! units of CPython's C recursion counter that the hooked call costs, as long as the stack
//! left can bear them.
//!
//! A segment is [`SEGMENT`] bytes of anonymous memory mapped by the tracer itself (never
//! recorded) with a guard page below it; while the frame runs there the thread-locals hold
//! the segment's bounds, so a deeper recursion moves on to another segment the same way.
//! A segment given back is kept for the next (at most [`SPARE`] of them, process-wide), so
//! that a program calling in and out across a segment's end does not map and unmap at each
//! call; the others are unmapped.
//!
//! Example:
//! ```text
//! match c_stack::room(tls()) {
//!     Room::Free(bytes) => { /* run the frame; `bytes` above the margin */ }
//!     Room::Low => { /* c_stack::on_fresh_segment(tls(), run), or RecursionError */ }
//!     Room::Unknown => { /* another stack, or none known: run it as before */ }
//! }
//! ```

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::guard::{Ctx, Guard, Tls};

/// What is left of the calling thread's C stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// This many bytes above the margin.
    Free(usize),
    /// Less than the margin: too little to run another Python frame through the hook.
    Low,
    /// The stack pointer is outside the thread's known stack (a stack a library switched
    /// to), or the bounds could not be looked up.
    Unknown,
}

/// The most kept free at the bottom of a thread's stack: what CPython needs to raise the
/// `RecursionError`, unwind the frames and run the `except` and `finally` blocks on the
/// way (which may call C code that uses the stack without a Python call, whose frame the
/// hook could refuse), and C code that recurses without calling Python: above all the
/// deallocation of what the unwound frames held, which recurses in C for some objects
/// (a chain of generators, each holding the next: about 80-100 bytes a link, so 512 KiB
/// frees some 5,000; a chain of 20,000 generators resumed 15,000 deep and abandoned at
/// the `RecursionError` crashed 3.12.1 with 256 KiB). 3-6% of an 8 MiB stack.
const MARGIN: usize = 512 * 1024;

/// The margin kept on a stack of `size` bytes: [`MARGIN`], or an eighth of a small stack
/// (a thread started after `threading.stack_size(256 * 1024)` keeps 32 KiB).
#[inline(always)]
pub fn margin(size: usize) -> usize {
    MARGIN.min(size / 8)
}

/// The calling thread's stack pointer (or near it).
#[inline(always)]
fn stack_pointer() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let sp: usize;
        // SAFETY: reads a register; no memory is touched.
        unsafe {
            std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize
    }
}

/// How much of the calling thread's C stack is left, `tls` being its thread-locals.
#[inline(always)]
pub fn room(tls: &Tls) -> Room {
    let here = stack_pointer();
    let size = tls.stack_size.get();
    let pos = here.wrapping_sub(tls.stack_low.get());
    if pos < size {
        let margin = margin(size);
        return if pos >= margin { Room::Free(pos - margin) } else { Room::Low };
    }
    outside(tls, here)
}

/// [`room`] when the stack pointer is not on the stack the thread-locals know: the first
/// call on the thread looks the bounds up.
#[cold]
#[inline(never)]
fn outside(tls: &Tls, here: usize) -> Room {
    if tls.stack_size.get() != 0 {
        return Room::Unknown;
    }
    let (low, size) = look_up().unwrap_or((usize::MAX, 1));
    tls.stack_low.set(low);
    tls.stack_size.set(size);
    let pos = here.wrapping_sub(low);
    if pos < size {
        room(tls)
    } else {
        Room::Unknown
    }
}

/// The calling thread's stack, `(lowest address, size)`, without its guard page.
fn look_up() -> Option<(usize, usize)> {
    // The main thread's bounds come from /proc/self/maps, read with stdio's allocations:
    // the tracer's own, not the program's.
    let _guard = Guard::enter(Ctx::Tracer);
    // SAFETY: `attr` is initialized by pthread_getattr_np before it is read, and destroyed
    // once; the out-pointers are valid.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        (ok && !addr.is_null() && size > 0).then_some((addr as usize, size))
    }
}

/// The usable size of a stack segment: a main thread's default stack, about 15,000 hooked
/// Python calls on 3.11-3.13 (docs/python-versions.md#deep-recursion).
const SEGMENT: usize = 8 * 1024 * 1024;
/// The guard page below a segment: running past its end is a crash, not a write over
/// whatever is mapped below.
const GUARD: usize = 4096;
/// How many segments given back are kept mapped for the next (process-wide).
const SPARE: usize = 2;
/// Segments kept for the next (their lowest address, the guard page's; 0: empty).
static SPARES: [AtomicUsize; SPARE] = [const { AtomicUsize::new(0) }; SPARE];

/// Runs `run` on a fresh stack segment, the thread-locals `tls` holding its bounds meanwhile;
/// `None` (and `run` not run) when no segment could be mapped or this machine has no
/// stack switch here.
#[cold]
#[inline(never)]
pub fn on_fresh_segment<F: FnOnce() -> R, R>(tls: &Tls, run: F) -> Option<R> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let depth = tls.segments.get().checked_add(1)?;
    let base = take_segment()?;
    let saved = (tls.stack_low.get(), tls.stack_size.get());
    tls.stack_low.set(base + GUARD);
    tls.stack_size.set(SEGMENT);
    tls.segments.set(depth);
    let mut job: Job<F, R> = Job { run: Some(run), result: None };
    // SAFETY: the segment is mapped, readable and writable, and ours alone until given
    // back below; its top is 16-byte aligned, as the call needs.
    unsafe { call_on(base + GUARD + SEGMENT, Job::<F, R>::run, (&raw mut job).cast()) };
    tls.segments.set(depth - 1);
    tls.stack_low.set(saved.0);
    tls.stack_size.set(saved.1);
    give_back(base);
    job.result
}

/// The stack segment the calling thread runs on, `(lowest address, size)`; `None` on its
/// own stack.
pub fn segment(tls: &Tls) -> Option<(usize, usize)> {
    (tls.segments.get() > 0).then(|| (tls.stack_low.get(), tls.stack_size.get()))
}

/// A closure to run on another stack, and its result.
struct Job<F, R> {
    run: Option<F>,
    result: Option<R>,
}

impl<F: FnOnce() -> R, R> Job<F, R> {
    /// Runs the job `data` points to (a `Job<F, R>`). A panic aborts the process, as it
    /// cannot unwind across the stack switch (`extern "C"`).
    unsafe extern "C" fn run(data: *mut c_void) {
        // SAFETY: `on_fresh_segment` passes its own `Job`, alive until `call_on` returns.
        let job = unsafe { &mut *data.cast::<Job<F, R>>() };
        if let Some(run) = job.run.take() {
            job.result = Some(run());
        }
    }
}

/// Calls `run(data)` with the stack pointer at `top`, and comes back to the caller's stack.
///
/// # Safety
/// `[top - SEGMENT, top)` is mapped, writable and unused; `top` is 16-byte aligned; `run`
/// does not unwind.
#[cfg(target_arch = "x86_64")]
unsafe fn call_on(top: usize, run: unsafe extern "C" fn(*mut c_void), data: *mut c_void) {
    // SAFETY: per the contract. r12 (callee-saved, so `run` keeps it) holds the caller's
    // stack pointer across the call; every register the C ABI lets `run` change is declared
    // clobbered.
    unsafe {
        std::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {run}",
            "mov rsp, r12",
            top = in(reg) top,
            run = in(reg) run,
            in("rdi") data,
            out("r12") _,
            clobber_abi("C"),
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn call_on(_: usize, _: unsafe extern "C" fn(*mut c_void), _: *mut c_void) {
    unreachable!("on_fresh_segment switches stacks on x86-64 only")
}

/// A segment (its lowest address, the guard page's): a spare, or a new mapping.
fn take_segment() -> Option<usize> {
    if let Some(base) = SPARES.iter().map(|s| s.swap(0, Ordering::Acquire)).find(|&b| b != 0) {
        return Some(base);
    }
    let _guard = Guard::enter(Ctx::Tracer);
    let real = crate::real::real()?;
    // SAFETY: a new private anonymous mapping; nothing else is touched.
    let p = unsafe {
        (real.mmap)(
            std::ptr::null_mut(),
            GUARD + SEGMENT,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the first page of the mapping just made.
    if unsafe { libc::mprotect(p, GUARD, libc::PROT_NONE) } != 0 {
        // SAFETY: the mapping just made, unused.
        unsafe { (real.munmap)(p, GUARD + SEGMENT) };
        return None;
    }
    Some(p as usize)
}

/// A segment no longer used: kept as a spare, or unmapped.
fn give_back(base: usize) {
    if SPARES
        .iter()
        .any(|s| s.compare_exchange(0, base, Ordering::Release, Ordering::Relaxed).is_ok())
    {
        return;
    }
    if let Some(real) = crate::real::real() {
        let _guard = Guard::enter(Ctx::Tracer);
        // SAFETY: a segment `take_segment` mapped, no longer in use.
        unsafe { (real.munmap)(base as *mut c_void, GUARD + SEGMENT) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::tls;

    #[test]
    fn knows_the_room_left_on_a_threads_stack() {
        let (first, deeper, size) = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(|| {
                let first = room(tls());
                fn recurse(n: u32) -> Room {
                    let pad = std::hint::black_box([0u8; 4096]);
                    if n == 0 {
                        room(tls())
                    } else {
                        let r = recurse(n - 1);
                        std::hint::black_box(pad);
                        r
                    }
                }
                // (glibc may give the thread a larger stack it kept from an earlier one.)
                (first, recurse(32), tls().stack_size.get())
            })
            .unwrap()
            .join()
            .unwrap();
        let (Room::Free(a), Room::Free(b)) = (first, deeper) else {
            panic!("{first:?} {deeper:?}")
        };
        assert!(size >= 1024 * 1024, "{size}");
        assert!(a <= size - margin(size) && a > size / 2, "{a} of {size}");
        assert!(a - b >= 32 * 4096, "{a} {b}");
    }

    #[test]
    fn runs_on_fresh_segments_and_comes_back() {
        let t = tls();
        let before = room(t);
        assert!(matches!(before, Room::Free(_)), "{before:?}");
        let outer = (t.stack_low.get(), t.stack_size.get());
        let (first, second, inner_low) = on_fresh_segment(t, || {
            let first = room(tls());
            let low = tls().stack_low.get();
            assert_eq!(segment(tls()), Some((low, SEGMENT)));
            // A segment on the segment (a recursion past the first one's end).
            let second = on_fresh_segment(tls(), || {
                let pad = std::hint::black_box([7u8; 64 * 1024]);
                std::hint::black_box(&pad);
                (room(tls()), tls().stack_low.get())
            })
            .unwrap();
            assert_eq!(tls().stack_low.get(), low, "the first segment's bounds are back");
            (first, second, low)
        })
        .unwrap();
        let (Room::Free(a), (Room::Free(b), second_low)) = (first, second) else {
            panic!("{first:?} {second:?}")
        };
        // Nearly a whole segment above its margin; the segments are distinct.
        assert!(a > SEGMENT - margin(SEGMENT) - 4096 && a <= SEGMENT - margin(SEGMENT), "{a}");
        assert!(b < SEGMENT - margin(SEGMENT) - 64 * 1024, "{b}");
        assert_ne!(inner_low, second_low);
        assert!(outer.0 + outer.1 <= inner_low || inner_low + SEGMENT <= outer.0);
        assert_eq!((t.stack_low.get(), t.stack_size.get()), outer);
        assert_eq!(segment(t), None);
        // Given back: kept as spares, the next one is one of them.
        let again = on_fresh_segment(t, || tls().stack_low.get()).unwrap();
        assert!(again == inner_low || again == second_low, "{again:#x}");
    }

    #[test]
    fn a_stack_pointer_elsewhere_is_unknown() {
        let t = tls();
        assert!(matches!(room(t), Room::Free(_)));
        let (low, size) = (t.stack_low.get(), t.stack_size.get());
        t.stack_low.set(low + size);
        assert_eq!(room(t), Room::Unknown);
        t.stack_low.set(low);
    }
}
