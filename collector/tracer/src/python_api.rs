//! Everything the tracer knows about CPython, in one place.
//!
//! Layer: foundations; imports nothing of the tracer.
//!
//! The library is LD_PRELOADed into every process the traced program starts, Python
//! or not, so it must have no undefined Python symbols: each function is looked up
//! with `dlsym(RTLD_DEFAULT, ...)` when tracing starts, which finds them in
//! `libpython3.X.so` or in a statically linked `python3` alike.
//!
//! Version differences handled here (3.9 to 3.15, each tested):
//! - `co_qualname` exists from 3.11; before, `co_name` is the best name available.
//! - 3.13+: `PyRefTracer` tells of every object created, free-listed ones included
//!   ([`RefTracerApi`], used by [`crate::ref_tracer`]).
//! - 3.12 renamed `_PyCode_GetExtra`/`_PyCode_SetExtra`/`_PyEval_RequestCodeExtraIndex`
//!   to `PyUnstable_*`; we try the new names first, then the old ones.
//! - `PyMemAllocatorEx` and the profile-function protocol are unchanged since 3.5.
//! - Profiling threads that are already running: 3.12 has `PyEval_SetProfileAllThreads`;
//!   3.9 to 3.11 export `_PyEval_SetProfile(tstate, ...)`, applied to each thread state of
//!   the interpreter (which is what 3.12's function does).
//! - Where a thread state keeps its profile function and object (`c_profilefunc`,
//!   `c_profileobj`: the same fields from 3.9 to 3.15, at offsets that moved in 3.11,
//!   3.13 and 3.15; 3.12+ calls them from `sys.monitoring`'s legacy callbacks), read and
//!   written directly ([`ProfileSlot`]) to keep memlens's profile function in front of a
//!   program's.
//! - The frame-evaluation hook (PEP 523) and the layout of the frames it is given
//!   ([`EvalHook`]: frame objects on 3.9 and 3.10, interpreter frames since 3.11, whose
//!   code and position fields moved in 3.12, 3.13 and 3.14, whose code slot is a tagged
//!   `_PyStackRef` (two tag bits in 3.15)), checked against the public frame
//!   API before use; where the check fails, shadow stacks are kept with the profile
//!   function. 3.14 renames the hook's setter `PyUnstable_InterpreterState_SetEvalFrameFunc`;
//!   both names are looked up.
//! - With the hook, every Python call is a C call: on 3.12 and 3.13 each costs
//!   `_PyEval_EvalFrameDefault`'s 2 units of the thread state's C recursion counter, which
//!   the hook gives back while the C stack has room ([`EvalHook::credit`]); the counter's
//!   offset is checked at start against `sys.getrecursionlimit()`. 3.14+ has no such counter:
//!   it measures the C stack itself (`c_stack_soft_limit`), so a hooked call needs nothing
//!   given back there, and a frame run on a fresh stack segment tells CPython where that
//!   stack is (`PyUnstable_ThreadState_SetStackProtection`, [`EvalHook::protect_stack`]).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

pub type PyObject = c_void;

/// Oldest and newest supported minor versions of Python 3.
pub const MIN_MINOR: u8 = 9;
pub const MAX_MINOR: u8 = 15;

/// `Py_tracefunc`.
pub type TraceFunc = extern "C" fn(*mut PyObject, *mut PyObject, c_int, *mut PyObject) -> c_int;

/// `PyTrace_CALL` / `PyTrace_RETURN` (Include/cpython/pystate.h).
pub const PYTRACE_CALL: c_int = 0;
pub const PYTRACE_RETURN: c_int = 3;
/// `PyTrace_C_RETURN` / `PyTrace_C_EXCEPTION`.
pub const PYTRACE_C_EXCEPTION: c_int = 5;
pub const PYTRACE_C_RETURN: c_int = 6;

/// `PyMemAllocatorDomain`.
pub const DOMAIN_RAW: c_int = 0;
pub const DOMAIN_MEM: c_int = 1;
pub const DOMAIN_OBJ: c_int = 2;

/// `PyMemAllocatorEx`, layout-compatible with CPython's.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyMemAllocatorEx {
    pub ctx: *mut c_void,
    pub malloc: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    pub calloc: Option<unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void>,
    pub realloc: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void>,
    pub free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
}

/// The CPython functions the tracer calls, resolved at start.
pub struct PyApi {
    pub major: u8,
    pub minor: u8,
    pub mem_get_allocator: unsafe extern "C" fn(c_int, *mut PyMemAllocatorEx),
    pub mem_set_allocator: unsafe extern "C" fn(c_int, *mut PyMemAllocatorEx),
    pub eval_set_profile: unsafe extern "C" fn(Option<TraceFunc>, *mut PyObject),
    pub frame_get_line_number: unsafe extern "C" fn(*mut PyObject) -> c_int,
    /// `PyFrame_GetLasti` (3.11+): a frame's instruction offset, to cache lines by.
    pub frame_get_lasti: Option<unsafe extern "C" fn(*mut PyObject) -> c_int>,
    pub frame_get_code: unsafe extern "C" fn(*mut PyObject) -> *mut PyObject,
    pub frame_get_back: unsafe extern "C" fn(*mut PyObject) -> *mut PyObject,
    pub object_get_attr_string: unsafe extern "C" fn(*mut PyObject, *const c_char) -> *mut PyObject,
    pub unicode_as_utf8_and_size: unsafe extern "C" fn(*mut PyObject, *mut isize) -> *const c_char,
    pub long_as_long: unsafe extern "C" fn(*mut PyObject) -> std::ffi::c_long,
    pub err_clear: unsafe extern "C" fn(),
    pub dec_ref: unsafe extern "C" fn(*mut PyObject),
    pub inc_ref: unsafe extern "C" fn(*mut PyObject),
    pub request_code_extra_index:
        unsafe extern "C" fn(Option<unsafe extern "C" fn(*mut c_void)>) -> isize,
    pub code_get_extra: unsafe extern "C" fn(*mut PyObject, isize, *mut *mut c_void) -> c_int,
    pub code_set_extra: unsafe extern "C" fn(*mut PyObject, isize, *mut c_void) -> c_int,
    /// `PyEval_GetFrame`, `PyGILState_Check`, `PyGC_Disable`/`PyGC_Enable` (3.10+): the
    /// frame-walking stack mode (`MEMLENS_STACKS=walk`, a measurement) needs them.
    pub eval_get_frame: unsafe extern "C" fn() -> *mut PyObject,
    pub gil_check: unsafe extern "C" fn() -> c_int,
    pub gc_disable: Option<unsafe extern "C" fn() -> c_int>,
    pub gc_enable: Option<unsafe extern "C" fn() -> c_int>,
    pub err_fetch: unsafe extern "C" fn(*mut *mut PyObject, *mut *mut PyObject, *mut *mut PyObject),
    pub err_restore: unsafe extern "C" fn(*mut PyObject, *mut PyObject, *mut PyObject),
    /// Attribute holding the most precise function name on this version.
    pub name_attr: &'static CStr,
    all_threads: Option<AllThreads>,
    profile_slot: Option<ProfileSlot>,
    eval_hook: Option<EvalHook>,
    ref_tracer: Option<RefTracerApi>,
}

