//! Global tracing state: start, stop, the drain thread and the pipe to the parent.
//!
//! The drain thread wakes every [`DRAIN_PERIOD`], takes a cutoff T = now, pops every
//! record stamped <= T from every ring, merges them by time and writes the batch to
//! the pipe. Stopping (atexit, `_exit`) turns recording off and drains everything
//! synchronously, then sends `Stop` and closes the pipe.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use memlens_wire::{AllocKind, Header, Hello, Record, PROTOCOL};

use crate::clock::now_ns;
use crate::guard;
use crate::python_api::{self, PyApi};
use crate::ring;
use crate::thread_state::{self, with_state};

/// How often the drain thread empties the rings: often enough that a SIGKILL loses
/// at most a few ms of records, rarely enough to cost nothing measurable.
const DRAIN_PERIOD: Duration = Duration::from_millis(5);

/// The drain takes records stamped up to `now - MERGE_MARGIN`: see ring.rs for why
/// this margin lets producers skip a memory fence.
const MERGE_MARGIN_NS: u64 = 1_000_000;

/// A drain pass that moved more than this goes again without sleeping: the rings are
/// filling faster than one pass per period can empty them.
const BUSY_BYTES: usize = 256 * 1024;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static NATIVE: AtomicBool = AtomicBool::new(false);
static FD: AtomicI32 = AtomicI32::new(-1);
/// Held by whoever is draining (the drain thread or the final stop).
static DRAIN_LOCK: AtomicBool = AtomicBool::new(false);
static STOPPING: AtomicBool = AtomicBool::new(false);

#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

#[inline]
pub fn native_active() -> bool {
    NATIVE.load(Ordering::Relaxed)
}

/// Records an allocation on the calling thread, after syncing its stack.
#[inline]
pub fn record_alloc(address: usize, size: usize, kind: AllocKind) {
    with_state(|st| {
        if !st.paused {
            st.push_with_stack(Record::Alloc { address: address as u64, size: size as u64, kind })
        }
    });
}

#[inline]
pub fn record_free(address: usize, kind: AllocKind) {
    with_state(|st| {
        if !st.paused {
            st.push(&Record::Free { address: address as u64, kind })
        }
    });
}

/// Turns recording of the calling thread's allocations and frees off (`true`) or back
/// on. Records other than allocations still go out.
pub fn pause_thread(paused: bool) {
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    with_state(|st| st.paused = paused);
}

/// Records any other event from the calling thread.
pub fn record(rec: &Record<'_>) {
    if active() {
        let _g = guard::Guard::enter(guard::Ctx::Tracer);
        with_state(|st| st.push(rec));
    }
}

fn lock_drain() {
    while DRAIN_LOCK.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::thread::yield_now();
    }
}

fn unlock_drain() {
    DRAIN_LOCK.store(false, Ordering::Release);
}

fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writing an initialized buffer to a file descriptor.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // The parent is gone (EPIPE) or the fd is bad: stop tracing quietly
            // rather than disturbing the traced program.
            ACTIVE.store(false, Ordering::Relaxed);
            NATIVE.store(false, Ordering::Relaxed);
            return;
        }
        buf = &buf[n as usize..];
    }
}

struct Drainer {
    scratch: Vec<Vec<u8>>,
    out: Vec<u8>,
}

impl Drainer {
    /// Returns the number of bytes written.
    fn drain(&mut self, cutoff: u64) -> usize {
        let fd = FD.load(Ordering::Relaxed);
        if fd < 0 {
            return 0;
        }
        self.out.clear();
        let n = ring::drain_all(cutoff, &mut self.scratch, &mut self.out);
        if !self.out.is_empty() {
            write_all(fd, &self.out);
        }
        n
    }
}

