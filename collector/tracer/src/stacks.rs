//! Shadow stacks from the interpreter's frames: code object ids, the stack mode, and
//! building a thread's stack from its running frames (seeding, frame walking, and again
//! after a greenlet switch, [`switched`]).
//!
//! Layer: the emit layer, between the per-thread state ([`crate::thread_state`]) and the
//! records the hooks write ([`crate::emit`]), which seeds a running thread's stack or walks
//! its frames at an allocation. The hooks that keep the stacks up to date call by call
//! (the profile function, the frame-evaluation hook) are above, in [`crate::profiler`].
//!
//! A code object gets a global id the first time a CALL event sees it; the id is
//! stored on the code object itself with `_PyCode_SetExtra`, so a new code object
//! reusing a freed one's address cannot inherit its id. A `Code` record with the
//! qualified name, file and first line goes out on the same thread before any
//! `Push` that uses the id; other threads can only learn the id later, so the
//! drain's merge by time keeps `Code` first.
//!
//! The descriptions are also kept here ([`CODES`]): a later tracing session starts
//! by sending all of them ([`replay_codes`]), since threads keep their shadow stacks
//! between sessions and any of those frames may be sent again. The profile function
//! stays installed between sessions and keeps the stacks up to date.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicIsize, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use memlens_wire::Record;

use crate::python_api::{api, PyApi, PyObject};
use crate::recording::encode_unthreaded;
use crate::thread_state::ThreadState;

static CODE_EXTRA_INDEX: AtomicIsize = AtomicIsize::new(-1);

/// A code object's description, as its `Code` record says it.
struct CodeInfo {
    first_line: u32,
    qualname: Vec<u8>,
    filename: Vec<u8>,
}

impl CodeInfo {
    fn record(&self, id: u32) -> Record<'_> {
        Record::Code {
            id,
            first_line: self.first_line,
            qualname: &self.qualname,
            filename: &self.filename,
        }
    }
}

/// Every code object seen, by id. Locked on a code object's first sight and at a
/// session's start only (both with the GIL held).
static CODES: Mutex<Vec<CodeInfo>> = Mutex::new(Vec::new());

/// Appends the `Code` records of every code object seen so far to `buf`, then runs
/// `then` on it (which sends it and starts the session) before any new code object can
/// be described: each code id is then either in `buf` or sent through a ring during
/// the session.
pub fn replay_codes(mut buf: Vec<u8>, then: impl FnOnce(&[u8])) {
    let codes = CODES.lock().unwrap_or_else(|e| e.into_inner());
    for (id, c) in codes.iter().enumerate() {
        encode_unthreaded(&c.record(id as u32), &mut buf);
    }
    then(&buf);
}

/// Reserves our slot in code objects' co_extra. Needs the GIL.
pub fn init(api: &PyApi) -> bool {
    if CODE_EXTRA_INDEX.load(Ordering::Relaxed) >= 0 {
        return true;
    }
    // SAFETY: GIL held by the caller (tracing starts from a Python call).
    let idx = unsafe { (api.request_code_extra_index)(None) };
    CODE_EXTRA_INDEX.store(idx, Ordering::Relaxed);
    idx >= 0
}

