//! The pipe to the recorder: the drain thread that empties the rings into it, and the stop
//! that flushes and closes it.
//!
//! Layer: the emit layer's output side. It reads the rings ([`crate::ring`]) and the
//! mappings' residency ([`crate::reservations`]) and knows nothing of the hooks or of how a
//! session starts ([`crate::session`] opens the pipe with [`DrainGuard::open`]), so hooks
//! that must end the session (the `_exit` hooks, the exit handler of
//! [`crate::process_end`]) call [`stop`] directly.
//!
//! The drain thread wakes every [`DRAIN_PERIOD`], advances the rings' logical clock,
//! takes from every ring the stretches numbered below the mark it set at least
//! [`MARGIN`] earlier, and writes them to the pipe by number, each with its thread
//! and time (see [`crate::ring`]). Stopping (atexit, `_exit`, the end of
//! `memlens.record()`) turns recording off and drains everything synchronously, then sends
//! `Stop` and closes the pipe. The drain thread outlives sessions and idles between them.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use memlens_wire::Record;

use crate::clock::{now_ns, TickConverter};
use crate::fds::{self, PIPE as FD};
use crate::guard;
use crate::recording::{self, active, encode_unthreaded};
use crate::ring;

/// How often the drain thread empties the rings: often enough that a SIGKILL loses
/// at most a few ms of records, rarely enough to cost nothing measurable.
const DRAIN_PERIOD: Duration = Duration::from_millis(5);

/// The drain takes the stretches opened before the mark it set this long ago: see
/// ring.rs for why this margin lets producers skip a memory fence.
const MARGIN: Duration = Duration::from_millis(2);

/// A drain pass that moved more than this goes again without sleeping: the rings are
/// filling faster than one pass per period can empty them.
const BUSY_BYTES: usize = 256 * 1024;

/// Held by whoever is draining or switching the pipe (the drain thread, start, stop).
static DRAIN_LOCK: AtomicBool = AtomicBool::new(false);
static DRAIN_STARTED: AtomicBool = AtomicBool::new(false);
/// The drain thread's pthread id, while it runs.
static DRAIN_THREAD: AtomicU64 = AtomicU64::new(0);
/// Asks an idle drain thread to end ([`retire_drain_thread`]).
static DRAIN_RETIRE: AtomicBool = AtomicBool::new(false);

/// Set by [`ask_stop`]: the drain thread stops the session at its next wake.
static STOP_ASKED: AtomicBool = AtomicBool::new(false);

/// The thread (its kernel id) in [`finish`], 0 if none ([`finishing_here`]).
static FINISHING: AtomicI32 = AtomicI32::new(0);

/// Called by [`finish`] once it is done, its locks released ([`after_finish`]).
static AFTER_FINISH: OnceLock<fn()> = OnceLock::new();

/// Between sessions the drain thread only checks, rarely, whether a new one started.
const IDLE_PERIOD: Duration = Duration::from_millis(50);

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
pub struct DrainGuard;

impl DrainGuard {
    pub fn lock() -> DrainGuard {
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

    /// A new session writes to `fd` (which the drain then owns and closes at [`stop`]):
    /// records a thread pushed while the last session was stopping belong to no one, and
    /// the pipe of a session that ended by a write error is closed.
    pub fn open(&mut self, fd: i32) {
        self.drainer().restart();
        // The pipe of a session that ended by a write error, if any.
        fds::close_own(fds::adopt_pipe(fd));
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        DRAIN_LOCK.store(false, Ordering::Release);
    }
}

/// Writes `buf` to `fd` whole. A write error ends recording at once.
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writing an initialized buffer to a file descriptor.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // The parent is gone (EPIPE) or the fd is bad: stop tracing quietly
            // rather than disturbing the traced program.
            recording::cut_off();
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
        if FD.load(Ordering::Relaxed) < 0 {
            return 0;
        }
        self.out.clear();
        self.clock.begin_batch();
        let clock = &mut self.clock;
        let n = self.rings.drain(cut, |t| clock.convert(t), &mut self.out);
        // After the records cut: each mapping's own record is then on its way first.
        self.mappings.scan(cut, cut == u64::MAX, &mut self.out);
        if !self.out.is_empty() {
            let w = fds::Writing::lock();
            let fd = FD.load(Ordering::Acquire);
            if w.still_ours(fd) {
                write_all(fd, &self.out);
            } else {
                // Its number is a file of the program's now (closed behind every hook).
                recording::cut_off();
            }
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
        // (Whether or not recording is on: the thread that turned it off to stop may be
        // the one the signal's handler now holds, waiting for the lock this thread had.)
        if STOP_ASKED.swap(false, Ordering::AcqRel) {
            recording::turn_off();
            finish();
            continue;
        }
        if !active() {
            if DRAIN_RETIRE.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(IDLE_PERIOD);
            continue;
        }
        moved = if moved < BUSY_BYTES {
            std::thread::sleep(DRAIN_PERIOD - MARGIN);
            marked_pass()
        } else {
            pass()
        };
    }
}

