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
//!   still has that action (SIGTERM, SIGHUP, SIGSEGV, SIGABRT, ...): it asks the drain
//!   thread to end the session (every record sent, then goodbye; a record the interrupted
//!   thread was writing is dropped, and a tracer lock it held is done without, since that
//!   thread runs no further: [`crate::guard::stop_for_good`]), reports the signal,
//!   waits for the recorder, and raises the signal again with the default action back in
//!   place (`SA_RESETHAND`), so the process dies of it exactly as it would have (same wait
//!   status, core dump included). A signal that interrupts a thread itself ending the
//!   session (an exit racing the signal) is held until that is done, then kills the
//!   process the same way. The interpreter's own table is not touched: a program
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
//! A process that replaces itself (`execve` and friends, [`crate::exec_hooks`]) is not
//! ending: [`before_exec`] sends everything recorded so far down the pipe, announces the
//! exec with the new command line, and leaves the control socket open across it, its number
//! in [`ENV_EXEC_CTRL`]. The new program's tracer takes it from its constructor
//! ([`adopt_from_exec`]) and reports the process's end on it, as this one would have, so that
//! the recorder learns the final exit status and whoever waits for the process still finds
//! a finished file. A Python that is followed connects to the recorder too (as a process of
//! the recording of its own, collector/python/memlens/_follow.py): [`install`] then keeps
//! that connection as a second one to tell ([`ALSO_FD`]). If the exec fails, [`exec_failed`]
//! says so and everything goes on as before.
//!
//! What a signal handler or a forked child's exec reaches here is async-signal-safe:
//! atomics, `getpid`, `send`, `poll`, `fcntl`, `sigaction`, `raise`. [`before_exec`]'s
//! flush, in the traced process itself only (never in a forked child), takes the drain's
//! lock and allocates: an exec from a signal handler that interrupted the tracer's own
//! drain or libc's `malloc` on the same thread could wait forever there.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use memlens_wire::handshake::ENV_EXEC_CTRL;
use memlens_wire::{encode_exec, EndReport, EXEC_REPORT_MAX};

use crate::fds::{self, CTRL as CTRL_FD, HIGH_FD};

/// The traced process: forked children inherit the handlers and must not report.
static PID: AtomicI32 = AtomicI32::new(0);
static REPORTED: AtomicBool = AtomicBool::new(false);
/// A second connection told of the end, without its own handlers: a program run by an exec
/// in a traced process has the control socket it inherited ([`CTRL_FD`]) and, when it is a
/// followed Python or a program that is not Python, its own connection to the recorder,
/// whose process stream ends on it. -1: none.
static ALSO_FD: AtomicI32 = AtomicI32::new(-1);
/// [`CTRL_FD`] came across an exec ([`adopt_from_exec`]): the next [`install`] is the new
/// program's own connection, kept as [`ALSO_FD`].
static ADOPTED: AtomicBool = AtomicBool::new(false);
/// The fatal signals' handlers are installed.
static SIGNALS: AtomicBool = AtomicBool::new(false);
/// A fatal signal that came while its thread was ending the session, which the process dies
/// of once that is done ([`die_of_held_signal`]); 0 if none.
static HELD: AtomicI32 = AtomicI32::new(0);

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
        // The program an exec ran, which took the control socket at load: this is its own
        // connection to the recorder (a followed Python's).
        if ADOPTED.load(Ordering::Acquire) && fd != CTRL_FD.load(Ordering::Acquire) {
            // SAFETY: fcntl on a descriptor number.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            ALSO_FD.store(fd, Ordering::Release);
            install_signals(signals);
        }
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
    install_signals(signals);
    Ok(())
}

