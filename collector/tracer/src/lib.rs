//! `libmemlens_tracer.so`: the in-process half of memlens.
//!
//! The parent (`memlens run`) starts Python with this library in `LD_PRELOAD`, so its
//! exported `malloc`/`free`/`mmap`/... sit in front of libc's for the whole process.
//! They only forward until the bootstrap Python code opens the same (already loaded)
//! library as the extension module `memlens._tracer` ([`pymodule`]) and calls
//! [`memlens_start`], which
//! - resolves the CPython API with `dlsym` ([`python_api`]; the library has no
//!   undefined Python symbols, so non-Python programs that inherit `LD_PRELOAD` still
//!   load it),
//! - wraps CPython's raw/mem/object allocators ([`pymem_hooks`]),
//! - keeps a shadow stack per thread from the interpreter's frame-evaluation hook, or a
//!   C profile function where the hook's frame layout does not check out ([`profiler`],
//!   [`thread_state`]),
//! - on 3.13, charges objects re-created from free lists to the code that re-created
//!   them ([`ref_tracer`]),
//! - starts the drain thread that merges the per-thread rings ([`ring`]) in order and
//!   writes raw `memlens_wire` records to the pipe given by the parent ([`drain`],
//!   opened by [`session`]).
//!
//! Design constraints: this crate is the only place in memlens with `unsafe` code,
//! and every `unsafe` block says why it is sound. Hooks do almost nothing: a
//! re-entrancy guard ([`guard`]), then an append to the thread's own ring; no lock
//! is shared between threads on the hot path. The crate's own heap use goes
//! straight to libc ([`real::RealAllocator`]) so it never records itself.
//!
//! Threads created from C that never run Python code have no shadow stack: their
//! allocations are attributed to the empty stack.
//!
//! Example (what the bootstrap does):
//! ```text
//! lib = memlens._load(os.environ["MEMLENS_TRACER"])   # memlens._tracer
//! lib.memlens_start(fd, 1)      # 1 = native hooks on
//! ...
//! lib.memlens_stop()            # atexit
//! ```

// The modules, by layer (each imports only from its own layer's lower modules and the
// layers below; this file, the C API, sits on top, with `pymodule`, the same as a Python
// module, and `census`, the census's per-object work):
// - the session layer: `session` (start, hooks installed, the fork handler);
// - the hooks: `got` (installs `native_hooks` by patching), `native_hooks`, `pymem_hooks`,
//   `ref_tracer`, `profiler` (the stack-keeping hooks), `process_end`, `exec_hooks`;
// - the emit layer: `emit` (the records hooks write), `stacks` (code ids, seeding and
//   walking), `thread_state` (per-thread state and ring), `drain` (the pipe, the drain
//   thread and `stop`), `reservations`, `recording` (the switches the hooks read);
// - the foundations: `guard` (thread-locals, re-entrancy), `fds` (the tracer's own
//   descriptors), `ring`, `sampling`, `sampled_set`, `native_stack`, `python_api`,
//   `c_stack`, `clock`, `real`; and beside the layers, `follow` and `inject`.
mod c_stack;
mod census;
mod clock;
mod drain;
mod emit;
mod exec_hooks;
mod fds;
mod follow;
mod got;
mod guard;
mod inject;
mod native_hooks;
mod native_stack;
mod process_end;
mod profiler;
mod pymem_hooks;
mod pymodule;
mod python_api;
mod real;
mod recording;
mod ref_tracer;
mod reservations;
mod ring;
mod sampled_set;
mod sampling;
mod session;
mod stacks;
mod thread_state;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};

use memlens_wire::{CensusCache, Record};

#[global_allocator]
static ALLOC: real::RealAllocator = real::RealAllocator;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn c_bytes<'a>(p: *const c_char) -> &'a [u8] {
    if p.is_null() {
        b""
    } else {
        // SAFETY: per the function contract.
        unsafe { CStr::from_ptr(p) }.to_bytes()
    }
}

fn start_result(r: Result<session::Started, String>) -> c_int {
    let (rc, msg) = match r {
        Ok(session::Started::Traced(None)) => return 0,
        Ok(session::Started::NativeOnly(why)) => (1, why),
        Ok(session::Started::Traced(Some(note))) => (2, note),
        Err(msg) => (-1, msg),
    };
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(msg).unwrap_or_default());
    rc
}

