//! The hooks that keep each thread's shadow stack call by call: the C-level profile
//! function and the frame-evaluation hook, and putting them on (and off) threads.
//!
//! Layer: the hooks layer. They push and pop frames on the thread's state
//! ([`crate::thread_state`]), with code ids and seeding from [`crate::stacks`]; the session
//! layer ([`crate::session`]) and the C API install them.
//!
//! Where the interpreter has a usable frame-evaluation hook (PEP 523), [`eval_frame`] wraps
//! every Python frame; elsewhere [`profile`] is installed with `PyEval_SetProfile` on each
//! thread (see [`StackMode`]). Either stays installed between sessions and keeps the stacks
//! up to date.
//!
//! A thread has one profile function, which a program's own profiler (`sys.setprofile`,
//! cProfile and yappi on 3.9-3.11, debuggers, coverage) replaces, and removes when it is done.
//! In the profile mode, memlens's is kept in front of the program's: the program's function
//! is noted in the thread's state and called by [`profile`] after its own bookkeeping, with
//! the same arguments, while the thread state keeps the program's object (what
//! `sys.getprofile()` returns). `sys.setprofile` is wrapped by the package
//! ([`program_set_profile`]); any other way (`PyEval_SetProfile` from C, the all-threads
//! variants, a profile function that raised and was dropped) is noticed at the thread's next
//! allocation of Python memory ([`keep_in_front`]), where the thread's stack is built again
//! from its frames.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use crate::c_stack::{self, Room};
use crate::guard::{tls, Ctx, Guard};
use crate::python_api::{
    api, EvalFunc, EvalHook, ProfileSlot, PyApi, PyObject, TraceFunc, PYTRACE_CALL,
    PYTRACE_C_EXCEPTION, PYTRACE_C_RETURN, PYTRACE_RETURN,
};
use crate::stacks::{
    code_id, frame_code_id, mode, seed_from, seed_from_current, walking, StackMode,
};
use crate::thread_state::with_state;

/// The `Py_tracefunc` installed with `PyEval_SetProfile`: keeps the thread's shadow stack,
/// then passes the event on to the program's profile function, if the thread has one.
pub extern "C" fn profile(
    obj: *mut PyObject,
    frame: *mut PyObject,
    what: c_int,
    arg: *mut PyObject,
) -> c_int {
    if what != PYTRACE_CALL && what != PYTRACE_RETURN {
        // C calls: nothing to do but pass them on, and this runs at every builtin call.
        return if CHAINED.load(Ordering::Relaxed) { pass_on(obj, frame, what, arg) } else { 0 };
    }
    {
        let _guard = Guard::enter(Ctx::Tracer);
        let api = api();
        with_state(|st| {
            if what == PYTRACE_CALL {
                if !st.seeded() {
                    // SAFETY: GIL held; GetBack returns a new reference (or NULL),
                    // which seed_from takes over.
                    seed_from(api, st, unsafe { (api.frame_get_back)(frame) }, |_| false);
                }
                let id = frame_code_id(api, st, frame);
                st.enter_frame(frame, id);
            } else {
                if !st.seeded() {
                    // SAFETY: GIL held; frame is live; the new reference goes to seed_from.
                    unsafe { (api.inc_ref)(frame) };
                    seed_from(api, st, frame, |_| false);
                }
                st.leave_frame(frame)
            }
        });
    }
    if CHAINED.load(Ordering::Relaxed) {
        pass_on(obj, frame, what, arg)
    } else {
        0
    }
}

/// Set once a thread's profile function of the program's has been put behind memlens's:
/// until then no event has anywhere to go on to.
static CHAINED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The profile function the program (or another tool) set on this thread, which
    /// memlens's passes each event on to; and whether the next event, if the return of a C
    /// call, is not passed on: it is that of the `sys.setprofile` that gave the thread its
    /// first profile function of the program's, which the function does not get without
    /// memlens (nothing profiled the call's start). Here, not in the thread's state, which
    /// every allocation reads: only the profile mode touches it.
    static PROGRAM: Cell<(Option<TraceFunc>, bool)> = const { Cell::new((None, false)) };
}

