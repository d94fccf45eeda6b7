//! The records the hooks write: allocations and frees (after syncing the thread's stack),
//! and every other event of a thread (markers, gc runs, censuses).
//!
//! Layer: the top of the emit layer, what the hooks ([`crate::native_hooks`],
//! [`crate::pymem_hooks`]) and the C API call. Below it: the switches
//! ([`crate::recording`]), the thread's state and ring ([`crate::thread_state`]), the
//! shadow stacks' upkeep from the interpreter's frames ([`crate::stacks`]) and sampling
//! ([`crate::sampling`], [`crate::sampled_set`]). Nothing here starts or stops a session.

use memlens_wire::{AllocKind, Record};

use crate::guard;
use crate::recording::active;
use crate::reservations;
use crate::stacks;
use crate::thread_state::{self, with_state};

/// Allocations this big get a time of their own (a stretch's start can be up to a drain
/// period early on a quiet thread, see ring.rs): they are what a timeline's steps are made
/// of, and they are rare enough for the clock reading not to matter.
const EXACT_TIME_BYTES: usize = 256 * 1024;

/// Records an allocation on the calling thread, after syncing its stack. Under sampling
/// ([`crate::sampling`]), only the sampled ones, whose addresses go into
/// [`crate::sampled_set`].
///
/// The test of an unsampled allocation is inlined into the hooks (a decrement and a
/// branch); the rest is not.
#[inline(always)]
pub fn record_alloc(g: &guard::Guard, address: usize, size: usize, kind: AllocKind) {
    let sampling = crate::sampling::mean() != 0 && kind.sampled();
    if sampling && !crate::sampling::take(g.tls(), size, crate::sampling::mean()) {
        return;
    }
    record_taken_alloc(g, address, size, kind, sampling);
}

/// [`record_alloc`] of an allocation that is recorded (every one, or a sampled one).
#[inline(never)]
fn record_taken_alloc(
    g: &guard::Guard,
    address: usize,
    size: usize,
    kind: AllocKind,
    sampling: bool,
) {
    thread_state::with_state_in(g.tls(), |st| {
        if st.pause_depth == 0 {
            if sampling {
                crate::sampled_set::insert(address);
            }
            // Frames are read (and frame objects may be made) only where the object and mem
            // domains are called, with the GIL held: never inside pymalloc, which calls the
            // raw domain and mmap halfway through making an arena (a frame object made there
            // re-entered it and broke its free lists).
            let frames_readable = matches!(kind, AllocKind::PymallocObject | AllocKind::PyMem);
            // A thread that was running before tracing started and has made no call since
            // gets its stack here.
            if !st.seeded() && frames_readable {
                stacks::seed_running_thread(st);
            }
            // Frame walking; the other allocations keep the stack walked last.
            if stacks::walking() {
                if frames_readable {
                    stacks::walk_frames(st);
                } else {
                    st.keep_lines();
                }
            }
            if size >= EXACT_TIME_BYTES {
                st.restamp();
            }
            g.tls().note_alloc(address, size);
            if crate::native_stack::on() && kind.native_stack() {
                st.push_native_stack();
            }
            st.push_with_stack(Record::Alloc { address: address as u64, size: size as u64, kind })
        }
    });
}

/// Records a free on the calling thread; under sampling, only of a sampled block (the
/// test that a block is not one, nearly always answered by the set's filter, is inlined
/// into the hooks).
#[inline(always)]
pub fn record_free(g: &guard::Guard, address: usize, kind: AllocKind) {
    if crate::sampling::mean() != 0 && kind.sampled() && !crate::sampled_set::remove(address) {
        return;
    }
    record_taken_free(g, address, kind);
}

#[inline(never)]
fn record_taken_free(g: &guard::Guard, address: usize, kind: AllocKind) {
    thread_state::with_state_in(g.tls(), |st| {
        if st.pause_depth == 0 {
            st.push_free(&Record::Free { address: address as u64, kind })
        }
    });
}

/// A block C code allocated itself (the malloc family, Python's raw domain): of `kind`, or
/// if it is big a reservation ([`crate::reservations`]: only the pages it touches count in
/// the heap), whose resident bytes are reported at once.
#[inline]
pub fn record_block(g: &guard::Guard, p: usize, size: usize, kind: AllocKind) {
    if size >= reservations::BIG_BLOCK {
        record_alloc(g, p, size, AllocKind::Reserved);
        let resident = reservations::add_block(p, size);
        if resident > 0 {
            record_resident(g, p, resident);
        }
    } else {
        record_alloc(g, p, size, kind);
    }
}

/// The free of a block [`record_block`] recorded as `kind`, before the real free: a big
/// one's resident bytes are reported first (it may have been touched since the last look).
#[inline]
pub fn record_block_free(g: &guard::Guard, p: usize, kind: AllocKind) {
    match reservations::take_block(p) {
        Some(resident) => {
            if let Some(bytes) = resident {
                record_resident(g, p, bytes);
            }
            record_free(g, p, AllocKind::Reserved);
        }
        None => record_free(g, p, kind),
    }
}

/// Reports, on the calling thread, the resident bytes of a reservation it has just made or
/// is about to free or unmap ([`crate::reservations`]), with a time of its own.
pub fn record_resident(g: &guard::Guard, address: usize, bytes: usize) {
    thread_state::with_state_in(g.tls(), |st| {
        if st.pause_depth == 0 {
            st.restamp();
            st.push(&Record::Resident { address: address as u64, bytes: bytes as u64 });
        }
    });
}

/// Turns recording of the calling thread's allocations and frees off (`true`) or back
/// on. Records other than allocations still go out.
pub fn pause_thread(paused: bool) {
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    with_state(|st| {
        st.pause_depth = if paused { st.pause_depth + 1 } else { st.pause_depth.saturating_sub(1) };
    });
}

/// Records any other event from the calling thread.
pub fn record(rec: &Record<'_>) {
    if active() {
        let _g = guard::Guard::enter(guard::Ctx::Tracer);
        with_state(|st| st.push(rec));
    }
}