/// Starts tracing at the start of the program (`memlens run`), writing raw records to
/// `fd`. Returns 0 on success; 1 when this Python cannot be traced and only native
/// allocations are recorded; 2 when it is traced, the slow way (see
/// [`python_api::PyApi::hook_refused`]); -1 on failure. For 1, 2 and -1,
/// [`memlens_last_error`] says why.
/// Call with the GIL held (as `memlens._tracer` does).
#[no_mangle]
pub extern "C" fn memlens_start(fd: c_int, native: c_int) -> c_int {
    // The bootstrap of `memlens run` has just set `MEMLENS_FOLLOW`. (Not in
    // `memlens_start_in`: a `memlens.record()` block follows children only until it ends.)
    exec_hooks::keep_follow_vars();
    start_result(session::start(fd, native != 0, std::ptr::null_mut(), b"MainThread"))
}

/// The next session ([`memlens_start`], [`memlens_start_in`]) samples allocations, one
/// every `bytes` bytes on average (`memlens run --sample`, `memlens.record(sample=...)`);
/// 0: every allocation is recorded. Only that session: the one after it is exact unless
/// this is called again.
#[no_mangle]
pub extern "C" fn memlens_set_sample(bytes: u64) {
    sampling::set_next(bytes);
}

/// Whether the next session records the native stack of each allocation (`memlens run
/// --native-stacks`): 1 yes, 0 no. Call before [`memlens_start`].
#[no_mangle]
pub extern "C" fn memlens_set_native_stacks(on: c_int) {
    native_stack::set_next(on != 0);
}

/// Starts tracing in the middle of a program (`memlens.record()`): like
/// [`memlens_start`], with the calling thread's stack seeded from `frame` and its
/// callers and the thread named `name`. Can follow an earlier [`memlens_stop`].
///
/// # Safety
/// `frame` is a live frame object of the calling thread; `name` is null or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memlens_start_in(
    fd: c_int,
    native: c_int,
    frame: *mut std::ffi::c_void,
    name: *const c_char,
) -> c_int {
    // SAFETY: per the function contract.
    let name = unsafe { c_bytes(name) };
    start_result(session::start(fd, native != 0, frame, name))
}

/// The Python name of a thread that was already running when tracing started, by its
/// OS thread id (`threading.Thread.native_id`): the thread adopts it when it first runs
/// Python code under the profiler.
///
/// # Safety
/// `name` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memlens_name_thread(os_tid: u64, name: *const c_char) {
    // SAFETY: per the function contract.
    stacks::name_thread(os_tid, unsafe { c_bytes(name) });
}

/// `memlens run` only: `fd` is the control socket on which the process tells the recorder
/// how it ends (see [`process_end`]). Call once, before the program runs. Returns 0 on
/// success; otherwise [`memlens_last_error`] says why.
#[no_mangle]
pub extern "C" fn memlens_watch_end(fd: c_int) -> c_int {
    start_result(process_end::install(fd, true).map(|()| session::Started::Traced(None)))
}

/// Takes the profiler off the calling thread after [`memlens_stop`] (the end of a
/// `memlens.record()` block). GIL held.
#[no_mangle]
pub extern "C" fn memlens_release_thread() {
    if !recording::active() && python_api::ready() {
        profiler::uninstall_from_current_thread();
        ref_tracer::uninstall();
    }
}

/// The reason the last [`memlens_start`] on this thread failed or recorded native
/// allocations only.
#[no_mangle]
pub extern "C" fn memlens_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// `memlens run` with an interpreter it cannot trace (another version, a debug or
/// free-threaded build, Python 2) runs the program itself, not the bootstrap, with
/// `MEMLENS_NATIVE_FD` naming its pipe (with native allocations asked for) and
/// `MEMLENS_CTRL_FD` its control socket: native allocations are then recorded from before
/// `main` to exit, without Python stacks, and the process's exit is reported (see
/// [`process_end`]). Only in a Python process run without the bootstrap (no `MEMLENS_FD`):
/// a wrapper (pyenv's shims are shell scripts) leaves the variables and the descriptors to
/// the interpreter it runs. The variables are then removed, so that programs the traced one
/// runs do not write into the pipe.
#[used]
#[link_section = ".init_array"]
static START_AT_LOAD: extern "C" fn() = start_at_load;