/// Notes the profile function of the program's that memlens's passes events on to (None:
/// none); `hide_c_return`: the program just set it through `sys.setprofile`, where it had
/// none, and the return of that call is not its.
fn set_program_profile(func: Option<TraceFunc>, hide_c_return: bool) {
    PROGRAM.with(|p| p.set((func, hide_c_return && func.is_some())));
}

/// The program's profile function, forgotten (memlens's leaves the thread).
fn take_program_profile() -> Option<TraceFunc> {
    PROGRAM.with(|p| p.replace((None, false)).0)
}

/// Calls the thread's profile function of the program's, if it has one, as CPython would
/// have (its result, -1 for an exception it raised, is CPython's to act on).
#[inline(never)]
fn pass_on(obj: *mut PyObject, frame: *mut PyObject, what: c_int, arg: *mut PyObject) -> c_int {
    let then = PROGRAM.with(|p| {
        let (func, hide) = p.get();
        if hide {
            p.set((func, false));
            if what == PYTRACE_C_RETURN || what == PYTRACE_C_EXCEPTION {
                return None;
            }
        }
        func
    });
    match then {
        Some(f) => f(obj, frame, what, arg),
        None => 0,
    }
}

/// Whether a profile slot's value is memlens's [`profile`].
#[inline(always)]
fn ours(func: usize) -> bool {
    func == profile as TraceFunc as usize
}

/// Whether the thread state's profile slot ([`ProfileSlot`]) checked out: 0 not looked at
/// yet, 1 yes, 2 no (then a program's profiler replaces memlens's, as it did before).
static SLOT_CHECKED: AtomicU8 = AtomicU8::new(0);

/// Set when `_PyEval_SetProfile` refused memlens's profile function (an audit hook of the
/// program's said no): it is not tried again at every allocation.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// The thread state's profile slot, where it checked out.
#[inline(always)]
fn slot() -> Option<&'static ProfileSlot> {
    if SLOT_CHECKED.load(Ordering::Relaxed) == 1 {
        api().profile_slot()
    } else {
        None
    }
}

/// Checks the profile slot's offsets, once, right after memlens's function was installed on
/// the calling thread: the slot must hold it, and no object. GIL held.
fn check_slot() {
    if SLOT_CHECKED.load(Ordering::Relaxed) != 0 {
        return;
    }
    let ok = api().profile_slot().is_some_and(|slot| {
        // SAFETY: GIL held, so the thread has a live state; fields of it are read.
        unsafe {
            let ts = slot.thread();
            !ts.is_null() && ours(slot.func(ts)) && slot.obj(ts).is_null()
        }
    });
    SLOT_CHECKED.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
}

/// Puts memlens's profile function on thread state `ts` (the calling thread's), which holds
/// another one or none, and returns the one it held, now behind memlens's (its object kept);
/// `Err` when CPython refused to install memlens's. GIL held.
fn put_in_front(slot: &ProfileSlot, ts: *mut c_void) -> Result<Option<TraceFunc>, ()> {
    // SAFETY: GIL held; `ts` is the calling thread's live state.
    let func = unsafe { slot.func(ts) };
    if func != 0 {
        // SAFETY: the thread has a profile function, which ours replaces (see
        // `replace_func`).
        unsafe { slot.replace_func(ts, profile) };
        CHAINED.store(true, Ordering::Relaxed);
        // SAFETY: a non-zero slot holds a `Py_tracefunc`.
        return Ok(Some(unsafe { std::mem::transmute::<usize, TraceFunc>(func) }));
    }
    let api = api();
    let mut exc = [std::ptr::null_mut(); 3];
    // SAFETY: GIL held; an exception in flight is set aside (Fetch takes its references,
    // Restore gives them back) while `_PyEval_SetProfile` runs the audit hooks, whose own
    // exception, if one refuses, is cleared.
    let ok = unsafe {
        (api.err_fetch)(&mut exc[0], &mut exc[1], &mut exc[2]);
        let ok = (slot.set)(ts, Some(profile), std::ptr::null_mut()) == 0;
        if !ok {
            (api.err_clear)();
        }
        (api.err_restore)(exc[0], exc[1], exc[2]);
        ok
    };
    if ok {
        Ok(None)
    } else {
        REFUSED.store(true, Ordering::Relaxed);
        Err(())
    }
}

