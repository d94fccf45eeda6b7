//! Global tracing state: start, stop, the drain thread and the pipe to the parent.
//!
//! The drain thread wakes every [`DRAIN_PERIOD`], advances the rings' logical clock,
//! takes from every ring the stretches numbered below the mark it set at least
//! [`MARGIN`] earlier, and writes them to the pipe by number, each with its thread
//! and time (see [`crate::ring`]). Stopping (atexit, `_exit`, the end of `memlens.record()`) turns recording
//! off and drains everything synchronously, then sends `Stop` and closes the pipe.
//!
//! Tracing can start again after a stop, into a new pipe (one `memlens.record()` block
//! after another, one recording per test). Each start begins a new *session*: every
//! thread re-introduces itself and re-sends its whole stack before its next record
//! (see [`crate::thread_state`]), and the descriptions of every code object seen so
//! far are sent right after `Hello` (see [`crate::profiler`]), so each recording is
//! complete on its own. The drain thread outlives sessions and idles between them.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use memlens_wire::{AllocKind, Header, Hello, Record, PROTOCOL};

use crate::clock::{now_ns, TickConverter};
use crate::guard;
use crate::python_api::{self, PyApi};
use crate::ring;
use crate::thread_state::{self, with_state};

/// How often the drain thread empties the rings: often enough that a SIGKILL loses
/// at most a few ms of records, rarely enough to cost nothing measurable.
const DRAIN_PERIOD: Duration = Duration::from_millis(5);

/// The drain takes the stretches opened before the mark it set this long ago: see
/// ring.rs for why this margin lets producers skip a memory fence.
const MARGIN: Duration = Duration::from_millis(2);

/// A drain pass that moved more than this goes again without sleeping: the rings are
/// filling faster than one pass per period can empty them.
const BUSY_BYTES: usize = 256 * 1024;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static NATIVE: AtomicBool = AtomicBool::new(false);
static FD: AtomicI32 = AtomicI32::new(-1);
/// Held by whoever is draining or switching the pipe (the drain thread, start, stop).
static DRAIN_LOCK: AtomicBool = AtomicBool::new(false);
static DRAIN_STARTED: AtomicBool = AtomicBool::new(false);
/// The drain thread's pthread id, while it runs.
static DRAIN_THREAD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Asks an idle drain thread to end ([`retire_drain_thread`]).
static DRAIN_RETIRE: AtomicBool = AtomicBool::new(false);
/// The current session's number (0: tracing never started).
static SESSION: AtomicU32 = AtomicU32::new(0);

/// Between sessions the drain thread only checks, rarely, whether a new one started.
const IDLE_PERIOD: Duration = Duration::from_millis(50);

#[inline]
pub fn session() -> u32 {
    SESSION.load(Ordering::Acquire)
}

#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

#[inline]
pub fn native_active() -> bool {
    NATIVE.load(Ordering::Relaxed)
}

/// Allocations this big get a time of their own (a stretch's start can be up to a drain
/// period early on a quiet thread, see ring.rs): they are what a timeline's steps are made
/// of, and they are rare enough for the clock reading not to matter.
const EXACT_TIME_BYTES: usize = 256 * 1024;

/// Records an allocation on the calling thread, after syncing its stack. Under sampling
/// ([`crate::sampling`]), only the sampled ones, whose addresses go into
/// [`crate::sampled_set`].
#[inline]
pub fn record_alloc(g: &guard::Guard, address: usize, size: usize, kind: AllocKind) {
    let sampling = crate::sampling::mean() != 0 && kind.sampled();
    if sampling && !crate::sampling::take(g.tls(), size, crate::sampling::mean()) {
        return;
    }
    thread_state::with_state_in(g.tls(), |st| {
        if st.pause_depth == 0 {
            if sampling {
                crate::sampled_set::insert(address);
            }
            // The object and mem domains are called with the GIL held: a thread that was
            // running before tracing started and has made no call since gets its stack here.
            if !st.seeded() && matches!(kind, AllocKind::PymallocObject | AllocKind::PyMem) {
                crate::profiler::seed_running_thread(st);
            }
            if crate::profiler::walking() {
                crate::profiler::walk_frames(st);
            }
            if size >= EXACT_TIME_BYTES {
                st.restamp();
            }
            st.note_alloc(address, size);
            if crate::native_stack::on() && kind.native_stack() {
                st.push_native_stack();
            }
            st.push_with_stack(Record::Alloc { address: address as u64, size: size as u64, kind })
        }
    });
}