extern "C" fn start_at_load() {
    exec_hooks::init();
    // SAFETY: constructors run before `main`, on one thread: nothing else reads or
    // changes the environment meanwhile (take_fd_var's contract).
    let (fd, ctrl) = unsafe {
        // The program memlens runs (the bootstrap starts its tracing): nothing to do here.
        if !libc::getenv(c"MEMLENS_FD".as_ptr()).is_null() {
            return;
        }
        // The program a traced process exec'd in its place: it reports the process's end.
        let execed = process_end::adopt_from_exec();
        // Its own connection, when it is announced below, is told too.
        let also = |ctrl: Option<c_int>| {
            if let Some(ctrl) = ctrl.filter(|_| execed) {
                let _ = process_end::install(ctrl, false);
            }
        };
        if libc::dlsym(libc::RTLD_DEFAULT, c"Py_GetVersion".as_ptr()).is_null() {
            // Not Python: a program a followed tree runs gets its memory sampled.
            also(follow::announce_native_child());
            return;
        }
        // A Python of a followed tree that will not run memlens's start-up: the same.
        if let Some(ctrl) = follow::announce_python_without_site() {
            also(ctrl);
            return;
        }
        follow::keep_package_on_path();
        (take_fd_var(c"MEMLENS_NATIVE_FD"), take_fd_var(c"MEMLENS_CTRL_FD"))
    };
    if let Some(ctrl) = ctrl {
        let _ = process_end::install(ctrl, false);
    }
    if let Some(fd) = fd {
        // SAFETY: as above.
        if let Some(bytes) = unsafe { take_number_var(c"MEMLENS_SAMPLE_BYTES") } {
            sampling::set_next(bytes);
        }
        // A failure (no x86-64 Linux) leaves the program running untraced.
        let _ = session::start_at_load(fd);
    }
}

/// The file descriptor in environment variable `name`, which is removed.
///
/// # Safety
/// Nothing else reads or changes the environment meanwhile (a constructor, before `main`).
unsafe fn take_fd_var(name: &CStr) -> Option<c_int> {
    // SAFETY: per the function contract.
    unsafe { take_number_var(name) }
}

/// The number in environment variable `name`, which is removed.
///
/// # Safety
/// As [`take_fd_var`].
unsafe fn take_number_var<T: std::str::FromStr>(name: &CStr) -> Option<T> {
    // SAFETY: per the function contract; the string is parsed before it is removed.
    unsafe {
        let v = libc::getenv(name.as_ptr());
        if v.is_null() {
            return None;
        }
        let n = CStr::from_ptr(v).to_str().ok().and_then(|s| s.parse::<T>().ok());
        libc::unsetenv(name.as_ptr());
        n
    }
}

/// `memlens attach`: runs `code` (Python source) on a new thread that takes the GIL like any
/// other (see [`inject`]); gdb calls it. Returns 0 when the thread started, -1 when this is
/// not a Python process or no thread could be started.
///
/// # Safety
/// `code` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memlens_inject(code: *const c_char) -> c_int {
    // SAFETY: per the function contract.
    let code = unsafe { c_bytes(code) };
    if inject::run_on_new_thread(code) {
        0
    } else {
        -1
    }
}

/// `memlens attach`, after [`memlens_stop`]: takes every hook out of the process (the
/// GOT entries, the Python allocators, the frame-evaluation hook, the reference tracer) and
/// ends the drain thread, leaving the library loaded and inert. Returns 0, or 1 when a hook had to stay: one that
/// another tool wrapped after memlens (it forwards, as while tracing is off), or all of
/// them while tracing is still on. GIL held.
#[no_mangle]
pub extern "C" fn memlens_unhook() -> c_int {
    if recording::active() {
        return 1;
    }
    if !python_api::ready() {
        return 0;
    }
    let _g = guard::Guard::enter(guard::Ctx::Tracer);
    got::uninstall();
    ref_tracer::uninstall();
    let api = python_api::api();
    let mem = pymem_hooks::uninstall(api);
    let eval = profiler::remove_eval_hook();
    drain::retire_drain_thread();
    c_int::from(!(mem && eval))
}

/// Stops tracing and flushes everything to the parent. Idempotent.
#[no_mangle]
pub extern "C" fn memlens_stop() {
    drain::stop();
}

/// Installs the profiler on the calling thread (from `threading.setprofile`'s hook),
/// seeding its shadow stack from `frame` and its callers. GIL held.
///
/// # Safety
/// `frame` is a live frame object of the calling thread or null; `name` is null or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memlens_thread_start(frame: *mut std::ffi::c_void, name: *const c_char) {
    if recording::active() && python_api::ready() {
        // SAFETY: per the function contract.
        let name = unsafe { c_bytes(name) };
        profiler::adopt_new_thread(frame, name);
    }
}