/// Profile mode, at an allocation of Python memory (GIL held, before its stack is used): if
/// the thread's profile function is no longer memlens's (the program's profiler replaced
/// it, or removed it), memlens's goes back in front of it and the thread's stack is built
/// again from its frames. Costs a thread-state lookup and a compare.
#[inline(always)]
pub fn keep_in_front() {
    let Some(slot) = slot() else { return };
    // SAFETY: GIL held (an object- or mem-domain allocation), so the thread has a live
    // state, whose field is read.
    let ts = unsafe { slot.thread() };
    // SAFETY: as above.
    if ts.is_null() || ours(unsafe { slot.func(ts) }) || REFUSED.load(Ordering::Relaxed) {
        return;
    }
    take_back(slot, ts);
}

#[cold]
#[inline(never)]
fn take_back(slot: &ProfileSlot, ts: *mut c_void) {
    let api = api();
    let _guard = Guard::enter(Ctx::Tracer);
    // Frame objects may be made while the stack is built (3.11+), and no collection may
    // run inside an allocation (see `stacks::walk_frames`).
    // SAFETY: GIL held.
    let was_enabled = api.gc_disable.map(|f| unsafe { f() });
    if let Ok(program) = put_in_front(slot, ts) {
        set_program_profile(program, false);
        with_state(|st| seed_from_current(api, st));
    }
    if let (Some(1), Some(enable)) = (was_enabled, api.gc_enable) {
        // SAFETY: GIL held; puts back what it was.
        unsafe { enable() };
    }
}

/// Whether the calling thread runs a profile function of the program's (behind memlens's
/// or instead of it), before the program sets another through `sys.setprofile`. GIL held.
pub fn program_profiling() -> bool {
    let Some(slot) = slot() else { return false };
    // SAFETY: GIL held, so the thread has a live state, whose field is read.
    let func = unsafe {
        let ts = slot.thread();
        if ts.is_null() {
            return false;
        }
        slot.func(ts)
    };
    func != 0 && (!ours(func) || PROGRAM.with(|p| p.get().0.is_some()))
}

/// The program just set the calling thread's profile function through `sys.setprofile`
/// (memlens's wrapper of it), which replaced memlens's: in the profile mode while tracing,
/// memlens's goes back in front of it. `had`: whether the thread had one of the program's
/// before ([`program_profiling`]). GIL held.
pub fn program_set_profile(had: bool) {
    if mode() != StackMode::Profile || !crate::recording::active() {
        return;
    }
    let Some(slot) = slot() else { return };
    // SAFETY: GIL held, so the thread has a live state, whose field is read.
    let ts = unsafe { slot.thread() };
    // SAFETY: as above.
    if ts.is_null() || ours(unsafe { slot.func(ts) }) {
        return;
    }
    let api = api();
    let _guard = Guard::enter(Ctx::Tracer);
    if let Ok(program) = put_in_front(slot, ts) {
        set_program_profile(program, !had);
        // Calls and returns went unseen, if memlens's was not in front before.
        with_state(|st| seed_from_current(api, st));
    }
}

/// The evaluation function ours wraps (CPython's own, or another PEP 523 user's).
static PREV_EVAL: AtomicUsize = AtomicUsize::new(0);