/// Records a free on the calling thread; under sampling, only of a sampled block.
#[inline]
pub fn record_free(g: &guard::Guard, address: usize, kind: AllocKind) {
    if crate::sampling::mean() != 0 && kind.sampled() && !crate::sampled_set::remove(address) {
        return;
    }
    thread_state::with_state_in(g.tls(), |st| {
        if st.pause_depth == 0 {
            st.push_free(&Record::Free { address: address as u64, kind })
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

/// What draining needs, reused pass after pass. Only touched while holding
/// [`DRAIN_LOCK`] (a spin flag rather than a Mutex: a forked child resets it).
struct Drainer {
    rings: ring::Drain,
    out: Vec<u8>,
    /// Residency of the program's mappings ([`crate::reservations`]).
    mappings: crate::reservations::Scanner,
    clock: TickConverter,
    /// The drain's marks on the logical clock, with when they were set, oldest first.
    marks: VecDeque<(u64, u64)>,
    /// The newest mark at least MARGIN old.
    cut: u64,
}

struct DrainCell(UnsafeCell<Drainer>);
// SAFETY: the Drainer is only reached through DrainGuard, which holds DRAIN_LOCK.
unsafe impl Sync for DrainCell {}
static DRAINER: DrainCell = DrainCell(UnsafeCell::new(Drainer {
    rings: ring::Drain::new(),
    out: Vec::new(),
    mappings: crate::reservations::Scanner::new(),
    clock: TickConverter::new(),
    marks: VecDeque::new(),
    cut: 0,
}));

/// Holds [`DRAIN_LOCK`]; gives the [`Drainer`].
struct DrainGuard;

impl DrainGuard {
    fn lock() -> DrainGuard {
        while DRAIN_LOCK
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        DrainGuard
    }

    fn drainer(&mut self) -> &mut Drainer {
        // SAFETY: we hold DRAIN_LOCK, so no one else has a reference, and the &mut
        // borrow of self keeps this one unique.
        unsafe { &mut *DRAINER.0.get() }
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        DRAIN_LOCK.store(false, Ordering::Release);
    }
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

impl Drainer {
    /// Marks the logical clock, and returns the newest mark that is old enough to cut at.
    fn next_cut(&mut self) -> u64 {
        let now = now_ns();
        self.marks.push_back((ring::mark(), now));
        while let Some(&(seq, at)) = self.marks.front() {
            if at + MARGIN.as_nanos() as u64 > now {
                break;
            }
            self.cut = seq;
            self.marks.pop_front();
        }
        self.cut
    }

    /// Writes every stretch numbered below `cut` to the pipe, in order. Returns the
    /// number of bytes taken from the rings.
    fn drain(&mut self, cut: u64) -> usize {
        let fd = FD.load(Ordering::Relaxed);
        if fd < 0 {
            return 0;
        }
        self.out.clear();
        self.clock.begin_batch();
        let clock = &mut self.clock;
        let n = self.rings.drain(cut, |t| clock.convert(t), &mut self.out);
        // After the records cut: each mapping's own record is then on its way first.
        self.mappings.scan(cut, cut == u64::MAX, &mut self.out);
        if !self.out.is_empty() {
            write_all(fd, &self.out);
        }
        n
    }

    /// A new session: nothing left from the last one, times from now.
    fn restart(&mut self) {
        self.rings.discard_all();
        crate::reservations::clear();
        self.clock.reset();
        self.marks.clear();
        self.cut = 0;
    }
}

fn drain_thread() {
    let mut moved = 0;
    loop {
        if !active() {
            if DRAIN_RETIRE.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(IDLE_PERIOD);
            continue;
        }
        if moved < BUSY_BYTES {
            // Mark the clock a margin before draining, so that this pass takes everything
            // written up to that mark: a record waits at most about a period to go out
            // (what a SIGKILL can lose), not a period plus the time to the next mark.
            std::thread::sleep(DRAIN_PERIOD - MARGIN);
            DrainGuard::lock().drainer().next_cut();
            std::thread::sleep(MARGIN);
        }
        let mut g = DrainGuard::lock();
        let d = g.drainer();
        moved = if active() {
            let cut = d.next_cut();
            d.drain(cut)
        } else {
            0
        };
    }
}

/// Appends `rec`, as a record of no thread stamped now, to `buf`.
pub fn encode_unthreaded(rec: &Record<'_>, buf: &mut Vec<u8>) {
    Record::Stretch(Header { time_ns: now_ns(), thread: NO_THREAD }).append_to(buf);
    rec.append_to(buf);
}

/// How a session started.
pub enum Started {
    /// Python allocations with their stacks, and native ones if asked; with a note for the
    /// user when stacks are kept the slow way.
    Traced(Option<String>),
    /// This Python cannot be traced (the reason, one line): native allocations only.
    NativeOnly(String),
}

/// Starts a session writing to `fd` (which tracing then owns and closes at [`stop`]).
/// The calling thread's shadow stack starts as `frame` and its callers (null: empty).
/// On a Python the tracer does not support (a version outside 3.9-3.13, a debug or
/// free-threaded build), records native allocations only, when `native` asks for them.
/// Needs the GIL. Errors are messages for the Python side.
pub fn start(
    fd: i32,
    native: bool,
    frame: *mut python_api::PyObject,
    thread_name: &[u8],
) -> Result<Started, String> {
    if active() {
        return Err("memlens is already recording in this process".into());
    }
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    crate::real::real();
    let api: &PyApi = match python_api::init() {
        Ok(api) => api,
        Err(e) if native => {
            open_session(fd, true, None)?;
            let what = "recording native allocations and RSS only, without Python stacks";
            return Ok(Started::NativeOnly(format!("{e}: {what}")));
        }
        Err(e) => return Err(e.to_string()),
    };
    if !crate::profiler::init(api) {
        return Err("cannot reserve a code-object extra slot".into());
    }
    crate::profiler::init_stack_mode(frame);
    open_session(fd, native, Some(api))?;
    crate::profiler::install_on_current_thread(frame, Some(thread_name));
    // Threads already running (a start in mid-program) get the profiler too; without a
    // way to do that on this Python they are traced without their stacks.
    crate::profiler::install_on_all_threads();
    let slow = crate::profiler::mode() == crate::profiler::StackMode::Profile
        && std::env::var_os("MEMLENS_STACKS").is_none();
    Ok(Started::Traced(api.hook_refused().filter(|_| slow)))
}

/// Starts a session of native allocations only, from the library's constructor, before
/// the program's `main` (`memlens run` with an interpreter it cannot trace, see lib.rs);
/// it ends at exit.
pub fn start_at_load(fd: i32) -> Result<(), String> {
    extern "C" fn at_exit() {
        stop();
    }
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    crate::real::real();
    open_session(fd, true, None)?;
    // SAFETY: registering a function with the required signature.
    unsafe { libc::atexit(at_exit) };
    Ok(())
}

/// Opens a session on `fd`: hooks, Hello (and, with Python, the code objects described
/// so far), recording on, the drain thread. `api` is None for native allocations only.
fn open_session(fd: i32, native: bool, api: Option<&PyApi>) -> Result<(), String> {
    if native {
        crate::got::install()?;
    }
    thread_state::init_key();
    if SESSION.load(Ordering::Relaxed) == 0 {
        // SAFETY: registering a fork handler with the required signature.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    }
    // The fd is for us alone: don't leak it into programs the traced one execs. A 1 MiB
    // pipe (Linux's default limit for unprivileged users; 64 KiB otherwise) lets the
    // drain go on writing while the recorder is busy with the previous batch; a followed
    // process's socket gets as much room (its default is ~200 KiB).
    // SAFETY: fcntl and setsockopt on an fd number; the one that does not apply fails,
    // harmlessly.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
        let size: libc::c_int = 1 << 20;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }

    let mut g = DrainGuard::lock();
    // Records a thread pushed while the last session was stopping belong to no one.
    g.drainer().restart();
    let old = FD.swap(fd, Ordering::AcqRel);
    if old >= 0 {
        // SAFETY: the pipe of a session that ended by a write error; we own it.
        unsafe { libc::close(old) };
    }
    SESSION.fetch_add(1, Ordering::AcqRel);
    // Before recording is on: no hook samples or looks up addresses yet.
    let sample_bytes = crate::sampling::begin_session();
    let native_stacks = crate::native_stack::begin_session();
    crate::sampled_set::clear();
    // Hello, then every code object described so far, straight to the pipe: they
    // precede every ring record of the session.
    let mut buf = Vec::new();
    encode_unthreaded(
        &Record::Hello(Hello {
            protocol: PROTOCOL,
            pid: std::process::id(),
            python_major: api.map_or(0, |a| a.major),
            python_minor: api.map_or(0, |a| a.minor),
            native,
            sample_bytes,
            native_stacks,
        }),
        &mut buf,
    );
    let go = |buf: &[u8]| {
        write_all(fd, buf);
        ACTIVE.store(true, Ordering::Release);
        NATIVE.store(native, Ordering::Release);
    };
    match api {
        Some(api) => {
            crate::pymem_hooks::install(api);
            crate::ref_tracer::install(api);
            crate::profiler::replay_codes(buf, go);
        }
        None => go(&buf),
    }
    drop(g);
    if DRAIN_STARTED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    spawn_drain_thread().inspect_err(|_| DRAIN_STARTED.store(false, Ordering::Release))
}

/// A raw pthread rather than std::thread: std's thread start-up allocates before our
/// closure could turn recording off for the thread, and the drain thread must never
/// record (its own buffers are not the program's memory).
fn spawn_drain_thread() -> Result<(), String> {
    extern "C" fn entry(_: *mut libc::c_void) -> *mut libc::c_void {
        guard::disable_forever();
        // Signals for the process go to the program's threads: a handler (ours in
        // process_end.rs, or the program's) waiting here would stop the draining.
        // SAFETY: blocking every signal for this thread with a filled set.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        }
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
    DRAIN_THREAD.store(tid as u64, Ordering::Release);
    Ok(())
}

/// Ends the drain thread, which idles while tracing is off (`memlens attach` leaves no
/// thread of its own behind when it detaches); the next session starts one again. Call with
/// the GIL held and tracing stopped: sessions start with the GIL held, so none starts
/// meanwhile. Returns within about [`IDLE_PERIOD`].
pub fn retire_drain_thread() {
    if active() {
        return;
    }
    let tid = DRAIN_THREAD.swap(0, Ordering::AcqRel);
    if tid == 0 {
        return;
    }
    DRAIN_RETIRE.store(true, Ordering::Release);
    // SAFETY: `tid` is the drain thread, created joinable and joined only here (its id was
    // taken out of DRAIN_THREAD above, so only once).
    unsafe { libc::pthread_join(tid as libc::pthread_t, std::ptr::null_mut()) };
    DRAIN_RETIRE.store(false, Ordering::Release);
    DRAIN_STARTED.store(false, Ordering::Release);
}

/// Stops recording, drains every ring, sends `Stop` and closes the pipe.
/// Safe to call more than once and from any thread.
pub fn stop() {
    if !ACTIVE.swap(false, Ordering::AcqRel) {
        return;
    }
    NATIVE.store(false, Ordering::Release);
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    let mut g = DrainGuard::lock();
    g.drainer().drain(u64::MAX);
    let fd = FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        let mut buf = Vec::new();
        encode_unthreaded(&Record::Stop, &mut buf);
        write_all(fd, &buf);
        // SAFETY: closing the fd we own; the parent sees EOF.
        unsafe { libc::close(fd) };
    }
}

extern "C" fn after_fork_in_child() {
    // A forked child (multiprocessing, subprocess before exec) must not write into
    // the parent's pipe, nor keep it open (the parent waits for EOF).
    // Only the forking thread lives on in the child: no drain thread, no lock holder.
    ACTIVE.store(false, Ordering::Relaxed);
    NATIVE.store(false, Ordering::Relaxed);
    DRAIN_STARTED.store(false, Ordering::Relaxed);
    DRAIN_THREAD.store(0, Ordering::Relaxed);
    DRAIN_LOCK.store(false, Ordering::Relaxed);
    crate::reservations::after_fork_in_child();
    crate::sampled_set::after_fork_in_child();
    let fd = FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: closing our copy of the pipe in the child.
        unsafe { libc::close(fd) };
    }
}

/// Thread index used for records that belong to no thread (Hello, Stop).
pub const NO_THREAD: u32 = u32::MAX;