/// `PyRefTracer` (3.13+): called with each object created (`_Py_NewReference`, which
/// objects taken from a free list go through too) or destroyed, the event, and our data.
pub type RefTracer = unsafe extern "C" fn(*mut PyObject, c_int, *mut c_void) -> c_int;

/// `PyRefTracer_CREATE`.
pub const REFTRACER_CREATE: c_int = 0;

/// The object-creation tracer API of 3.13+ (`Include/cpython/object.h`).
pub struct RefTracerApi {
    /// `PyRefTracer_SetTracer(tracer, data)`: 0 on success. GIL held.
    pub set: unsafe extern "C" fn(Option<RefTracer>, *mut c_void) -> c_int,
    /// `PyRefTracer_GetTracer(&data)`: the installed tracer, or null.
    pub get: unsafe extern "C" fn(*mut *mut c_void) -> Option<RefTracer>,
    /// `PyType_GetFlags`.
    pub type_flags: unsafe extern "C" fn(*mut PyObject) -> std::ffi::c_ulong,
}

/// `_PyFrameEvalFunction`: (thread state, frame, throw flag) -> result. The frame is an
/// `_PyInterpreterFrame` on 3.11+, a frame object (`PyFrameObject`) on 3.9 and 3.10.
pub type EvalFunc = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> *mut PyObject;

/// The frame-evaluation hook (PEP 523) and what reading the frames it is given needs.
///
/// CPython calls the interpreter's frame-evaluation function for every Python frame it
/// runs (once such a function is set, 3.11+ stops inlining Python-to-Python calls, and
/// its specialized instructions that would push a frame inline deoptimize), with the
/// frame to run. Wrapping it keeps a shadow stack at the cost of one C call per Python
/// call, where a profile function makes the interpreter check for tracing at every
/// bytecode instruction (3.9-3.11) or instrument every function (3.12+) and calls it at
/// every builtin call too (measured in bench/stack_modes.py).
pub struct EvalHook {
    pub get_interp: unsafe extern "C" fn() -> *mut c_void,
    pub get_eval: unsafe extern "C" fn(*mut c_void) -> Option<EvalFunc>,
    pub set_eval: unsafe extern "C" fn(*mut c_void, Option<EvalFunc>),
    pub default_eval: EvalFunc,
    pub addr2line: unsafe extern "C" fn(*mut PyObject, c_int) -> c_int,
    /// `&PyCode_Type`: a frame whose code slot holds anything else is not tracked.
    code_type: *const c_void,
    layout: FrameLayout,
    /// `PyErr_SetString` and `PyExc_RecursionError`: what the hook raises in a frame it
    /// has no C stack left to run ([`crate::c_stack`]).
    pub err_set_string: unsafe extern "C" fn(*mut PyObject, *const c_char),
    pub recursion_error: *mut PyObject,
    /// Where this version's thread state keeps its C recursion counter (3.12, 3.13), where
    /// that checked out at start.
    c_recursion: Option<usize>,
    /// What running a hooked frame on a fresh stack segment needs, where it may
    /// ([`Self::fresh_segments`]).
    segments: Option<Segments>,
}

/// What [`EvalHook::fresh_segments`] and [`EvalHook::protect_stack`] call.
#[derive(Clone, Copy)]
struct Segments {
    /// `PySys_GetObject` and `PyDict_GetItemString`, to ask whether greenlet is imported.
    sys_get_object: unsafe extern "C" fn(*const c_char) -> *mut PyObject,
    dict_get_item_string: unsafe extern "C" fn(*mut PyObject, *const c_char) -> *mut PyObject,
    /// 3.14+: `PyUnstable_ThreadState_SetStackProtection` and `..._ResetStackProtection`.
    protection: Option<StackProtection>,
    /// `PyErr_Clear`.
    err_clear: unsafe extern "C" fn(),
}

#[derive(Clone, Copy)]
struct StackProtection {
    set: unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> c_int,
    reset: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: `code_type` and `recursion_error` are the addresses of static objects, only
// compared with or passed to CPython with the GIL held.
unsafe impl Send for EvalHook {}
// SAFETY: as above.
unsafe impl Sync for EvalHook {}

/// Where a version's evaluated frames keep their code object and position. Each version's
/// numbers come from its headers (`offsetof` on `Include/internal/pycore_frame.h`'s
/// `_PyInterpreterFrame`, `Include/cpython/code.h`'s `PyCodeObject` and
/// `Include/cpython/frameobject.h` / `pycore_frame.h`'s `PyFrameObject`, x86-64, release
/// builds), and are checked against the public frame API at start ([`EvalHook::verified`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameLayout {
    /// The code object pointer: `f_code` (3.9-3.12), `f_executable` (3.13+).
    code: usize,
    /// Tag bits of the code slot, cleared to read the pointer: 3.14's `f_executable` is a
    /// `_PyStackRef` whose low bit says the reference is deferred, 3.15's has two tag bits
    /// (tagged ints too: `Py_TAG_BITS` in `Include/internal/pycore_stackref.h`); 0 where the
    /// slot is a plain pointer.
    code_tag: usize,
    position: Position,
    /// `PyFrameObject.f_frame`, the interpreter frame of a frame object (3.11+); `None`
    /// where the hook is given the frame object itself (3.9, 3.10).
    frame_iframe: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// 3.11+: a pointer to a code unit, counted from `PyCodeObject.co_code_adaptive` (at
    /// `code_units`): `prev_instr` (3.11, 3.12: the unit before the next instruction) or
    /// `instr_ptr` (3.13: the instruction running), whose offsets `PyFrame_GetLasti` gives.
    CodeUnit { at: usize, code_units: usize },
    /// 3.9, 3.10: `PyFrameObject.f_lasti`, an `int` in bytes (3.9) or code units (3.10).
    Lasti { at: usize, unit: c_int },
}

