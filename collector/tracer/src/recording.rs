//! Whether recording is on: the switches every hook reads, the session number, and the
//! framing of records that belong to no thread.
//!
//! Layer: the bottom of the emit layer. It imports nothing of the tracer above
//! [`crate::clock`]: the hooks and the per-thread state ([`crate::thread_state`]) read these
//! switches on every call, the drain ([`crate::drain`]) turns them off when the pipe breaks
//! or the session stops, and only the session layer ([`crate::session`]) turns them on.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use memlens_wire::{Header, Record};

use crate::clock::now_ns;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static NATIVE: AtomicBool = AtomicBool::new(false);
/// The current session's number (0: tracing never started).
static SESSION: AtomicU32 = AtomicU32::new(0);

/// Thread index used for records that belong to no thread (Hello, Stop).
pub const NO_THREAD: u32 = u32::MAX;

/// The current session's number (0: tracing never started).
#[inline]
pub fn session() -> u32 {
    SESSION.load(Ordering::Acquire)
}

/// Whether a session is recording.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Whether a session is recording native (malloc-family and mmap) allocations.
#[inline]
pub fn native_active() -> bool {
    NATIVE.load(Ordering::Relaxed)
}

/// A new session begins (before recording is on): threads re-introduce themselves.
pub fn next_session() {
    SESSION.fetch_add(1, Ordering::AcqRel);
}

/// Recording on, native allocations too if `native`: the session's first records are on
/// their way.
pub fn turn_on(native: bool) {
    ACTIVE.store(true, Ordering::Release);
    NATIVE.store(native, Ordering::Release);
}

/// Recording off, for a session that stops. Returns whether it was on (only the caller
/// that turned it off finishes the session).
pub fn turn_off() -> bool {
    if !ACTIVE.swap(false, Ordering::AcqRel) {
        return false;
    }
    NATIVE.store(false, Ordering::Release);
    true
}

/// Recording off at once, without finishing the session: the pipe broke, or this is a
/// forked child (which must not write into its parent's pipe).
pub fn cut_off() {
    ACTIVE.store(false, Ordering::Relaxed);
    NATIVE.store(false, Ordering::Relaxed);
}

/// Appends `rec`, as a record of no thread stamped now, to `buf`.
pub fn encode_unthreaded(rec: &Record<'_>, buf: &mut Vec<u8>) {
    Record::Stretch(Header { time_ns: now_ns(), thread: NO_THREAD }).append_to(buf);
    rec.append_to(buf);
}
