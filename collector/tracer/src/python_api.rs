//! Everything the tracer knows about CPython, in one place.
//!
//! The library is LD_PRELOADed into every process the traced program starts, Python
//! or not, so it must have no undefined Python symbols: each function is looked up
//! with `dlsym(RTLD_DEFAULT, ...)` when tracing starts, which finds them in
//! `libpython3.X.so` or in a statically linked `python3` alike.
//!
//! Version differences handled here (3.9 to 3.13; 3.11 is the tested one):
//! - `co_qualname` exists from 3.11; before, `co_name` is the best name available.
//! - 3.12 renamed `_PyCode_GetExtra`/`_PyCode_SetExtra`/`_PyEval_RequestCodeExtraIndex`
//!   to `PyUnstable_*`; we try the new names first, then the old ones.
//! - `PyMemAllocatorEx` and the profile-function protocol are unchanged since 3.5.
//! - Profiling threads that are already running: 3.12 has `PyEval_SetProfileAllThreads`;
//!   3.9 to 3.11 export `_PyEval_SetProfile(tstate, ...)`, applied to each thread state of
//!   the interpreter (which is what 3.12's function does).
//! - 3.11 only: the frame-evaluation hook (PEP 523) and the layout of its interpreter
//!   frames ([`EvalHook`]), checked against the public frame API before use; other
//!   versions keep shadow stacks with the profile function.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

pub type PyObject = c_void;

/// Oldest and newest supported minor versions of Python 3.
pub const MIN_MINOR: u8 = 9;
pub const MAX_MINOR: u8 = 13;

/// `Py_tracefunc`.
pub type TraceFunc = extern "C" fn(*mut PyObject, *mut PyObject, c_int, *mut PyObject) -> c_int;

/// `PyTrace_CALL` / `PyTrace_RETURN` (Include/cpython/pystate.h).
pub const PYTRACE_CALL: c_int = 0;
pub const PYTRACE_RETURN: c_int = 3;

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
    eval_hook: Option<EvalHook>,
}

/// `_PyFrameEvalFunction`: (thread state, interpreter frame, throw flag) -> result.
pub type EvalFunc = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> *mut PyObject;

/// The frame-evaluation hook of 3.11 (PEP 523) and what reading its frames needs.
///
/// CPython calls the interpreter's frame-evaluation function for every Python frame it
/// runs (once such a function is set, it stops inlining Python-to-Python calls), with an
/// `_PyInterpreterFrame`. Wrapping it keeps a shadow stack at the cost of one C call per
/// Python call, where a profile function makes the interpreter check for tracing at every
/// bytecode instruction and calls it at every builtin call too (measured in
/// bench/stack_modes.py).
pub struct EvalHook {
    pub get_interp: unsafe extern "C" fn() -> *mut c_void,
    pub get_eval: unsafe extern "C" fn(*mut c_void) -> Option<EvalFunc>,
    pub set_eval: unsafe extern "C" fn(*mut c_void, Option<EvalFunc>),
    pub default_eval: EvalFunc,
    pub addr2line: unsafe extern "C" fn(*mut PyObject, c_int) -> c_int,
    /// `_PyInterpreterFrame.f_code` (3.11: after f_func, f_globals, f_builtins, f_locals).
    iframe_code: usize,
    /// `_PyInterpreterFrame.prev_instr` (after frame_obj and previous).
    iframe_prev_instr: usize,
    /// `PyCodeObject.co_code_adaptive`, where instruction offsets count from.
    code_units: usize,
    /// `PyFrameObject.f_frame` (after the object header and f_back).
    frame_iframe: usize,
}

impl EvalHook {
    const LAYOUT_311: (usize, usize, usize, usize) = (32, 56, 184, 24);

    /// The code object an interpreter frame runs (borrowed: the frame holds it).
    ///
    /// # Safety
    /// `iframe` is a live interpreter frame.
    #[inline]
    pub unsafe fn code(&self, iframe: *mut c_void) -> *mut PyObject {
        // SAFETY: per the contract, and the offset checked by `verified`.
        unsafe { *iframe.byte_add(self.iframe_code).cast::<*mut PyObject>() }
    }