/// The id of `code`, assigning one (and sending its `Code` record) on first sight.
pub fn code_id(api: &PyApi, st: &mut ThreadState, code: *mut PyObject) -> u32 {
    let idx = CODE_EXTRA_INDEX.load(Ordering::Relaxed);
    let mut extra: *mut c_void = std::ptr::null_mut();
    // SAFETY: GIL held (profile callback); code is a live code object; idx was
    // returned by RequestCodeExtraIndex.
    if unsafe { (api.code_get_extra)(code, idx, &mut extra) } == 0 && !extra.is_null() {
        return (extra as usize - 1) as u32;
    }
    let mut info = CodeInfo { first_line: 0, qualname: Vec::new(), filename: Vec::new() };
    // An exception may be in flight (a frame entered to be thrown into, a RETURN while
    // unwinding): set it aside while we look at the code object.
    let mut exc = [std::ptr::null_mut(); 3];
    // SAFETY: GIL held; Fetch takes the exception's references, Restore gives them back.
    unsafe { (api.err_fetch)(&mut exc[0], &mut exc[1], &mut exc[2]) };
    api.attr_str(code, api.name_attr, &mut info.qualname);
    api.attr_str(code, c"co_filename", &mut info.filename);
    info.first_line = api.attr_int(code, c"co_firstlineno").max(0) as u32;
    // SAFETY: as above.
    unsafe { (api.err_restore)(exc[0], exc[1], exc[2]) };
    let mut codes = CODES.lock().unwrap_or_else(|e| e.into_inner());
    let id = codes.len() as u32;
    st.push(&info.record(id));
    codes.push(info);
    drop(codes);
    // SAFETY: as above; the stored value is an integer, not a pointer to free
    // (we registered no free function).
    unsafe { (api.code_set_extra)(code, idx, (id as usize + 1) as *mut c_void) };
    id
}

/// The id of the code object run by `frame`.
pub fn frame_code_id(api: &PyApi, st: &mut ThreadState, frame: *mut PyObject) -> u32 {
    // SAFETY: frame is a live frame object (GIL held); GetCode returns a new
    // reference, released right after use.
    unsafe {
        let code = (api.frame_get_code)(frame);
        let id = code_id(api, st, code);
        (api.dec_ref)(code);
        id
    }
}

/// How shadow stacks are kept, chosen at the first start ([`init_stack_mode`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum StackMode {
    /// The frame-evaluation hook ([`crate::profiler`]), where this Python has a usable one
    /// (3.9 to 3.15, its frame layout verified at start): one C call per Python call,
    /// and no tracing overhead between calls.
    Eval = 0,
    /// A C profile function on every thread (`MEMLENS_STACKS=profile`, and the versions
    /// without a usable hook).
    Profile = 1,
    /// `MEMLENS_STACKS=walk`: no shadow stacks; the thread's frames are walked at every
    /// allocation. Slower (see bench/stack_modes.py); kept to measure the shadow stack
    /// against it, as the design asks.
    Walk = 2,
}

static MODE: AtomicU8 = AtomicU8::new(u8::MAX);

/// The stack mode (valid once tracing started).
#[inline]
pub fn mode() -> StackMode {
    match MODE.load(Ordering::Relaxed) {
        0 => StackMode::Eval,
        2 => StackMode::Walk,
        _ => StackMode::Profile,
    }
}

