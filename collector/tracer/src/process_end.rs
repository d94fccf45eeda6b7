//! Telling `memlens run`'s recorder how the process ends ([`memlens_wire::EndReport`]).
//!
//! Layer: the hooks layer (the exit handlers, the `kill` wrapper); an exit ends the session
//! with [`crate::drain::stop`]. The C API installs it.
//!
//! `memlens run` execs the interpreter in its own process, so the program keeps the PID
//! the user started and gets every signal sent to it exactly once, as without memlens;
//! the recorder is a helper process beside it, not its parent, and cannot `wait` for its
//! exit status. So the process says it itself. [`install`] (called by the bootstrap
//! before the program runs) takes the control socket and:
//! - registers an `on_exit` handler: every `exit()` (a return from `main`, `sys.exit`
//!   through `Py_Exit`, C code calling `exit`) reports its status, and the `_exit`/`_Exit`
//!   hooks ([`crate::native_hooks`]) report theirs;
//! - installs a handler for each signal whose default action ends the process and which
//!   still has that action (SIGTERM, SIGHUP, SIGSEGV, SIGABRT, ...): it reports the signal,
//!   waits for the recorder, and raises the signal again with the default action back in
//!   place (`SA_RESETHAND`), so the process dies of it exactly as it would have (same wait
//!   status, core dump included). The interpreter's own table is not touched: a program
//!   that sets a handler replaces ours, and `signal.getsignal` still says `SIG_DFL`;
//! - the exported [`kill`] reports the process killing itself with SIGKILL, or with a
//!   signal whose default fatal action is in place (the bootstrap ending the process with
//!   SIGINT after an uncaught `KeyboardInterrupt`, as the interpreter does).
//!
//! A SIGKILL from outside (the OOM killer, `kill -9`) cannot be seen from inside: the
//! recorder then reads the exit status from /proc while the process is a zombie, or says
//! that it does not know.
//!
//! After reporting, the process waits (at most [`ACK_WAIT_MS`]) until the recorder closes
//! its end of the socket, which it does once the recording is complete on disk, so
//! whoever waited for the program (a shell, `timeout`, a CI step) finds a finished file.
//!
//! What a signal handler reaches here is async-signal-safe: atomics, `getpid`, `send`,
//! `poll`, `sigaction`, `raise`.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use memlens_wire::EndReport;

use crate::fds::{self, CTRL as CTRL_FD};

/// The traced process: forked children inherit the handlers and must not report.
static PID: AtomicI32 = AtomicI32::new(0);
static REPORTED: AtomicBool = AtomicBool::new(false);

/// How long a process that reported its end waits for the recorder to finish the file.
/// The recorder only has to write what it already received, the trailer, and fsync.
const ACK_WAIT_MS: c_int = 30_000;

/// Signals whose default action terminates the process or dumps core (signal(7)), except
/// SIGKILL (no handler possible) and SIGTRAP (debuggers). Those the interpreter handles
/// (SIGINT) or ignores (SIGPIPE, SIGXFSZ) keep what it set: only signals still at their
/// default action get the handler.
const FATAL: [c_int; 19] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGILL,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGUSR1,
    libc::SIGSEGV,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGSTKFLT,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGSYS,
];