impl FrameLayout {
    fn of(minor: u8) -> Option<FrameLayout> {
        let unit = |at, code_units| Position::CodeUnit { at, code_units };
        Some(match minor {
            9 => FrameLayout {
                code: 32,
                code_tag: 0,
                position: Position::Lasti { at: 104, unit: 1 },
                frame_iframe: None,
            },
            10 => FrameLayout {
                code: 32,
                code_tag: 0,
                position: Position::Lasti { at: 96, unit: 2 },
                frame_iframe: None,
            },
            11 => FrameLayout {
                code: 32,
                code_tag: 0,
                position: unit(56, 184),
                frame_iframe: Some(24),
            },
            12 => FrameLayout {
                code: 0,
                code_tag: 0,
                position: unit(56, 192),
                frame_iframe: Some(24),
            },
            13 => FrameLayout {
                code: 0,
                code_tag: 0,
                position: unit(56, 200),
                frame_iframe: Some(24),
            },
            14 => FrameLayout {
                code: 0,
                code_tag: 1,
                position: unit(56, 208),
                frame_iframe: Some(24),
            },
            15 => FrameLayout {
                code: 0,
                code_tag: 3,
                position: unit(56, 208),
                frame_iframe: Some(24),
            },
            _ => return None,
        })
    }
}

/// What a hooked call costs CPython's C recursion counter (`tstate->c_recursion_remaining`,
/// 3.12 and 3.13), where plain Python runs a Python-to-Python call without a C call: each
/// entry into `_PyEval_EvalFrameDefault` takes `PY_EVAL_C_STACK_UNITS` (2, in
/// `Python/ceval.c`) and gives them back when it returns, whichever way. Measured: 2 on
/// 3.12.1 and 3.13.0, for calls and generators alike.
const EVAL_C_UNITS: c_int = 2;

/// C stack that one unit of the C recursion counter stands for, when crediting: what C
/// code that recurses without calling Python takes a unit, with room to spare (`repr`, the C
/// `json` encoder and `pickle` of nested lists: 150-180 bytes a level, one unit, on 3.13.0),
/// and about what a hooked call takes a unit (530-580 bytes a call on 3.12.1 and 3.13.0,
/// x86-64 release builds), so that CPython's counter and the stack run out together.
const BYTES_PER_C_UNIT: usize = 256;

/// Where `PyThreadState` (`Include/cpython/pystate.h`, x86-64) keeps the C recursion counter
/// and, to check the offsets against, the Python recursion limit and counter before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecursionLayout {
    py_remaining: usize,
    py_limit: usize,
    c_remaining: usize,
    /// `C_RECURSION_LIMIT` (3.12) or `Py_C_RECURSION_LIMIT` (3.13): what the counter starts at.
    c_limit: c_int,
}

impl RecursionLayout {
    fn of(minor: u8) -> Option<RecursionLayout> {
        let at = |py_remaining, c_limit| RecursionLayout {
            py_remaining,
            py_limit: py_remaining + 4,
            c_remaining: py_remaining + 8,
            c_limit,
        };
        match minor {
            12 => Some(at(28, 1500)),
            13 => Some(at(44, 10000)),
            _ => None,
        }
    }

    /// True if the calling thread's state read through it says what the public API says:
    /// its Python recursion limit is `sys.getrecursionlimit()`, and both counters are
    /// within their limits. GIL held.
    fn verified(&self, ts: *mut c_void, limit: c_int) -> bool {
        if ts.is_null() {
            return false;
        }
        // SAFETY: `ts` is the calling thread's live state; the offsets are within it on
        // every supported version (ints before its frame pointer), so the reads are in
        // bounds even where the layout is wrong.
        let (py_remaining, py_limit, c_remaining) = unsafe {
            (
                *ts.byte_add(self.py_remaining).cast::<c_int>(),
                *ts.byte_add(self.py_limit).cast::<c_int>(),
                *ts.byte_add(self.c_remaining).cast::<c_int>(),
            )
        };
        py_limit == limit
            && (1..=py_limit).contains(&py_remaining)
            && (1..=self.c_limit).contains(&c_remaining)
    }
}

impl EvalHook {
    /// Gives the thread's C recursion counter back the units the hooked call about to run
    /// will take, if the counter can still bear them in the `room` bytes of C stack left
    /// (so C code that recurses deep at the bottom of a deep Python recursion meets
    /// CPython's `RecursionError` before the end of the stack). Returns what it gave, to
    /// take back with [`Self::debit`] when the call returns (0 where there is no counter),
    /// or `None` when the counter cannot bear them in that room (the call then runs on a
    /// fresh stack segment, where it can, or without the units).
    ///
    /// # Safety
    /// `ts` is the thread state the hook was called with, GIL held.
    #[inline(always)]
    pub unsafe fn credit(&self, ts: *mut c_void, room: usize) -> Option<c_int> {
        let Some(at) = self.c_recursion else { return Some(0) };
        // SAFETY: the offset checked out at start (`RecursionLayout::verified`).
        let counter = unsafe { &mut *ts.byte_add(at).cast::<c_int>() };
        let after = *counter + EVAL_C_UNITS;
        if after > 0 && after as usize * BYTES_PER_C_UNIT <= room {
            *counter = after;
            Some(EVAL_C_UNITS)
        } else {
            None
        }
    }

    /// Takes back what [`Self::credit`] gave.
    ///
    /// # Safety
    /// As for [`Self::credit`], with the same `ts`.
    #[inline(always)]
    pub unsafe fn debit(&self, ts: *mut c_void, units: c_int) {
        if let (Some(at), 1..) = (self.c_recursion, units) {
            // SAFETY: as in `credit`.
            unsafe { *ts.byte_add(at).cast::<c_int>() -= units };
        }
    }

    /// Whether a frame may run on a fresh stack segment when the thread's stack is nearly
    /// full ([`crate::c_stack::on_fresh_segment`]): where CPython counts recursion without
    /// looking at the stack's address (3.9 to 3.13) or can be told where the stack is
    /// (3.14+, [`Self::protect_stack`]), and greenlet is not imported (a greenlet switch
    /// copies the part of the C stack between two addresses, which a segment elsewhere
    /// would make a crash).
    ///
    /// # Safety
    /// GIL held.
    pub unsafe fn fresh_segments(&self) -> bool {
        let Some(check) = self.segments else { return false };
        // SAFETY: GIL held; both calls return borrowed references (or null), and a failed
        // lookup sets no exception. The key's string is the tracer's, never recorded.
        unsafe {
            let _guard = crate::guard::Guard::enter(crate::guard::Ctx::Tracer);
            let modules = (check.sys_get_object)(c"modules".as_ptr());
            !modules.is_null()
                && (check.dict_get_item_string)(modules, c"greenlet".as_ptr()).is_null()
        }
    }