/// A pass that takes everything written up to now: the clock is marked, and the pass comes a
/// margin later, so that a record waits at most about a period to go out (what a SIGKILL can
/// lose), not a period plus the time to the next mark. Returns the bytes taken.
fn marked_pass() -> usize {
    DrainGuard::lock().drainer().next_cut();
    std::thread::sleep(MARGIN);
    pass()
}

/// One pass of the drain, while recording: the bytes it took from the rings.
fn pass() -> usize {
    let mut g = DrainGuard::lock();
    let d = g.drainer();
    if active() {
        let cut = d.next_cut();
        d.drain(cut)
    } else {
        0
    }
}

/// Starts the drain thread unless it runs (it outlives sessions).
pub fn start_thread() -> Result<(), String> {
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
    if recording::turn_off() {
        finish();
    }
}

/// Drains every ring, sends `Stop` and closes the pipe, unless done already: the end of a
/// session, recording off.
fn finish() {
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    let me = guard::gettid();
    let outer = FINISHING.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire).is_ok();
    {
        let mut g = DrainGuard::lock();
        g.drainer().drain(u64::MAX);
        let w = fds::Writing::lock();
        let fd = FD.swap(-1, Ordering::AcqRel);
        if fd >= 0 && w.still_ours(fd) {
            let mut buf = Vec::new();
            encode_unthreaded(&Record::Stop, &mut buf);
            write_all(fd, &buf);
            // The parent sees EOF.
            fds::close_own(fd);
        }
    }
    if outer {
        FINISHING.store(0, Ordering::Release);
        if let Some(after) = AFTER_FINISH.get() {
            after();
        }
    }
}

/// Whether the calling thread is ending the session ([`stop`]): a fatal signal's handler
/// that interrupted it cannot wait for the recorder (the records it is sending are what
/// the recorder waits for), and lets it finish first. Async-signal-safe.
pub fn finishing_here() -> bool {
    FINISHING.load(Ordering::Acquire) == guard::gettid()
}

/// Has `f` called whenever a session has ended, by the thread that ended it, once the
/// records are all sent (the process's end watch lets a signal held meanwhile kill it).
pub fn after_finish(f: fn()) {
    let _ = AFTER_FINISH.set(f);
}

/// Asks the drain thread to end the session at its next wake (within a drain period), as
/// [`stop`] does: for a process about to die of a signal, whose handler waits for the
/// recorder meanwhile and cannot stop it itself (stopping takes locks and allocates), even
/// where the thread the signal interrupted was stopping it (`_exit` racing a SIGTERM, as a
/// pool's workers do when the pool is terminated). The recorder then gets every record
/// before it lets the process go. Async-signal-safe.
pub fn ask_stop() {
    STOP_ASKED.store(true, Ordering::Release);
}

/// Sends everything recorded before the call down the pipe, recording on: what the drain
/// thread would send within a period, now (before an exec, which ends this program's
/// part of the recording without an exit; see [`crate::process_end::before_exec`]). Records
/// other threads make meanwhile may be left in the rings. Takes about [`MARGIN`].
pub fn flush() {
    if !active() {
        return;
    }
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    marked_pass();
}

/// In a forked child (a multiprocessing worker, a subprocess before exec): no drain thread
/// (only the forking thread lives on, so no lock holder either), and the parent's pipe
/// closed (the parent waits for EOF).
pub fn after_fork_in_child() {
    DRAIN_STARTED.store(false, Ordering::Relaxed);
    DRAIN_THREAD.store(0, Ordering::Relaxed);
    DRAIN_LOCK.store(false, Ordering::Relaxed);
    // (A thread that was ending the session, or had been asked to, did not come along.)
    FINISHING.store(0, Ordering::Relaxed);
    STOP_ASKED.store(false, Ordering::Relaxed);
    fds::after_fork_in_child();
    // Our copy of the pipe in the child.
    fds::close_own(FD.swap(-1, Ordering::Relaxed));
}