/// Wraps the interpreter's frame-evaluation function, once (until [`remove_eval_hook`]): if
/// another PEP 523 user later wraps ours, wrapping theirs again would make the two call each
/// other forever. Needs the GIL.
fn install_eval_hook() {
    let Some(hook) = api().eval_hook() else { return };
    if PREV_EVAL.load(Ordering::Acquire) != 0 {
        return;
    }
    // SAFETY: GIL held; the interpreter outlives the process's tracing.
    unsafe {
        let interp = (hook.get_interp)();
        let current = (hook.get_eval)(interp).unwrap_or(hook.default_eval);
        PREV_EVAL.store(current as usize, Ordering::Release);
        (hook.set_eval)(interp, Some(eval_frame));
    }
}

/// Puts back the frame-evaluation function [`install_eval_hook`] wrapped, if ours is still
/// the current one (another PEP 523 user that wrapped ours keeps it: then it stays, and
/// false is returned). Every thread's shadow stack is then out of date: each is built
/// afresh at its next use. Needs the GIL and tracing stopped.
pub fn remove_eval_hook() -> bool {
    let Some(hook) = api().eval_hook() else { return true };
    let prev = PREV_EVAL.load(Ordering::Acquire);
    if prev == 0 {
        return true;
    }
    // SAFETY: GIL held; Get and Set read and write the interpreter's slot. Frames already
    // running through `eval_frame` finish in it (the library is never unloaded).
    unsafe {
        let interp = (hook.get_interp)();
        let ours: EvalFunc = eval_frame;
        if (hook.get_eval)(interp).map(|f| f as usize) != Some(ours as usize) {
            return false;
        }
        // What `install_eval_hook` found (CPython's default when the slot was empty: setting
        // that empties the slot again where the interpreter keeps it empty).
        let prev: EvalFunc = std::mem::transmute(prev);
        (hook.set_eval)(interp, Some(prev));
    }
    PREV_EVAL.store(0, Ordering::Release);
    crate::thread_state::invalidate_stacks();
    true
}

/// The frame-evaluation function: keeps the running thread's shadow stack around each
/// Python frame. Frames started by the tracer's own work (a collection run while it
/// seeds a stack) are not tracked.
///
/// Every Python call goes through here as a C call, on the thread's C stack, where plain
/// Python (3.11+) runs Python-to-Python calls without one ([`crate::c_stack`]): so when the
/// stack is nearly full a frame runs on a fresh stack segment ([`on_fresh_segment`]), or is
/// refused with a `RecursionError` where that cannot be done ([`refuse`]), and on 3.12 and
/// 3.13 the C recursion units the call costs beyond plain Python are given back while it
/// runs.
unsafe extern "C" fn eval_frame(
    ts: *mut c_void,
    iframe: *mut c_void,
    throw: c_int,
) -> *mut PyObject {
    let api = api();
    let hook = api.eval_hook().expect("the hook is installed only where it exists");
    // SAFETY: PREV_EVAL holds the evaluation function we replaced, stored before ours
    // was installed.
    let prev: EvalFunc = unsafe { std::mem::transmute(PREV_EVAL.load(Ordering::Acquire)) };
    let credit = match c_stack::room(tls()) {
        // SAFETY: `ts` is the thread state CPython called us with, GIL held.
        Room::Free(room) => match unsafe { hook.credit(ts, room) } {
            Some(units) => units,
            // SAFETY: CPython hands us a frame to run, which runs there or below.
            None => match unsafe { on_fresh_segment(api, hook, prev, ts, iframe, throw) } {
                Some(result) => return result,
                None => 0,
            },
        },
        // SAFETY: as above; `refuse` runs it too.
        Room::Low => unsafe {
            return on_fresh_segment(api, hook, prev, ts, iframe, throw)
                .unwrap_or_else(|| refuse(hook, prev, ts, iframe));
        },
        Room::Unknown => 0,
    };
    // SAFETY: per this function's contract with CPython.
    unsafe { run_frame(api, hook, prev, (ts, iframe, throw), credit) }
}