    /// Tells CPython 3.14+ which C stack the thread runs on, for its own checks of the
    /// room left: `Some((lowest address, size))`, a stack segment; `None`, the thread's own
    /// stack, as CPython found it. Nothing before 3.14. False if CPython refused (it then
    /// keeps the stack it knew).
    ///
    /// # Safety
    /// `ts` is the thread state the hook was called with, GIL held.
    pub unsafe fn protect_stack(&self, ts: *mut c_void, stack: Option<(usize, usize)>) -> bool {
        let Some(Segments { protection: Some(p), err_clear, .. }) = self.segments else {
            return true;
        };
        // SAFETY: per the contract. A refusal's exception (a size below CPython's least,
        // which a segment is far above) is not left behind.
        unsafe {
            match stack {
                Some((low, size)) => {
                    let ok = (p.set)(ts, low as *mut c_void, size) == 0;
                    if !ok {
                        err_clear();
                    }
                    ok
                }
                None => {
                    (p.reset)(ts);
                    true
                }
            }
        }
    }

    /// The code object an evaluated frame runs (borrowed: the frame holds it), or null
    /// when its code slot holds something else.
    ///
    /// # Safety
    /// `iframe` is a live frame given to the evaluation function.
    #[inline]
    pub unsafe fn code(&self, iframe: *mut c_void) -> *mut PyObject {
        // SAFETY: per the contract, and the offset checked by `verified`; a code object's
        // type pointer follows its reference count (`PyObject_HEAD`).
        unsafe {
            let code = self.code_slot(iframe);
            let ok = !code.is_null() && *code.byte_add(8).cast::<*const c_void>() == self.code_type;
            if ok {
                code
            } else {
                std::ptr::null_mut()
            }
        }
    }

    /// What the code slot of `iframe` points to, its tag bits cleared.
    ///
    /// # Safety
    /// `iframe` is a live frame given to the evaluation function.
    #[inline(always)]
    unsafe fn code_slot(&self, iframe: *mut c_void) -> *mut PyObject {
        // SAFETY: per the contract; the slot is pointer-sized on every layout.
        let bits = unsafe { *iframe.byte_add(self.layout.code).cast::<usize>() };
        (bits & !self.layout.code_tag) as *mut PyObject
    }

    /// The byte offset of the instruction `iframe` is executing in `code`, as
    /// `PyFrame_GetLasti` would say.
    ///
    /// # Safety
    /// `iframe` is a live frame running `code`.
    #[inline]
    pub unsafe fn lasti(&self, iframe: *mut c_void, code: *mut PyObject) -> c_int {
        // SAFETY: per the contract, and the offsets checked by `verified`.
        unsafe {
            match self.layout.position {
                Position::CodeUnit { at, code_units } => {
                    let prev = *iframe.byte_add(at).cast::<*const u8>();
                    let first = code.byte_add(code_units).cast::<u8>();
                    (prev.offset_from(first) as c_int) & !1
                }
                Position::Lasti { at, unit } => (*iframe.byte_add(at).cast::<c_int>()) * unit,
            }
        }
    }

    /// The evaluated frame of a frame object.
    ///
    /// # Safety
    /// `frame` is a live frame object.
    pub unsafe fn iframe_of(&self, frame: *mut PyObject) -> *mut c_void {
        match self.layout.frame_iframe {
            // SAFETY: per the contract, and the offset checked by `verified`.
            Some(at) => unsafe { *frame.byte_add(at).cast::<*mut c_void>() },
            None => frame,
        }
    }

    /// True if the layout matches this interpreter: the calling thread's current frame
    /// read through it gives what `PyFrame_GetCode` and the frame's `f_lasti` say. GIL held.
    fn verified(&self, api: &PyApi) -> bool {
        // SAFETY: GIL held (start runs from Python); the current frame is live while we
        // look; GetCode returns a new reference, released below.
        unsafe {
            let frame = (api.eval_get_frame)();
            if frame.is_null() {
                return false;
            }
            let iframe = self.iframe_of(frame);
            let code = (api.frame_get_code)(frame);
            // The slot is compared before `code` follows it to its type: a wrong offset
            // must fail the check, not read through whatever it found.
            let ok = !iframe.is_null()
                && self.code_slot(iframe) == code
                && self.code(iframe) == code
                && i64::from(self.lasti(iframe, code)) == api.attr_int(frame, c"f_lasti");
            (api.dec_ref)(code);
            ok
        }
    }
}

/// How to install a profile function on every thread of the interpreter.
enum AllThreads {
    /// 3.12+: `PyEval_SetProfileAllThreads`.
    Direct(unsafe extern "C" fn(Option<TraceFunc>, *mut PyObject)),
    /// 3.9-3.11: each thread state in turn.
    EachThread {
        current: unsafe extern "C" fn() -> *mut c_void,
        interpreter: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
        head: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
        next: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
        set_profile: unsafe extern "C" fn(*mut c_void, Option<TraceFunc>, *mut PyObject) -> c_int,
    },
}

/// The calling thread's profile function and object, as its thread state keeps them
/// (`Include/cpython/pystate.h`: `c_profilefunc`, then `c_tracefunc`, then `c_profileobj`;
/// x86-64 offsets from each version's header). `sys.setprofile`, `PyEval_SetProfile` and
/// their all-threads variants write them; CPython reads them at each event (3.9-3.11 in
/// `Python/ceval.c`, 3.12+ in `Python/legacy_tracing.c`'s callbacks), so the function can be
/// swapped for another while one is set without anything else to update. Checked at start
/// against what `PyEval_SetProfile` just set ([`crate::profiler`]).
pub struct ProfileSlot {
    /// `_PyThreadState_UncheckedGet` (3.9-3.12) / `PyThreadState_GetUnchecked` (3.13+).
    current: unsafe extern "C" fn() -> *mut c_void,
    /// `_PyEval_SetProfile(tstate, func, arg)`: `PyEval_SetProfile` for a given thread state,
    /// which returns -1 with the exception set (an audit hook refused) instead of printing it.
    pub set: unsafe extern "C" fn(*mut c_void, Option<TraceFunc>, *mut PyObject) -> c_int,
    func_at: usize,
}