/// The frames that were on the starting thread's stack when tracing started without a
/// frame to start from (`memlens run`: the bootstrap's), which its shadow stack starts
/// above: a walk, and a stack built again from the thread's frames (after a greenlet
/// switch), stops at them. Kept alive (a reference each), so that no other frame gets
/// their addresses.
static ROOTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Chooses the stack mode from `MEMLENS_STACKS` at the first start (a hook, once
/// installed, keeps every thread's stack from then on); `frame` is what the starting
/// thread's stack is seeded from (null: nothing). Needs the GIL.
pub fn init_stack_mode(frame: *mut PyObject) {
    let api = api();
    if MODE.load(Ordering::Relaxed) == u8::MAX {
        let wanted = std::env::var_os("MEMLENS_STACKS");
        let mode = match wanted.as_ref().and_then(|v| v.to_str()) {
            Some("walk") => StackMode::Walk,
            Some("profile") => StackMode::Profile,
            _ if api.eval_hook().is_some() => StackMode::Eval,
            _ => StackMode::Profile,
        };
        MODE.store(mode as u8, Ordering::Relaxed);
    }
    let mut roots = ROOTS.lock().unwrap_or_else(|e| e.into_inner());
    for f in roots.drain(..) {
        // SAFETY: GIL held; the references taken below by an earlier start.
        unsafe { (api.dec_ref)(f as *mut PyObject) };
    }
    if frame.is_null() {
        // SAFETY: GIL held; a borrowed frame, then new references from GetBack, which
        // we keep so the addresses stay these frames'.
        unsafe {
            let mut f = (api.eval_get_frame)();
            if !f.is_null() {
                (api.inc_ref)(f);
            }
            while !f.is_null() {
                roots.push(f as usize);
                f = (api.frame_get_back)(f);
            }
        }
    }
}

/// [`StackMode`] as a number, -1 before the first start (for `memlens_stack_mode`).
pub fn mode_code() -> c_int {
    match MODE.load(Ordering::Relaxed) {
        u8::MAX => -1,
        m => c_int::from(m),
    }
}

#[inline]
pub fn walking() -> bool {
    mode() == StackMode::Walk
}

/// Builds the shadow stack of a thread that has run no new frame since tracing started (a
/// loop in one long-running function of a thread that was already running: the
/// frame-evaluation hook sees only frames that start), from its current frame. Called at
/// its first allocation with the GIL held; where stacks are kept by a profile function or
/// walked, those do it.
pub fn seed_running_thread(st: &mut ThreadState) {
    if mode() != StackMode::Eval {
        return;
    }
    seed_from_current(api(), st);
}

/// A greenlet switch, seen from the greenlet switched to (greenlet's trace function runs
/// there): the thread's frames are now that greenlet's, which no hook saw leave or come
/// back, so the shadow stack is built again from them, leaving out the `skip` innermost
/// (a trace function's own, where it is Python code). Those frames return through the
/// hooks later and pop their entries; a return of a frame that is not on the stack (the
/// trace function's) pops nothing. A thread whose stack is not built yet, or is walked,
/// has nothing to do. GIL held.
pub fn switched(st: &mut ThreadState, skip: usize) {
    if mode() == StackMode::Walk || !st.seeded() {
        return;
    }
    let api = api();
    // SAFETY: GIL held (caller's contract); PyEval_GetFrame returns a borrowed reference
    // (or NULL), made a new one; GetBack returns a new reference (or NULL) and the one we
    // held is released, the frame staying alive on the running stack.
    let frame = unsafe {
        let mut f = (api.eval_get_frame)();
        if !f.is_null() {
            (api.inc_ref)(f);
        }
        for _ in 0..skip {
            if f.is_null() {
                break;
            }
            let back = (api.frame_get_back)(f);
            (api.dec_ref)(f);
            f = back;
        }
        f
    };
    seed_from(api, st, frame, |_| false);
}

/// The shadow stack from the thread's current frame and its callers. GIL held.
pub fn seed_from_current(api: &PyApi, st: &mut ThreadState) {
    // SAFETY: GIL held (caller's contract); PyEval_GetFrame returns a borrowed reference
    // (or NULL), made a new one for seed_from to take over.
    let frame = unsafe { (api.eval_get_frame)() };
    if !frame.is_null() {
        // SAFETY: as above.
        unsafe { (api.inc_ref)(frame) };
    }
    seed_from(api, st, frame, |_| false);
}

/// Frame-walking mode: rebuilds the thread's stack from its frames, when it holds the
/// GIL (a native allocation without it keeps the last stack walked, lines included: its
/// frames may be gone). Frame objects may be created on the way (3.11+), so the
/// collector is kept from running meanwhile.
pub fn walk_frames(st: &mut ThreadState) {
    let api = api();
    // SAFETY: PyGILState_Check has no preconditions; the rest runs with the GIL held.
    unsafe {
        if (api.gil_check)() == 0 {
            st.keep_lines();
            return;
        }
        let was_enabled = api.gc_disable.map(|f| f());
        let frame = (api.eval_get_frame)();
        if !frame.is_null() {
            (api.inc_ref)(frame);
        }
        seed_walked(api, st, frame);
        if let (Some(1), Some(enable)) = (was_enabled, api.gc_enable) {
            enable();
        }
    }
}

/// Makes the shadow stack `frame` and its callers, outermost first, for a thread that
/// was mid-stack when it got the profiler; the walk ends before a frame for which
/// `stop` is true. Takes over a reference to `frame` (may be null). GIL held.
pub fn seed_from(
    api: &PyApi,
    st: &mut ThreadState,
    frame: *mut PyObject,
    stop: impl Fn(*mut PyObject) -> bool,
) {
    seed(api, st, frame, stop, true);
}

/// [`seed_from`] for frame walking, where the shadow stack keeps no references: the
/// stack is walked again at the next allocation, and releasing the last reference to a
/// frame that has finished since would run its locals' finalizers inside an allocation.
fn seed_walked(api: &PyApi, st: &mut ThreadState, frame: *mut PyObject) {
    seed(api, st, frame, |_| false, false);
}

fn seed(
    api: &PyApi,
    st: &mut ThreadState,
    frame: *mut PyObject,
    stop: impl Fn(*mut PyObject) -> bool,
    owned: bool,
) {
    // Where the hook keeps the stacks, each seeded frame's return pops it, found by the
    // frame the hook is given.
    let hook = if mode() == StackMode::Eval && owned { api.eval_hook() } else { None };
    let roots = ROOTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut frames = Vec::with_capacity(32);
    let mut f = frame;
    while !f.is_null() {
        if stop(f) || roots.contains(&(f as usize)) {
            // SAFETY: GIL held; releasing the reference we were given or took.
            unsafe { (api.dec_ref)(f) };
            break;
        }
        let (iframe, code) = match hook {
            // SAFETY: `f` is a live frame object on the running stack (GIL held), so its
            // evaluated frame is live too; its code is read as the hook reads it, without
            // a reference (a greenlet switch seeds the whole stack).
            Some(h) => unsafe {
                let iframe = h.iframe_of(f);
                (iframe, h.code(iframe))
            },
            None => (std::ptr::null_mut(), std::ptr::null_mut()),
        };
        let id = if code.is_null() { frame_code_id(api, st, f) } else { code_id(api, st, code) };
        // Our reference to `f` moves into the shadow stack (see ThreadState::seed), or is
        // released: a frame on the running stack is kept alive by the interpreter.
        frames.push((f, iframe, id));
        // SAFETY: GIL held; GetBack returns a new reference (or NULL); `f` is on the
        // running stack, so releasing ours does not free it.
        unsafe {
            let back = (api.frame_get_back)(f);
            if !owned {
                (api.dec_ref)(f);
            }
            f = back;
        }
    }
    drop(roots);
    frames.reverse();
    st.seed(frames.into_iter(), owned);
    if let Some(name) = pending_name(st.os_tid()) {
        st.set_name(&name);
    }
}

/// Python names of threads that were running before tracing started, by OS thread id,
/// for each of those threads to pick up at its first profile event.
static PENDING_NAMES: Mutex<Vec<(u64, Vec<u8>)>> = Mutex::new(Vec::new());

/// How many names [`PENDING_NAMES`] holds: a stack built again at every greenlet switch
/// looks there without taking the lock when none is.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Remembers the Python name of the thread with OS id `os_tid`.
pub fn name_thread(os_tid: u64, name: &[u8]) {
    let mut names = PENDING_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names.retain(|(t, _)| *t != os_tid);
    names.push((os_tid, name.to_vec()));
    PENDING.store(names.len(), Ordering::Relaxed);
}

fn pending_name(os_tid: u64) -> Option<Vec<u8>> {
    if PENDING.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let mut names = PENDING_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let i = names.iter().position(|(t, _)| *t == os_tid)?;
    let name = names.swap_remove(i).1;
    PENDING.store(names.len(), Ordering::Relaxed);
    Some(name)
}