/// Runs a frame through `prev`, keeping the thread's shadow stack around it, and takes
/// back the `credit` given to the C recursion counter for it.
///
/// # Safety
/// GIL held; `frame` is what the hook was called with.
#[inline(always)]
unsafe fn run_frame(
    api: &PyApi,
    hook: &EvalHook,
    prev: EvalFunc,
    frame: (*mut c_void, *mut c_void, c_int),
    credit: c_int,
) -> *mut PyObject {
    let (ts, iframe, throw) = frame;
    // SAFETY: CPython hands us a live frame to run.
    let code = unsafe { hook.code(iframe) };
    let tracked = !code.is_null() && {
        let g = Guard::enter(Ctx::Tracer);
        g.outermost()
            && with_state(|st| {
                if !st.seeded() {
                    // The caller's frame: the one starting is not current yet.
                    seed_from_current(api, st);
                }
                let id = code_id(api, st, code);
                st.enter_iframe(iframe, code, id);
            })
            .is_some()
    };
    // SAFETY: calling it as CPython would have.
    let result = unsafe { prev(ts, iframe, throw) };
    // SAFETY: the same thread state; the call gave back every unit it took.
    unsafe { hook.debit(ts, credit) };
    if tracked {
        let _g = Guard::enter(Ctx::Tracer);
        with_state(|st| st.leave_iframe(iframe));
    }
    result
}

/// Runs a frame on a fresh stack segment, where that is safe ([`EvalHook::fresh_segments`];
/// 3.14+ is told where the segment is, [`EvalHook::protect_stack`]): when the thread's stack
/// is nearly full, or too short for the C recursion counter to be given back the call's
/// units (3.12, 3.13: the call would cost it units plain Python does not spend, and a deep
/// recursion would end in CPython's `RecursionError` before the end of the stack). On the
/// segment the call is credited as any other. `None` (the frame not run) where it is not
/// safe or no segment can be had.
///
/// # Safety
/// GIL held; the arguments are those the hook was called with.
#[cold]
#[inline(never)]
unsafe fn on_fresh_segment(
    api: &PyApi,
    hook: &EvalHook,
    prev: EvalFunc,
    ts: *mut c_void,
    iframe: *mut c_void,
    throw: c_int,
) -> Option<*mut PyObject> {
    // SAFETY: GIL held.
    if !unsafe { hook.fresh_segments() } {
        return None;
    }
    let outer = c_stack::segment(tls());
    let result = c_stack::on_fresh_segment(tls(), || {
        // SAFETY: the thread state the hook was called with, GIL held; CPython is told of
        // the segment before any of its code runs there.
        if !unsafe { hook.protect_stack(ts, c_stack::segment(tls())) } {
            // SAFETY: per the contract.
            return unsafe { refuse(hook, prev, ts, iframe) };
        }
        let credit = match c_stack::room(tls()) {
            // SAFETY: as above.
            Room::Free(room) => unsafe { hook.credit(ts, room) }.unwrap_or(0),
            Room::Low | Room::Unknown => 0,
        };
        // SAFETY: per the contract; the frame runs as the hook would have run it.
        unsafe { run_frame(api, hook, prev, (ts, iframe, throw), credit) }
    });
    if result.is_some() {
        // SAFETY: as above, back on the stack the call came from, which CPython is told of
        // before any of its code runs again.
        unsafe { hook.protect_stack(ts, outer) };
    }
    result
}

/// Runs `iframe` as a throw of `RecursionError` into it, as `generator.throw()` does, when
/// the C stack has too little room left to run it: the evaluation function unwinds the
/// frame without running its code (a fresh frame has no handler to go to; a suspended
/// generator's `except` blocks may catch it, as they would a throw) and returns NULL with
/// the exception set; the frame is then cleared as after any error (3.12+ clears and pops
/// it at its error exit, 3.11's `_PyEval_Vector` after the call; on 3.9 and 3.10 the
/// caller releases its frame object). Checked in `Python/ceval.c` of 3.11 to 3.13.
///
/// # Safety
/// GIL held; the arguments are those the hook was called with.
#[cold]
#[inline(never)]
unsafe fn refuse(
    hook: &EvalHook,
    prev: EvalFunc,
    ts: *mut c_void,
    iframe: *mut c_void,
) -> *mut PyObject {
    // SAFETY: GIL held; a static message. An exception the caller was throwing in is
    // replaced by this one.
    unsafe {
        (hook.err_set_string)(
            hook.recursion_error,
            c"maximum recursion depth exceeded (the C stack is nearly full: under memlens, \
              each Python call takes C stack)"
                .as_ptr(),
        );
        prev(ts, iframe, 1)
    }
}