/// The handlers of the fatal signals still at their default action (see the module doc),
/// once, if `signals`.
fn install_signals(signals: bool) {
    if !signals || SIGNALS.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::drain::after_finish(die_of_held_signal);
    for sig in FATAL {
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
}

/// From the tracer's constructor, in the program an exec ran in a traced process: takes the
/// control socket the process left open for it ([`ENV_EXEC_CTRL`], which is removed, so
/// that the programs this one starts do not see it), if it is this process's, and reports
/// the process's end on it from here on (exits only: this runs before an interpreter sets up
/// its signals; a followed Python's [`install`] adds the signals). Returns whether it did.
///
/// # Safety
/// Called from the library's constructor, before `main`, on one thread.
pub unsafe fn adopt_from_exec() -> bool {
    let mut name = [0u8; 32];
    name[..ENV_EXEC_CTRL.len()].copy_from_slice(ENV_EXEC_CTRL.as_bytes());
    // SAFETY: a NUL-terminated name; per the function contract nothing else uses the
    // environment meanwhile.
    let value = unsafe { libc::getenv(name.as_ptr().cast()) };
    if value.is_null() {
        return false;
    }
    // SAFETY: getenv returned a NUL-terminated string, read before it is removed.
    let parsed = parse_exec_ctrl(unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes());
    // SAFETY: as above.
    unsafe { libc::unsetenv(name.as_ptr().cast()) };
    // SAFETY: getpid has no preconditions.
    let Some((fd, _)) = parsed.filter(|&(_, pid)| pid == unsafe { libc::getpid() }) else {
        return false;
    };
    if !is_packet_socket(fd) {
        return false;
    }
    // Out of the way of the program's own descriptors, and ours alone again.
    // SAFETY: fcntl on the descriptor the exec left us.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD) };
    let fd = if high >= 0 {
        fds::close_own(fd);
        high
    } else {
        fd
    };
    if install(fd, false).is_err() {
        return false;
    }
    ADOPTED.store(true, Ordering::Release);
    true
}

/// `FD:PID` of [`ENV_EXEC_CTRL`].
fn parse_exec_ctrl(value: &[u8]) -> Option<(c_int, libc::pid_t)> {
    let colon = value.iter().position(|&b| b == b':')?;
    let number = |digits: &[u8]| -> Option<i32> {
        if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + i32::from(d - b'0')))
    };
    Some((number(&value[..colon])?, number(&value[colon + 1..])?))
}

/// Whether `fd` is an open packet socket (a control socket, not a number the program reused).
fn is_packet_socket(fd: c_int) -> bool {
    let mut kind: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a c_int of the given length.
    let rc = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&raw mut kind).cast(), &mut len)
    };
    rc == 0 && kind == libc::SOCK_SEQPACKET
}

/// The control socket, if this is the process that reports on it (not a forked child, nor
/// a `vfork`ed one, which shares our memory but has a pid of its own) and it has not
/// reported its end yet. Async-signal-safe.
pub fn own_ctrl() -> Option<c_int> {
    let fd = CTRL_FD.load(Ordering::Acquire);
    // SAFETY: getpid has no preconditions (glibc does not cache it: right in a vfork child).
    let ours = fd >= 0 && unsafe { libc::getpid() } == PID.load(Ordering::Relaxed);
    (ours && !REPORTED.load(Ordering::Acquire)).then_some(fd)
}

/// Sends `msg` on the second connection, if any, then on the control socket.
fn tell(ctrl: c_int, msg: &[u8]) -> bool {
    let also = ALSO_FD.load(Ordering::Acquire);
    // SAFETY: sending a buffer on our sockets (MSG_NOSIGNAL: a recorder that is gone gives
    // EPIPE, not SIGPIPE).
    unsafe {
        if also >= 0 {
            libc::send(also, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL);
        }
        libc::send(ctrl, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL) >= 0
    }
}

/// Before an exec of `args` in this process: if it is traced (see the module doc), sends what
/// was recorded so far, announces the exec and lets the control socket through it; returns
/// the socket's number, for [`ENV_EXEC_CTRL`] and [`exec_failed`]. Nothing (and no lock, no
/// allocation) in any other process, such as a forked child about to exec.
///
/// # Safety
/// `args` yields valid argument strings.
pub unsafe fn before_exec<'a>(args: impl Iterator<Item = &'a [u8]>) -> Option<c_int> {
    let fd = own_ctrl()?;
    crate::drain::flush();
    let mut msg = [0u8; EXEC_REPORT_MAX];
    let len = encode_exec(args, &mut msg);
    tell(fd, &msg[..len]);
    // SAFETY: fcntl on our descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    Some(fd)
}