extern "C" {
    /// glibc's `on_exit`: like `atexit`, with the exit status.
    fn on_exit(f: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
}

/// Takes the control socket `fd` (see the module doc). Once per process. Without `signals`
/// (an interpreter memlens cannot trace, from the tracer's constructor: before the
/// interpreter looks at which signals have their default action, which a handler of ours
/// would change, SIGINT's KeyboardInterrupt included) only exits are reported; a death by
/// a signal is then read from /proc by the recorder.
pub fn install(fd: c_int, signals: bool) -> Result<(), String> {
    if fd < 0 {
        return Err("no control socket".into());
    }
    if CTRL_FD.load(Ordering::Acquire) >= 0 {
        return Ok(());
    }
    // SAFETY: plain libc calls; `on_exit` gets a function with the signature it calls.
    unsafe {
        // Ours alone: programs the traced one starts must not hold it open.
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        PID.store(libc::getpid(), Ordering::Relaxed);
        CTRL_FD.store(fd, Ordering::Release);
        if on_exit(at_exit, std::ptr::null_mut()) != 0 {
            return Err("on_exit failed".into());
        }
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    }
    for sig in FATAL.into_iter().filter(|_| signals) {
        if action_is_default(sig) {
            // SAFETY: a zeroed sigaction is valid; the handler has the signature a
            // handler without SA_SIGINFO is called with.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_fatal_signal as extern "C" fn(c_int) as usize;
                sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    }
    Ok(())
}

/// True when `sig`'s action is the default one.
fn action_is_default(sig: c_int) -> bool {
    // SAFETY: querying the action into a zeroed struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_DFL
    }
}

/// Sends `end` once (from the traced process only), then waits until the recorder closed
/// its end of the socket. Async-signal-safe.
fn report(end: EndReport) {
    let fd = CTRL_FD.load(Ordering::Acquire);
    // SAFETY: getpid has no preconditions.
    if fd < 0 || unsafe { libc::getpid() } != PID.load(Ordering::Relaxed) {
        return;
    }
    if REPORTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let msg = end.encode();
    // SAFETY: sending a stack buffer on our socket (MSG_NOSIGNAL: a recorder that is gone
    // gives EPIPE, not SIGPIPE), then polling it.
    unsafe {
        if libc::send(fd, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL) < 0 {
            return;
        }
        // The recorder never writes back: it closes its end when the file is complete,
        // which wakes the poll with POLLHUP.
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        while libc::poll(&mut p, 1, ACK_WAIT_MS) < 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

/// The process is exiting with `status` (`_exit`, `_Exit`, `exit`), tracing already
/// stopped.
pub fn exiting(status: c_int) {
    // What `wait` will report: the low 8 bits.
    report(EndReport::Exited(status & 0xff));
}

extern "C" fn at_exit(status: c_int, _: *mut c_void) {
    // The interpreter stops tracing in its atexit hook; C code calling exit() does not.
    crate::drain::stop();
    exiting(status);
}

extern "C" fn on_fatal_signal(sig: c_int) {
    report(EndReport::Signaled(sig));
    // SA_RESETHAND put the default action back: raising the signal again kills the process
    // with it, now or as soon as this handler returns (if the kernel blocks it meanwhile).
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(sig) };
}

/// Whether `kill(pid, sig)` from this process ends it.
fn kills_this_process(pid: libc::pid_t, sig: c_int) -> bool {
    // SAFETY: getpid and getpgrp have no preconditions.
    let (me, group) = unsafe { (libc::getpid(), libc::getpgrp()) };
    let hits_me = pid == me || pid == 0 || pid == -group;
    hits_me && (sig == libc::SIGKILL || (FATAL.contains(&sig) && action_is_default(sig)))
}

/// `kill`, exported in front of libc's: reports the process killing itself (see the
/// module doc), then does what libc's does.
///
/// # Safety
/// None beyond `kill(2)`'s.
#[no_mangle]
pub unsafe extern "C" fn kill(pid: libc::pid_t, sig: c_int) -> c_int {
    if CTRL_FD.load(Ordering::Relaxed) >= 0 && kills_this_process(pid, sig) {
        report(EndReport::Signaled(sig));
    }
    // SAFETY: the system call libc's `kill` makes; it sets errno the same way.
    unsafe { libc::syscall(libc::SYS_kill, pid, sig) as c_int }
}

/// A forked child closes its copy of the socket: the recorder learns that the traced
/// process is gone when the last copy closes.
extern "C" fn after_fork_in_child() {
    fds::close_own(CTRL_FD.swap(-1, Ordering::Relaxed));
}