impl ProfileSlot {
    fn of(minor: u8) -> Option<usize> {
        match minor {
            9 | 10 => Some(56),
            11 | 12 => Some(64),
            13 | 14 => Some(80),
            15 => Some(104),
            _ => None,
        }
    }

    /// The calling thread's state, or null when it has none.
    ///
    /// # Safety
    /// None beyond the function's own (it reads a thread-local).
    #[inline(always)]
    pub unsafe fn thread(&self) -> *mut c_void {
        // SAFETY: no preconditions.
        unsafe { (self.current)() }
    }

    /// The profile function of thread state `ts` (0: none).
    ///
    /// # Safety
    /// `ts` is a live thread state; GIL held.
    #[inline(always)]
    pub unsafe fn func(&self, ts: *mut c_void) -> usize {
        // SAFETY: per the contract; a pointer-sized field at its header's offset.
        unsafe { *ts.byte_add(self.func_at).cast::<usize>() }
    }

    /// The profile object of thread state `ts` (null: none).
    ///
    /// # Safety
    /// As for [`Self::func`].
    pub unsafe fn obj(&self, ts: *mut c_void) -> *mut PyObject {
        // SAFETY: per the contract; `c_profileobj` is two pointers after `c_profilefunc`.
        unsafe { *ts.byte_add(self.func_at + 16).cast::<*mut PyObject>() }
    }

    /// Replaces the profile function of `ts`, which has one, by `func`, keeping its object
    /// (and the reference the thread state holds to it): with a function set before and
    /// after, nothing else in the thread state (3.9-3.11's tracing flags) or the interpreter
    /// (3.12+'s count of profiled threads and monitoring events) depends on which.
    ///
    /// # Safety
    /// As for [`Self::func`], and `ts` has a profile function.
    pub unsafe fn replace_func(&self, ts: *mut c_void, func: TraceFunc) {
        // SAFETY: per the contract.
        unsafe { *ts.byte_add(self.func_at).cast::<usize>() = func as usize };
    }
}

static API: OnceLock<PyApi> = OnceLock::new();

/// Whether [`init`] succeeded (a native-only session has no Python API).
pub fn ready() -> bool {
    API.get().is_some()
}

/// The resolved API. Only valid after [`init`] succeeded.
#[inline]
pub fn api() -> &'static PyApi {
    API.get().expect("python_api::init ran before tracing started")
}

/// Why tracing cannot start.
#[derive(Debug)]
pub enum InitError {
    NotPython,
    Unsupported(u8, u8),
    /// A debug build (`Py_DEBUG`: other object and frame layouts).
    Debug(u8, u8),
    /// A free-threaded build (no GIL, other object layouts).
    FreeThreaded(u8, u8),
    Missing(&'static str),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::NotPython => write!(f, "no Python interpreter in this process"),
            InitError::Unsupported(a, b) => write!(
                f,
                "Python {a}.{b} is not supported (memlens traces CPython 3.{MIN_MINOR} to 3.{MAX_MINOR})"
            ),
            InitError::Debug(a, b) => write!(
                f,
                "Python {a}.{b} debug builds are not supported (memlens traces release builds)"
            ),
            InitError::FreeThreaded(a, b) => write!(
                f,
                "free-threaded Python {a}.{b} is not supported (memlens traces builds with the GIL)"
            ),
            InitError::Missing(name) => write!(f, "the Python runtime has no symbol {name}"),
        }
    }
}

pub(crate) fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with a NUL-terminated name on the global scope.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

