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
//! Below a margin ([`margin`]) the hook does not run the frame but raises `RecursionError`
//! in it; above, on 3.12 and 3.13, it gives back the units of CPython's C recursion counter
//! that the hooked call costs, as long as the stack left can bear them.
//!
//! Example:
//! ```text
//! match c_stack::room(tls()) {
//!     Room::Free(bytes) => { /* run the frame; `bytes` above the margin */ }
//!     Room::Low => { /* raise RecursionError instead */ }
//!     Room::Unknown => { /* another stack, or none known: run it as before */ }
//! }
//! ```

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
    fn a_stack_pointer_elsewhere_is_unknown() {
        let t = tls();
        assert!(matches!(room(t), Room::Free(_)));
        let (low, size) = (t.stack_low.get(), t.stack_size.get());
        t.stack_low.set(low + size);
        assert_eq!(room(t), Room::Unknown);
        t.stack_low.set(low);
    }
}