/// The exec announced by [`before_exec`] on `fd` returned: the process goes on, traced as
/// it was.
pub fn exec_failed(fd: c_int) {
    // SAFETY: fcntl on our descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    tell(fd, &EndReport::ExecFailed.encode());
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
    let Some(fd) = own_ctrl() else { return };
    if REPORTED.swap(true, Ordering::AcqRel) {
        return;
    }
    if !tell(fd, &end.encode()) {
        return;
    }
    // The recorder never writes back: it closes its end when the file is complete (and a
    // process stream's, when that stream is), which wakes the poll with POLLHUP.
    let also = ALSO_FD.load(Ordering::Acquire);
    let mut p = [
        libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: also, events: libc::POLLIN, revents: 0 },
    ];
    while p.iter().any(|p| p.fd >= 0) {
        // SAFETY: polling pollfds on the stack (negative ones are ignored).
        let n = unsafe { libc::poll(p.as_mut_ptr(), 2, ACK_WAIT_MS) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n == 0 {
            say_gave_up_waiting();
        }
        if n <= 0 {
            return;
        }
        for p in p.iter_mut().filter(|p| p.revents != 0) {
            p.fd = -1;
        }
    }
}

/// Says on stderr that the recorder did not finish this process's recording in
/// [`ACK_WAIT_MS`]: the process ends without it (a recorder that is stuck, or stopped). Said
/// so that such a wait is not taken for the program's own. Async-signal-safe.
fn say_gave_up_waiting() {
    use memlens_wire::handshake::write_decimal;
    const HEAD: &[u8] = b"memlens: process ";
    const MIDDLE: &[u8] = b" ended without its recording being confirmed in ";
    const TAIL: &[u8] = b" s (the recorder is stuck or stopped); its recording may lack its end\n";
    let mut msg = [0u8; HEAD.len() + 10 + MIDDLE.len() + 10 + TAIL.len()];
    let mut len = 0;
    let mut put = |part: &[u8]| {
        msg[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    };
    put(HEAD);
    let mut digits = [0u8; 10];
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() } as u32;
    let n = write_decimal(pid, &mut digits);
    put(&digits[..n]);
    put(MIDDLE);
    let n = write_decimal((ACK_WAIT_MS / 1000) as u32, &mut digits);
    put(&digits[..n]);
    put(TAIL);
    // SAFETY: writing a buffer on the stack to stderr.
    unsafe { libc::write(2, msg.as_ptr().cast(), len) };
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
    if crate::drain::finishing_here() {
        // Its thread was sending the last records (an `_exit` or `exit` racing the signal,
        // as a terminated pool's workers do): waiting for the recorder here would wait for
        // those. The default action is back: the process dies of it once they are sent.
        HELD.store(sig, Ordering::Release);
        return;
    }
    // This thread runs no more of the code the signal interrupted: a record it was
    // writing, or a lock of the tracer it held, would have the drain wait for it forever
    // (and the recorder for the drain, until it gives up on the records still to come).
    crate::guard::stop_for_good();
    crate::thread_state::drop_record_in_progress();
    crate::drain::ask_stop();
    report(EndReport::Signaled(sig));
    // SA_RESETHAND put the default action back: raising the signal again kills the process
    // with it, now or as soon as this handler returns (if the kernel blocks it meanwhile).
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(sig) };
}

/// After a session ended ([`crate::drain::after_finish`]): the process dies of the fatal
/// signal that came meanwhile, if one did, saying so first as its handler would have.
fn die_of_held_signal() {
    let sig = HELD.swap(0, Ordering::AcqRel);
    if sig != 0 {
        report(EndReport::Signaled(sig));
        // SAFETY: raise is async-signal-safe; the signal's default action is in place.
        unsafe { libc::raise(sig) };
    }
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
        crate::drain::ask_stop();
        report(EndReport::Signaled(sig));
    }
    // SAFETY: the system call libc's `kill` makes; it sets errno the same way.
    unsafe { libc::syscall(libc::SYS_kill, pid, sig) as c_int }
}

/// A forked child closes its copy of the socket: the recorder learns that the traced
/// process is gone when the last copy closes.
extern "C" fn after_fork_in_child() {
    fds::close_own(CTRL_FD.swap(-1, Ordering::Relaxed));
    fds::close_own(ALSO_FD.swap(-1, Ordering::Relaxed));
    ADOPTED.store(false, Ordering::Relaxed);
}