/// The first of `names` the process defines, as the function pointer type `T` (its
/// documented C signature).
pub(crate) fn resolve<T: Copy>(names: &[&'static CStr]) -> Result<T, InitError> {
    for name in names {
        let p = lookup(name);
        if !p.is_null() {
            assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
            // SAFETY: T is the function pointer type of this CPython function's
            // documented C signature.
            return Ok(unsafe { std::mem::transmute_copy(&p) });
        }
    }
    Err(InitError::Missing(names[0].to_str().unwrap_or("?")))
}

/// Parses "3.11.7 (main, ...)" into (3, 11).
fn parse_version(v: &[u8]) -> Option<(u8, u8)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Resolves every function; fails on an unsupported version.
pub fn init() -> Result<&'static PyApi, InitError> {
    if let Some(a) = API.get() {
        return Ok(a);
    }
    let get_version = lookup(c"Py_GetVersion");
    if get_version.is_null() {
        return Err(InitError::NotPython);
    }
    // SAFETY: Py_GetVersion() -> const char*, static NUL-terminated string.
    let version = unsafe {
        let f: unsafe extern "C" fn() -> *const c_char = std::mem::transmute(get_version);
        CStr::from_ptr(f()).to_bytes()
    };
    let (major, minor) = parse_version(version).ok_or(InitError::NotPython)?;
    if major != 3 || !(MIN_MINOR..=MAX_MINOR).contains(&minor) {
        return Err(InitError::Unsupported(major, minor));
    }
    // "3.13.0 experimental free-threading build (main, ...)"; 3.14t: "free-threading build".
    if version.windows(14).any(|w| w == b"free-threading") {
        return Err(InitError::FreeThreaded(major, minor));
    }
    // Only reference-debugging builds (every `Py_DEBUG` build) have it.
    if !lookup(c"_Py_NegativeRefcount").is_null() {
        return Err(InitError::Debug(major, minor));
    }
    let api = PyApi {
        major,
        minor,
        mem_get_allocator: resolve(&[c"PyMem_GetAllocator"])?,
        mem_set_allocator: resolve(&[c"PyMem_SetAllocator"])?,
        eval_set_profile: resolve(&[c"PyEval_SetProfile"])?,
        frame_get_line_number: resolve(&[c"PyFrame_GetLineNumber"])?,
        frame_get_lasti: resolve(&[c"PyFrame_GetLasti"]).ok(),
        frame_get_code: resolve(&[c"PyFrame_GetCode"])?,
        frame_get_back: resolve(&[c"PyFrame_GetBack"])?,
        object_get_attr_string: resolve(&[c"PyObject_GetAttrString"])?,
        unicode_as_utf8_and_size: resolve(&[c"PyUnicode_AsUTF8AndSize"])?,
        long_as_long: resolve(&[c"PyLong_AsLong"])?,
        err_clear: resolve(&[c"PyErr_Clear"])?,
        dec_ref: resolve(&[c"Py_DecRef"])?,
        inc_ref: resolve(&[c"Py_IncRef"])?,
        request_code_extra_index: resolve(&[
            c"PyUnstable_Eval_RequestCodeExtraIndex",
            c"_PyEval_RequestCodeExtraIndex",
        ])?,
        code_get_extra: resolve(&[c"PyUnstable_Code_GetExtra", c"_PyCode_GetExtra"])?,
        code_set_extra: resolve(&[c"PyUnstable_Code_SetExtra", c"_PyCode_SetExtra"])?,
        eval_get_frame: resolve(&[c"PyEval_GetFrame"])?,
        gil_check: resolve(&[c"PyGILState_Check"])?,
        gc_disable: resolve(&[c"PyGC_Disable"]).ok(),
        gc_enable: resolve(&[c"PyGC_Enable"]).ok(),
        err_fetch: resolve(&[c"PyErr_Fetch"])?,
        err_restore: resolve(&[c"PyErr_Restore"])?,
        name_attr: if minor >= 11 { c"co_qualname" } else { c"co_name" },
        all_threads: resolve(&[c"PyEval_SetProfileAllThreads"])
            .map(AllThreads::Direct)
            .ok()
            .or_else(|| {
                Some(AllThreads::EachThread {
                    current: resolve(&[c"PyThreadState_Get"]).ok()?,
                    interpreter: resolve(&[c"PyThreadState_GetInterpreter"]).ok()?,
                    head: resolve(&[c"PyInterpreterState_ThreadHead"]).ok()?,
                    next: resolve(&[c"PyThreadState_Next"]).ok()?,
                    set_profile: resolve(&[c"_PyEval_SetProfile"]).ok()?,
                })
            }),
        profile_slot: ProfileSlot::of(minor).and_then(|func_at| {
            Some(ProfileSlot {
                current: resolve(&[c"PyThreadState_GetUnchecked", c"_PyThreadState_UncheckedGet"])
                    .ok()?,
                set: resolve(&[c"_PyEval_SetProfile"]).ok()?,
                func_at,
            })
        }),
        eval_hook: None,
        // 3.13+: the API is there since 3.13.0 (the object-destruction events some paths
        // missed before 3.13.3 are not used).
        ref_tracer: (minor >= 13)
            .then(|| {
                Some(RefTracerApi {
                    set: resolve(&[c"PyRefTracer_SetTracer"]).ok()?,
                    get: resolve(&[c"PyRefTracer_GetTracer"]).ok()?,
                    type_flags: resolve(&[c"PyType_GetFlags"]).ok()?,
                })
            })
            .flatten(),
    };
    let mut api = api;
    api.eval_hook = FrameLayout::of(minor)
        .map(|mut layout| {
            // Tests make the check fail this way (collector/tests/versions_e2e.rs).
            if std::env::var_os("MEMLENS_TEST_SKEW_FRAMES").is_some() {
                layout.code += 8;
            }
            layout
        })
        .and_then(|layout| {
            Some(EvalHook {
                get_interp: resolve(&[c"PyInterpreterState_Get"]).ok()?,
                get_eval: resolve(&[
                    c"PyUnstable_InterpreterState_GetEvalFrameFunc",
                    c"_PyInterpreterState_GetEvalFrameFunc",
                ])
                .ok()?,
                set_eval: resolve(&[
                    c"PyUnstable_InterpreterState_SetEvalFrameFunc",
                    c"_PyInterpreterState_SetEvalFrameFunc",
                ])
                .ok()?,
                default_eval: resolve(&[c"_PyEval_EvalFrameDefault"]).ok()?,
                addr2line: resolve(&[c"PyCode_Addr2Line"]).ok()?,
                code_type: lookup(c"PyCode_Type"),
                layout,
                err_set_string: resolve(&[c"PyErr_SetString"]).ok()?,
                recursion_error: {
                    let p = lookup(c"PyExc_RecursionError");
                    // SAFETY: `PyExc_RecursionError` is a `PyObject *` variable, set before
                    // any Python code runs.
                    (!p.is_null()).then(|| unsafe { *p.cast::<*mut PyObject>() })?
                },
                c_recursion: None,
                segments: None,
            })
        })
        .filter(|h| !h.code_type.is_null() && h.verified(&api))
        .map(|mut h| {
            h.c_recursion = c_recursion_at(minor);
            h.segments = (|| {
                let protection = if minor >= 14 {
                    Some(StackProtection {
                        set: resolve(&[c"PyUnstable_ThreadState_SetStackProtection"]).ok()?,
                        reset: resolve(&[c"PyUnstable_ThreadState_ResetStackProtection"]).ok()?,
                    })
                } else {
                    None
                };
                Some(Segments {
                    sys_get_object: resolve(&[c"PySys_GetObject"]).ok()?,
                    dict_get_item_string: resolve(&[c"PyDict_GetItemString"]).ok()?,
                    protection,
                    err_clear: resolve(&[c"PyErr_Clear"]).ok()?,
                })
            })();
            h
        });
    Ok(API.get_or_init(|| api))
}

/// Where the thread state keeps its C recursion counter, if this version has one whose
/// offset checks out on the calling thread. GIL held.
fn c_recursion_at(minor: u8) -> Option<usize> {
    let layout = RecursionLayout::of(minor)?;
    let current: unsafe extern "C" fn() -> *mut c_void = resolve(&[c"PyThreadState_Get"]).ok()?;
    let limit: unsafe extern "C" fn() -> c_int = resolve(&[c"Py_GetRecursionLimit"]).ok()?;
    // SAFETY: GIL held (start runs from Python), so the thread has a current state.
    let ok = unsafe { layout.verified(current(), limit()) };
    // Tests make the check fail this way (collector/tests/recursion_e2e.rs).
    let ok = ok && std::env::var_os("MEMLENS_TEST_SKEW_TSTATE").is_none();
    ok.then_some(layout.c_remaining)
}

impl PyApi {
    /// The frame-evaluation hook, where this Python has one we can use.
    pub fn eval_hook(&self) -> Option<&EvalHook> {
        self.eval_hook.as_ref()
    }

    /// Why this Python, which should have a usable frame-evaluation hook, has none (its
    /// frame layout did not check out, or an entry point is missing).
    pub fn hook_refused(&self) -> Option<String> {
        (FrameLayout::of(self.minor).is_some() && self.eval_hook.is_none()).then(|| {
            format!(
                "the frame layout of Python {}.{} did not check out: keeping stacks with the \
                 profile function (slower)",
                self.major, self.minor
            )
        })
    }

    /// The thread state's profile function slot, where this version's offsets are known.
    pub fn profile_slot(&self) -> Option<&ProfileSlot> {
        self.profile_slot.as_ref()
    }