fn drain_thread() {
    let mut d = Drainer { scratch: Vec::new(), out: Vec::new() };
    let mut moved = 0;
    while !STOPPING.load(Ordering::Acquire) {
        if moved < BUSY_BYTES {
            std::thread::sleep(DRAIN_PERIOD);
        }
        lock_drain();
        moved = 0;
        if !STOPPING.load(Ordering::Acquire) {
            moved = d.drain(now_ns().saturating_sub(MERGE_MARGIN_NS));
        }
        unlock_drain();
    }
}

/// Why [`start`] failed, as a message for the Python side.
pub fn start(fd: i32, native: bool) -> Result<(), String> {
    if active() {
        return Err("memlens tracing is already active in this process".into());
    }
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    crate::real::real();
    let api: &PyApi = python_api::init().map_err(|e| e.to_string())?;
    if !crate::profiler::init(api) {
        return Err("cannot reserve a code-object extra slot".into());
    }
    // The fd is for us alone: don't leak it into programs the traced one execs.
    // SAFETY: fcntl on an fd number; failure is harmless.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    FD.store(fd, Ordering::Relaxed);
    thread_state::init_key();
    // SAFETY: registering a fork handler with the required signature.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };

    // Hello goes straight to the pipe so it precedes every ring record.
    let hello = Record::Hello(Hello {
        protocol: PROTOCOL,
        pid: std::process::id(),
        python_major: api.major,
        python_minor: api.minor,
        native,
    });
    let mut buf = vec![0u8; hello.encoded_len()];
    hello.encode_into(Header { time_ns: now_ns(), thread: NO_THREAD }, &mut buf);
    write_all(fd, &buf);

    crate::pymem_hooks::install(api);
    ACTIVE.store(true, Ordering::Release);
    NATIVE.store(native, Ordering::Release);
    crate::profiler::install_on_current_thread(std::ptr::null_mut(), Some(b"MainThread"));
    spawn_drain_thread()
}

/// A raw pthread rather than std::thread: std's thread start-up allocates before our
/// closure could turn recording off for the thread, and the drain thread must never
/// record (its own buffers are not the program's memory).
fn spawn_drain_thread() -> Result<(), String> {
    extern "C" fn entry(_: *mut libc::c_void) -> *mut libc::c_void {
        guard::disable_forever();
        drain_thread();
        std::ptr::null_mut()
    }
    let mut tid: libc::pthread_t = 0;
    // SAFETY: entry has the pthread start signature and ignores its argument.
    let rc =
        unsafe { libc::pthread_create(&mut tid, std::ptr::null(), entry, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!("cannot start the drain thread (error {rc})"));
    }
    // SAFETY: naming the thread we just created (15 bytes + NUL).
    unsafe { libc::pthread_setname_np(tid, c"memlens-drain".as_ptr()) };
    Ok(())
}

/// Stops recording, drains every ring, sends `Stop` and closes the pipe.
/// Safe to call more than once and from any thread.
pub fn stop() {
    if !ACTIVE.swap(false, Ordering::AcqRel) {
        return;
    }
    NATIVE.store(false, Ordering::Release);
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    lock_drain();
    STOPPING.store(true, Ordering::Release);
    let mut d = Drainer { scratch: Vec::new(), out: Vec::new() };
    d.drain(u64::MAX);
    let fd = FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        let mut buf = [0u8; 32];
        let n = Record::Stop.encode_into(Header { time_ns: now_ns(), thread: NO_THREAD }, &mut buf);
        write_all(fd, &buf[..n.unwrap_or(0)]);
        // SAFETY: closing the fd we own; the parent sees EOF.
        unsafe { libc::close(fd) };
    }
    unlock_drain();
}

extern "C" fn after_fork_in_child() {
    // A forked child (multiprocessing, subprocess before exec) must not write into
    // the parent's pipe, nor keep it open (the parent waits for EOF).
    ACTIVE.store(false, Ordering::Relaxed);
    NATIVE.store(false, Ordering::Relaxed);
    let fd = FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: closing our copy of the pipe in the child.
        unsafe { libc::close(fd) };
    }
}

/// Thread index used for records that belong to no thread (Hello, Stop).
pub const NO_THREAD: u32 = u32::MAX;
