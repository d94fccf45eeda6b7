//! Tracing sessions: start (installing the hooks, opening the pipe, turning recording on)
//! and the fork handler that ends tracing in a child.
//!
//! Layer: the session layer, on top of the tracer and below only the C API (lib.rs). It
//! installs what the layers below provide: the GOT patches ([`crate::got`]), the Python
//! allocator hooks ([`crate::pymem_hooks`]), the reference tracer ([`crate::ref_tracer`]),
//! the profiler or frame-evaluation hook ([`crate::profiler`]); it opens the pipe of the
//! drain ([`crate::drain`]) and turns recording on ([`crate::recording`]). Stopping needs
//! none of that (the hooks stay, forwarding while recording is off) and is the drain's
//! [`crate::drain::stop`], which the `_exit` hooks and the exit handler call too.
//!
//! Tracing can start again after a stop, into a new pipe (one `memlens.record()` block
//! after another, one recording per test). Each start begins a new *session*: every
//! thread re-introduces itself and re-sends its whole stack before its next record
//! (see [`crate::thread_state`]), and the descriptions of every code object seen so
//! far are sent right after `Hello` (see [`crate::stacks`]), so each recording is
//! complete on its own.

use memlens_wire::{Hello, Record, PROTOCOL};

use crate::drain::{self, DrainGuard};
use crate::guard;
use crate::python_api::{self, PyApi};
use crate::recording::{self, active, encode_unthreaded};
use crate::stacks::{self, StackMode};
use crate::thread_state;

/// How a session started.
pub enum Started {
    /// Python allocations with their stacks, and native ones if asked; with a note for the
    /// user when stacks are kept the slow way.
    Traced(Option<String>),
    /// This Python cannot be traced (the reason, one line): native allocations only.
    NativeOnly(String),
}

/// Starts a session writing to `fd` (which the drain then owns and closes at [`drain::stop`]).
/// The calling thread's shadow stack starts as `frame` and its callers (null: empty).
/// On a Python the tracer does not support (a version outside 3.9-3.15, a debug or
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
    if !stacks::init(api) {
        return Err("cannot reserve a code-object extra slot".into());
    }
    stacks::init_stack_mode(frame);
    open_session(fd, native, Some(api))?;
    crate::profiler::install_on_current_thread(frame, Some(thread_name));
    // Threads already running (a start in mid-program) get the profiler too; without a
    // way to do that on this Python they are traced without their stacks.
    crate::profiler::install_on_all_threads();
    let slow = stacks::mode() == StackMode::Profile && std::env::var_os("MEMLENS_STACKS").is_none();
    Ok(Started::Traced(api.hook_refused().filter(|_| slow)))
}

/// Starts a session of native allocations only, from the library's constructor, before
/// the program's `main` (`memlens run` with an interpreter it cannot trace, see lib.rs);
/// it ends at exit.
pub fn start_at_load(fd: i32) -> Result<(), String> {
    extern "C" fn at_exit() {
        drain::stop();
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
    if recording::session() == 0 {
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
    g.open(fd);
    recording::next_session();
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
        drain::write_all(fd, buf);
        recording::turn_on(native);
    };
    match api {
        Some(api) => {
            crate::pymem_hooks::install(api);
            crate::ref_tracer::install(api);
            stacks::replay_codes(buf, go);
        }
        None => go(&buf),
    }
    drop(g);
    drain::start_thread()
}

/// A forked child (multiprocessing, subprocess before exec) must not write into the
/// parent's pipe, nor keep it open (the parent waits for EOF); of the other threads, gone
/// in the child, none holds a lock or a ring any more.
extern "C" fn after_fork_in_child() {
    recording::cut_off();
    crate::thread_state::after_fork_in_child();
    drain::after_fork_in_child();
    crate::reservations::after_fork_in_child();
    crate::sampled_set::after_fork_in_child();
    crate::native_stack::after_fork_in_child();
}