    /// The object-creation tracer API, where this Python has it (3.13+).
    pub fn ref_tracer(&self) -> Option<&RefTracerApi> {
        self.ref_tracer.as_ref()
    }

    /// Installs `func` as the profile function of every thread of the calling thread's
    /// interpreter, including threads already running. Returns false when this Python
    /// offers no way to do it. Needs the GIL.
    pub fn set_profile_all_threads(&self, func: TraceFunc) -> bool {
        match &self.all_threads {
            // SAFETY: GIL held (caller's contract).
            Some(AllThreads::Direct(f)) => unsafe { f(Some(func), std::ptr::null_mut()) },
            Some(AllThreads::EachThread { current, interpreter, head, next, set_profile }) => {
                // SAFETY: GIL held, so the interpreter's thread list cannot change while
                // we walk it; `_PyEval_SetProfile` accepts any thread state of the
                // interpreter (it is how 3.12's all-threads variant is written).
                unsafe {
                    let mut t = head(interpreter(current()));
                    while !t.is_null() {
                        if set_profile(t, Some(func), std::ptr::null_mut()) != 0 {
                            (self.err_clear)();
                        }
                        t = next(t);
                    }
                }
            }
            None => return false,
        }
        true
    }

    /// `str(getattr(obj, attr))` as bytes copied into `out` (cleared first); an
    /// attribute error leaves `out` empty. Needs the GIL.
    pub fn attr_str(&self, obj: *mut PyObject, attr: &CStr, out: &mut Vec<u8>) {
        out.clear();
        // SAFETY: GIL held by the caller; obj is a live object; new reference
        // released below.
        unsafe {
            let v = (self.object_get_attr_string)(obj, attr.as_ptr());
            if v.is_null() {
                (self.err_clear)();
                return;
            }
            let mut n: isize = 0;
            let p = (self.unicode_as_utf8_and_size)(v, &mut n);
            if p.is_null() {
                (self.err_clear)();
            } else {
                out.extend_from_slice(std::slice::from_raw_parts(p.cast::<u8>(), n as usize));
            }
            (self.dec_ref)(v);
        }
    }

    /// `int(getattr(obj, attr))`, 0 on error. Needs the GIL.
    pub fn attr_int(&self, obj: *mut PyObject, attr: &CStr) -> i64 {
        // SAFETY: as in attr_str.
        unsafe {
            let v = (self.object_get_attr_string)(obj, attr.as_ptr());
            if v.is_null() {
                (self.err_clear)();
                return 0;
            }
            let n = (self.long_as_long)(v);
            if n == -1 {
                (self.err_clear)();
            }
            (self.dec_ref)(v);
            #[allow(clippy::useless_conversion)] // c_long is i32 on some targets
            i64::from(n)
        }
    }
}

/// The CPython functions and objects `memlens._tracer` ([`crate::pymodule`]) and the census
/// ([`crate::census`]) use: making the module, reading and making the values its functions
/// take and return, calling back into the package.
pub struct ObjectApi {
    /// `PyModule_Create2(PyModuleDef *, int)`.
    pub module_create2: unsafe extern "C" fn(*mut c_void, c_int) -> *mut PyObject,
    pub long_as_long_long: unsafe extern "C" fn(*mut PyObject) -> i64,
    pub long_from_long_long: unsafe extern "C" fn(i64) -> *mut PyObject,
    pub bytes_as_string: unsafe extern "C" fn(*mut PyObject) -> *const c_char,
    pub bytes_size: unsafe extern "C" fn(*mut PyObject) -> isize,
    pub bytes_from_string: unsafe extern "C" fn(*const c_char) -> *mut PyObject,
    /// `Py_CompileStringExFlags(source, filename, start, flags, optimize)`: a code object
    /// or null (the `SyntaxError` set).
    pub compile_string: unsafe extern "C" fn(
        *const c_char,
        *const c_char,
        c_int,
        *mut CompilerFlags,
        c_int,
    ) -> *mut PyObject,
    pub list_new: unsafe extern "C" fn(isize) -> *mut PyObject,
    pub list_size: unsafe extern "C" fn(*mut PyObject) -> isize,
    /// Borrowed reference; null (IndexError, or SystemError for a non-list) on failure.
    pub list_get_item: unsafe extern "C" fn(*mut PyObject, isize) -> *mut PyObject,
    pub list_append: unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> c_int,
    /// Borrowed reference.
    pub tuple_get_item: unsafe extern "C" fn(*mut PyObject, isize) -> *mut PyObject,
    /// `PyObject_CallFunctionObjArgs(callable, ..., NULL)`: a new reference or null.
    pub call: unsafe extern "C" fn(*mut PyObject, ...) -> *mut PyObject,
    pub err_occurred: unsafe extern "C" fn() -> *mut PyObject,
    pub err_set_string: unsafe extern "C" fn(*mut PyObject, *const c_char),
    pub err_clear: unsafe extern "C" fn(),
    pub inc_ref: unsafe extern "C" fn(*mut PyObject),
    pub dec_ref: unsafe extern "C" fn(*mut PyObject),
    /// `Py_None`.
    pub none: *mut PyObject,
    /// `PyExc_TypeError`.
    pub type_error: *mut PyObject,
    /// `PyMethodDescr_Type`: the type of a method written in C, looked up on its class.
    method_descr_type: *mut PyObject,
}

/// `PyCompilerFlags` (`Include/cpython/compile.h`, unchanged from 3.8 to 3.15).
#[repr(C)]
pub struct CompilerFlags {
    pub cf_flags: c_int,
    /// The minor version the parser accepts; read only with `PyCF_ONLY_AST`.
    pub cf_feature_version: c_int,
}

/// `PyCF_SOURCE_IS_UTF8`: what `compile()` always sets.
pub const PYCF_SOURCE_IS_UTF8: c_int = 0x0100;
/// `PyCF_IGNORE_COOKIE`: the source is UTF-8 whatever its coding declaration says (what
/// `compile()` sets for a `str`).
pub const PYCF_IGNORE_COOKIE: c_int = 0x0800;
/// `Py_file_input`: a module's statements (`compile(..., "exec")`).
pub const PY_FILE_INPUT: c_int = 257;

/// A method written in C that takes no arguments (`METH_NOARGS`), called as `f(self, NULL)`.
pub type NoArgs = unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> *mut PyObject;