    /// The byte offset of the instruction `iframe` is executing in `code`.
    ///
    /// # Safety
    /// `iframe` is a live interpreter frame running `code`.
    #[inline]
    pub unsafe fn lasti(&self, iframe: *mut c_void, code: *mut PyObject) -> c_int {
        // SAFETY: per the contract, and the offsets checked by `verified`.
        unsafe {
            let prev = *iframe.byte_add(self.iframe_prev_instr).cast::<*const u8>();
            let first = code.byte_add(self.code_units).cast::<u8>();
            (prev.offset_from(first) as c_int) & !1
        }
    }

    /// The interpreter frame of a frame object.
    ///
    /// # Safety
    /// `frame` is a live frame object.
    unsafe fn iframe_of(&self, frame: *mut PyObject) -> *mut c_void {
        // SAFETY: per the contract, and the offset checked by `verified`.
        unsafe { *frame.byte_add(self.frame_iframe).cast::<*mut c_void>() }
    }

    /// True if the layout matches this interpreter: the calling thread's current frame
    /// read through it gives what `PyFrame_GetCode` and `PyFrame_GetLasti` say. GIL held.
    fn verified(&self, api: &PyApi) -> bool {
        let Some(get_lasti) = api.frame_get_lasti else { return false };
        // SAFETY: GIL held (start runs from Python); the current frame is live while we
        // look; GetCode returns a new reference, released below.
        unsafe {
            let frame = (api.eval_get_frame)();
            if frame.is_null() {
                return false;
            }
            let iframe = self.iframe_of(frame);
            let code = (api.frame_get_code)(frame);
            let ok = !iframe.is_null()
                && self.code(iframe) == code
                && self.lasti(iframe, code) == get_lasti(frame);
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

static API: OnceLock<PyApi> = OnceLock::new();

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
    Missing(&'static str),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::NotPython => write!(f, "no Python interpreter in this process"),
            InitError::Unsupported(a, b) => write!(
                f,
                "Python {a}.{b} is not supported (supported: 3.{MIN_MINOR} to 3.{MAX_MINOR})"
            ),
            InitError::Missing(name) => write!(f, "the Python runtime has no symbol {name}"),
        }
    }
}

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with a NUL-terminated name on the global scope.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn resolve<T: Copy>(names: &[&'static CStr]) -> Result<T, InitError> {
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
        eval_hook: None,
    };
    let mut api = api;
    if minor == 11 {
        let (iframe_code, iframe_prev_instr, code_units, frame_iframe) = EvalHook::LAYOUT_311;
        let hook = (|| {
            Some(EvalHook {
                get_interp: resolve(&[c"PyInterpreterState_Get"]).ok()?,
                get_eval: resolve(&[c"_PyInterpreterState_GetEvalFrameFunc"]).ok()?,
                set_eval: resolve(&[c"_PyInterpreterState_SetEvalFrameFunc"]).ok()?,
                default_eval: resolve(&[c"_PyEval_EvalFrameDefault"]).ok()?,
                addr2line: resolve(&[c"PyCode_Addr2Line"]).ok()?,
                iframe_code,
                iframe_prev_instr,
                code_units,
                frame_iframe,
            })
        })();
        api.eval_hook = hook.filter(|h| h.verified(&api));
    }
    Ok(API.get_or_init(|| api))
}

impl PyApi {
    /// The frame-evaluation hook, where this Python has one we can use.
    pub fn eval_hook(&self) -> Option<&EvalHook> {
        self.eval_hook.as_ref()
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

#[cfg(test)]
mod tests {
    #[test]
    fn parses_versions() {
        assert_eq!(super::parse_version(b"3.11.7 (main, Jan 1 2024)"), Some((3, 11)));
        assert_eq!(super::parse_version(b"3.9.0+"), Some((3, 9)));
        assert_eq!(super::parse_version(b"garbage"), None);
    }
}