/// Removes the profiler from the calling thread and forgets its shadow stack (the end
/// of `memlens.record()`: that thread's Python code runs at full speed again; the next
/// session seeds its stack afresh). Needs the GIL.
pub fn uninstall_from_current_thread() {
    if mode() == StackMode::Eval {
        // The hook stays: it is cheap, and keeps every stack right for the next session.
        return;
    }
    let api = api();
    let _guard = Guard::enter(Ctx::Tracer);
    with_state(|st| st.forget_stack());
    let program = take_program_profile();
    // The program's profile function that memlens's was in front of takes its place back,
    // with the object the thread state kept for it.
    if let (Some(func), Some(slot)) = (program, slot()) {
        // SAFETY: GIL held, so the thread has a live state; memlens's function is replaced
        // only where it is the thread's.
        unsafe {
            let ts = slot.thread();
            if !ts.is_null() && ours(slot.func(ts)) {
                slot.replace_func(ts, func);
                return;
            }
        }
    }
    // SAFETY: GIL held; removes this thread's C profile function.
    unsafe { (api.eval_set_profile)(None, std::ptr::null_mut()) };
}

/// Installs the profiler on the calling thread. With a non-null `frame`, the shadow
/// stack starts as that frame and its callers (the thread is mid-stack); with null
/// it starts empty. Needs the GIL.
pub fn install_on_current_thread(frame: *mut PyObject, name: Option<&[u8]>) {
    let api = api();
    let _guard = Guard::enter(Ctx::Tracer);
    if walking() {
        if let Some(name) = name {
            with_state(|st| st.set_name(name));
        }
        return;
    }
    with_state(|st| {
        if let Some(name) = name {
            st.set_name(name);
        }
        if !frame.is_null() {
            // SAFETY: frame is a live frame object (caller's contract); GIL held.
            unsafe { (api.inc_ref)(frame) };
        }
        seed_from(api, st, frame, |_| false);
    });
    if mode() == StackMode::Eval {
        install_eval_hook();
    } else {
        // Alone: a profile function the thread had is `threading`'s hand-over to memlens
        // (`memlens._thread_profile`), or, at a start in mid-program, is dropped as before.
        // SAFETY: GIL held; installs a C profile function for this thread.
        unsafe { (api.eval_set_profile)(Some(profile), std::ptr::null_mut()) };
        set_program_profile(None, false);
        check_slot();
    }
}

/// A thread started during tracing, at its first profile event (`threading.setprofile`'s
/// function): takes its name and, unless the evaluation hook already keeps its stack (or
/// it is walked at each allocation), gets the profiler. GIL held.
pub fn adopt_new_thread(frame: *mut PyObject, name: &[u8]) {
    if mode() == StackMode::Profile {
        install_on_current_thread(frame, Some(name));
        return;
    }
    let _guard = Guard::enter(Ctx::Tracer);
    with_state(|st| st.set_name(name));
    // SAFETY: GIL held; takes `threading`'s Python profile function off this thread.
    unsafe { (api().eval_set_profile)(None, std::ptr::null_mut()) };
}

/// Installs the profiler on every other thread of the interpreter too (threads already
/// running when tracing starts mid-program); each seeds its shadow stack at its first
/// profile event. Returns false when this Python cannot do it. Needs the GIL.
pub fn install_on_all_threads() -> bool {
    if mode() != StackMode::Profile {
        return true;
    }
    let _guard = Guard::enter(Ctx::Tracer);
    api().set_profile_all_threads(profile)
}