/// The result of a C API call that returns a new reference, or `Err` when it returned null
/// (with its exception set).
pub fn new_ref(o: *mut PyObject) -> Result<*mut PyObject, ()> {
    if o.is_null() {
        Err(())
    } else {
        Ok(o)
    }
}

impl ObjectApi {
    /// `o`, a Python int, as an i64; `Err` with the exception set when it is not one or is
    /// too large, or when `o` is null (the failed call that gave it set one).
    ///
    /// # Safety
    /// GIL held; `o` is a live object or null.
    pub unsafe fn as_i64(&self, o: *mut PyObject) -> Result<i64, ()> {
        new_ref(o)?;
        // SAFETY: per the function contract; PyLong_AsLongLong raises TypeError for a
        // non-int and OverflowError for a too large one.
        unsafe {
            let v = (self.long_as_long_long)(o);
            if v == -1 && !(self.err_occurred)().is_null() {
                return Err(());
            }
            Ok(v)
        }
    }

    /// The contents of `o`, a `bytes` object, borrowed from it (a NUL follows them); `Err`
    /// with the exception set when it is not one, or when `o` is null.
    ///
    /// # Safety
    /// GIL held; `o` is a live object or null, kept alive while the slice is used.
    pub unsafe fn as_bytes<'a>(&self, o: *mut PyObject) -> Result<&'a [u8], ()> {
        new_ref(o)?;
        // SAFETY: per the function contract; PyBytes_AsString raises TypeError for a
        // non-bytes, and otherwise gives its buffer, of PyBytes_Size bytes.
        unsafe {
            let p = new_ref((self.bytes_as_string)(o).cast_mut().cast())?;
            Ok(std::slice::from_raw_parts(p.cast::<u8>(), (self.bytes_size)(o).max(0) as usize))
        }
    }

    /// The C function of `descr` when it is a method descriptor of a `METH_NOARGS` method
    /// (such as `list.__sizeof__`); None for any other object.
    ///
    /// Layout, the same from 3.9 to 3.15 (`Include/descrobject.h`, `methodobject.h`): a
    /// `PyMethodDescrObject` is `PyDescr_COMMON` (the object header, `d_type`, `d_name`,
    /// `d_qualname`), then `PyMethodDef *d_method`; a `PyMethodDef` is `ml_name`, `ml_meth`,
    /// `ml_flags`. The census checks each function it takes from here against a call of the
    /// descriptor itself before using it.
    ///
    /// # Safety
    /// GIL held; `descr` is a live object.
    pub unsafe fn noargs_method(&self, descr: *mut PyObject) -> Option<NoArgs> {
        const METH_NOARGS: i32 = 0x0004;
        const METH_COEXIST: i32 = 0x0040;
        // SAFETY: per the function contract, and the layouts above once the type is checked.
        unsafe {
            if type_of(descr) != self.method_descr_type {
                return None;
            }
            let def = *descr.cast::<*const *const c_void>().add(5);
            if def.is_null() || *def.cast::<i32>().add(4) & !METH_COEXIST != METH_NOARGS {
                return None;
            }
            let meth = *def.add(1);
            (!meth.is_null()).then(|| std::mem::transmute::<*const c_void, NoArgs>(meth))
        }
    }
}

// SAFETY: the three object pointers are CPython's static None, TypeError and method
// descriptor type, which live as long as the interpreter and are only used with the GIL held.
unsafe impl Send for ObjectApi {}
// SAFETY: as for Send: nothing in `ObjectApi` is written after it is made.
unsafe impl Sync for ObjectApi {}

static OBJECT_API: OnceLock<Option<ObjectApi>> = OnceLock::new();

/// [`ObjectApi`], resolved at the first call (the import of `memlens._tracer`); `None` if
/// this process's Python lacks one of its symbols (none of 3.9-3.15 does).
pub fn object_api() -> Option<&'static ObjectApi> {
    OBJECT_API
        .get_or_init(|| {
            let type_error = lookup(c"PyExc_TypeError");
            let none = lookup(c"_Py_NoneStruct");
            let method_descr_type = lookup(c"PyMethodDescr_Type");
            if type_error.is_null() || none.is_null() || method_descr_type.is_null() {
                return None;
            }
            Some(ObjectApi {
                module_create2: resolve(&[c"PyModule_Create2"]).ok()?,
                long_as_long_long: resolve(&[c"PyLong_AsLongLong"]).ok()?,
                long_from_long_long: resolve(&[c"PyLong_FromLongLong"]).ok()?,
                bytes_as_string: resolve(&[c"PyBytes_AsString"]).ok()?,
                bytes_size: resolve(&[c"PyBytes_Size"]).ok()?,
                bytes_from_string: resolve(&[c"PyBytes_FromString"]).ok()?,
                compile_string: resolve(&[c"Py_CompileStringExFlags"]).ok()?,
                list_new: resolve(&[c"PyList_New"]).ok()?,
                list_size: resolve(&[c"PyList_Size"]).ok()?,
                list_get_item: resolve(&[c"PyList_GetItem"]).ok()?,
                list_append: resolve(&[c"PyList_Append"]).ok()?,
                tuple_get_item: resolve(&[c"PyTuple_GetItem"]).ok()?,
                call: resolve(&[c"PyObject_CallFunctionObjArgs"]).ok()?,
                err_occurred: resolve(&[c"PyErr_Occurred"]).ok()?,
                err_set_string: resolve(&[c"PyErr_SetString"]).ok()?,
                err_clear: resolve(&[c"PyErr_Clear"]).ok()?,
                inc_ref: resolve(&[c"Py_IncRef"]).ok()?,
                dec_ref: resolve(&[c"Py_DecRef"]).ok()?,
                none,
                // SAFETY: `PyExc_TypeError` is a `PyObject *` variable, set before any
                // module is imported.
                type_error: unsafe { *type_error.cast::<*mut PyObject>() },
                method_descr_type,
            })
        })
        .as_ref()
}

/// The type of `o` (`Py_TYPE`: the second word of every object's header, in every supported
/// version with the GIL).
///
/// # Safety
/// `o` is a live object.
pub unsafe fn type_of(o: *mut PyObject) -> *mut PyObject {
    // SAFETY: per the function contract; `ob_type` follows the reference count.
    unsafe { *o.cast::<*mut PyObject>().add(1) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_versions() {
        assert_eq!(super::parse_version(b"3.11.7 (main, Jan 1 2024)"), Some((3, 11)));
        assert_eq!(super::parse_version(b"3.9.0+"), Some((3, 9)));
        assert_eq!(super::parse_version(b"garbage"), None);
    }
}