/// `memlens.mark(label)`.
///
/// # Safety
/// `label` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memlens_mark(label: *const c_char) {
    // SAFETY: per the function contract.
    let label = unsafe { c_bytes(label) };
    emit::record(&Record::Marker { label });
}

/// `with memlens.span(name):` begins (`begin` non-zero) or ends on this thread.
///
/// # Safety
/// `name` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memlens_span(begin: c_int, name: *const c_char) {
    // SAFETY: per the function contract.
    let name = unsafe { c_bytes(name) };
    emit::record(&Record::Span { begin: begin != 0, name });
}

/// One finished garbage collection (from a `gc.callbacks` entry).
#[no_mangle]
pub extern "C" fn memlens_gc(
    generation: c_int,
    duration_ns: u64,
    collected: u64,
    uncollectable: u64,
) {
    emit::record(&Record::Gc {
        generation: generation.clamp(0, 255) as u8,
        duration_ns,
        collected,
        uncollectable,
    });
}

/// How this process keeps Python stacks: 0 the frame-evaluation hook, 1 the profile
/// function, 2 frame walking; -1 before tracing first started.
#[no_mangle]
pub extern "C" fn memlens_stack_mode() -> c_int {
    stacks::mode_code()
}

/// A greenlet switch (or throw) just happened on the calling thread, which now runs the
/// greenlet switched to: its shadow stack is built again from its frames, leaving out the
/// `skip` innermost (those of the Python function that calls this, if any). For
/// `greenlet.settrace`, whose trace function runs after the switch, in the greenlet
/// switched to. Nothing while tracing is off: the next session builds every stack afresh
/// ([`memlens_forget_stacks`]). GIL held.
#[no_mangle]
pub extern "C" fn memlens_stack_switched(skip: c_int) {
    if !recording::active() || !python_api::ready() {
        return;
    }
    let g = guard::Guard::enter(guard::Ctx::Tracer);
    if g.outermost() {
        thread_state::with_state_in(g.tls(), |st| stacks::switched(st, skip.max(0) as usize));
    }
}

/// Every thread's shadow stack is out of date (greenlets switched unseen): each is built
/// again from its frames at its next use.
#[no_mangle]
pub extern "C" fn memlens_forget_stacks() {
    thread_state::invalidate_stacks();
}

/// 1 while tracing is on.
#[no_mangle]
pub extern "C" fn memlens_active() -> c_int {
    recording::active() as c_int
}

/// Pauses (`paused != 0`) or resumes recording of the calling thread's allocations and
/// frees; pauses nest (each resume ends one pause). The census pauses itself so its
/// temporary lists do not show up as the program's memory. GIL held (as `memlens._tracer` does).
#[no_mangle]
pub extern "C" fn memlens_pause(paused: c_int) {
    emit::pause_thread(paused != 0);
}

/// An object census starts on this thread (`trigger`: the number of a
/// `memlens_format::CensusTrigger`, from Python's `_census.TRIGGERS`), looking at one
/// object in `sample_every`.
///
/// # Safety
/// `label` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memlens_census_begin(
    trigger: c_int,
    label: *const c_char,
    sample_every: u32,
) {
    // SAFETY: per the function contract.
    let label = unsafe { c_bytes(label) };
    let trigger = trigger.clamp(0, 255) as u8;
    emit::record(&Record::CensusBegin { trigger, label, sample_every: sample_every.max(1) });
}

/// A live `functools.lru_cache` wrapper; `maxsize < 0` means unbounded.
///
/// # Safety
/// `module` and `qualname` are null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memlens_census_cache(
    currsize: u64,
    maxsize: i64,
    hits: u64,
    misses: u64,
    bytes: u64,
    module: *const c_char,
    qualname: *const c_char,
) {
    // SAFETY: per the function contract.
    let (module, qualname) = unsafe { (c_bytes(module), c_bytes(qualname)) };
    let maxsize = u64::try_from(maxsize).ok();
    emit::record(&Record::CensusCache(CensusCache {
        currsize,
        maxsize,
        hits,
        misses,
        bytes,
        module,
        qualname,
    }));
}

/// The census on this thread is complete.
#[no_mangle]
pub extern "C" fn memlens_census_end(objects: u64, duration_ns: u64, recursion_limit: u32) {
    emit::record(&Record::CensusEnd { objects, duration_ns, recursion_limit });
}
