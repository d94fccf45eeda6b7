//! `memlens._tracer`: the library's C API (lib.rs) as an extension module, which is how the
//! `memlens` package drives the tracer.
//!
//! Layer: beside the C API, whose functions it calls; below it, it imports only
//! [`crate::census`] and [`crate::python_api`].
//!
//! The package used to open the library with `ctypes.PyDLL`. Importing ctypes (with libffi
//! and struct) cost every traced process about 2.3 ms at start, before the program ran, and
//! a followed tree pays it once per Python. The library is already in the process
//! (`LD_PRELOAD`), or is loaded by path (`memlens.record()`), so the package loads it as
//! an extension module instead (`_imp.create_dynamic`, which calls [`PyInit__tracer`]).
//!
//! Each function keeps the C function's name and arguments (ints, `bytes` for strings, a
//! frame object), so the package calls them as it called the ctypes functions;
//! they run with the GIL held, which the C API requires. Like the rest of the library, the
//! module has no undefined Python symbols: what it calls is looked up when it is imported.
//!
//! Six functions exist only here: for the census, `memlens_census_objects` (its
//! per-object work, [`crate::census`], which sends each type's records itself) and the
//! layout reads of `_layout.py`, `memlens_read_ptr(address)` and
//! `memlens_read_byte(address)`; `memlens_greenlet_trace(event, args)`, a trace
//! function for `greenlet.settrace` (`_greenlets.py`); and `memlens_setprofile(function)`,
//! `sys.setprofile` as the profile stack mode wraps it, with `memlens_wrap_setprofile`,
//! which is given the interpreter's own.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::python_api::{
    new_ref, object_api as api, CompilerFlags, ObjectApi as Api, PyObject, PYCF_IGNORE_COOKIE,
    PYCF_SOURCE_IS_UTF8, PY_FILE_INPUT,
};

/// `PYTHON_API_VERSION`, unchanged since 3.2 (`Include/modsupport.h`).
const PYTHON_API_VERSION: c_int = 1013;
/// `METH_FASTCALL` (`Include/methodobject.h`): the arguments come as an array.
const METH_FASTCALL: c_int = 0x0080;

type FastCall = unsafe extern "C" fn(*mut PyObject, *const *mut PyObject, isize) -> *mut PyObject;

/// `PyMethodDef`.
#[repr(C)]
struct MethodDef {
    name: *const c_char,
    meth: Option<FastCall>,
    flags: c_int,
    doc: *const c_char,
}

/// `PyModuleDef` with its `PyModuleDef_Base` head (`Include/moduleobject.h`), unchanged
/// from 3.5 to 3.13.
#[repr(C)]
struct ModuleDef {
    ob_refcnt: isize,
    ob_type: *mut c_void,
    m_init: *mut c_void,
    m_index: isize,
    m_copy: *mut c_void,
    name: *const c_char,
    doc: *const c_char,
    size: isize,
    methods: *mut MethodDef,
    slots: *mut c_void,
    traverse: *mut c_void,
    clear: *mut c_void,
    free: *mut c_void,
}

/// A call's arguments. `Err(())`: a Python exception is set.
struct Args<'a> {
    api: &'a Api,
    args: &'a [*mut PyObject],
}

impl Args<'_> {
    fn int(&self, i: usize) -> Result<i64, ()> {
        // SAFETY: a live object of the call (GIL held).
        unsafe { self.api.as_i64(self.args[i]) }
    }

    /// A `bytes` argument's NUL-terminated buffer (valid during the call), or null for None.
    fn text(&self, i: usize) -> Result<*const c_char, ()> {
        let o = self.args[i];
        if o == self.api.none {
            return Ok(std::ptr::null());
        }
        // SAFETY: a live object of the call, alive during it.
        unsafe { self.api.as_bytes(o) }.map(|b| b.as_ptr().cast())
    }

    /// An object argument as is (borrowed for the call).
    fn object(&self, i: usize) -> *mut c_void {
        self.args[i]
    }

    fn none(&self) -> Result<*mut PyObject, ()> {
        // SAFETY: GIL held; None is returned as a new reference.
        unsafe { (self.api.inc_ref)(self.api.none) };
        Ok(self.api.none)
    }

    fn long(&self, v: i64) -> Result<*mut PyObject, ()> {
        // SAFETY: GIL held.
        new_ref(unsafe { (self.api.long_from_long_long)(v) })
    }
}

/// Defines a module function taking `$n` arguments, run by `$body` with them as `$a`.
macro_rules! function {
    ($name:ident, $n:expr, |$a:ident| $body:expr) => {
        unsafe extern "C" fn $name(
            _module: *mut PyObject,
            args: *const *mut PyObject,
            nargs: isize,
        ) -> *mut PyObject {
            let Some(api) = api() else { return null_mut() };
            if nargs != $n {
                let msg = concat!(stringify!($name), "() takes ", stringify!($n), " argument(s)\0");
                // SAFETY: GIL held; a static NUL-terminated message.
                unsafe { (api.err_set_string)(api.type_error, msg.as_ptr().cast()) };
                return null_mut();
            }
            fn body($a: &Args<'_>) -> Result<*mut PyObject, ()> {
                $body
            }
            // SAFETY: CPython passes `nargs` live arguments.
            let args = unsafe { std::slice::from_raw_parts(args, $n) };
            body(&Args { api, args }).unwrap_or(null_mut())
        }
    };
}

// The C API's arguments are narrower than Python's ints: `as` keeps their low bits, as
// ctypes did.
function!(memlens_start, 2, |a| {
    let rc = crate::memlens_start(a.int(0)? as c_int, a.int(1)? as c_int);
    a.long(rc.into())
});
function!(memlens_start_in, 4, |a| {
    let (fd, native, frame, name) = (a.int(0)?, a.int(1)?, a.object(2), a.text(3)?);
    // SAFETY: the package passes the calling thread's live frame and a bytes name.
    let rc = unsafe { crate::memlens_start_in(fd as c_int, native as c_int, frame, name) };
    a.long(rc.into())
});
function!(memlens_set_sample, 1, |a| {
    crate::memlens_set_sample(a.int(0)? as u64);
    a.none()
});
function!(memlens_set_native_stacks, 1, |a| {
    crate::memlens_set_native_stacks(a.int(0)? as c_int);
    a.none()
});
function!(memlens_watch_end, 1, |a| a.long(crate::memlens_watch_end(a.int(0)? as c_int).into()));
function!(memlens_name_thread, 2, |a| {
    // SAFETY: `text` gives a NUL-terminated buffer or null.
    unsafe { crate::memlens_name_thread(a.int(0)? as u64, a.text(1)?) };
    a.none()
});
function!(memlens_release_thread, 0, |a| {
    crate::memlens_release_thread();
    a.none()
});
function!(memlens_last_error, 0, |a| {
    // SAFETY: GIL held; the C API returns a NUL-terminated string of this thread.
    new_ref(unsafe { (a.api.bytes_from_string)(crate::memlens_last_error()) })
});
function!(memlens_unhook, 0, |a| a.long(crate::memlens_unhook().into()));
function!(memlens_stop, 0, |a| {
    crate::memlens_stop();
    a.none()
});
function!(memlens_thread_start, 2, |a| {
    // SAFETY: the package passes the new thread's live frame and a bytes name.
    unsafe { crate::memlens_thread_start(a.object(0), a.text(1)?) };
    a.none()
});
function!(memlens_mark, 1, |a| {
    // SAFETY: `text` gives a NUL-terminated buffer or null.
    unsafe { crate::memlens_mark(a.text(0)?) };
    a.none()
});
function!(memlens_span, 2, |a| {
    // SAFETY: as above.
    unsafe { crate::memlens_span(a.int(0)? as c_int, a.text(1)?) };
    a.none()
});
function!(memlens_gc, 4, |a| {
    crate::memlens_gc(a.int(0)? as c_int, a.int(1)? as u64, a.int(2)? as u64, a.int(3)? as u64);
    a.none()
});
function!(memlens_stack_switched, 1, |a| {
    crate::memlens_stack_switched(a.int(0)? as c_int);
    a.none()
});
// Exists only here: `greenlet.settrace`'s trace function itself, `(event, (origin, target))`,
// when the program has none of its own (no Python frame to leave out, nor to run).
function!(memlens_greenlet_trace, 2, |a| {
    crate::memlens_stack_switched(0);
    a.none()
});
/// The interpreter's own `sys.setprofile`, which [`memlens_setprofile`] calls (a reference
/// kept for the process's life), once `memlens_wrap_setprofile` was given it.
static SYS_SETPROFILE: AtomicPtr<PyObject> = AtomicPtr::new(null_mut());

function!(memlens_wrap_setprofile, 1, |a| {
    let real = a.object(0);
    // SAFETY: GIL held; the reference taken is kept (or released, if one is kept already).
    unsafe { (a.api.inc_ref)(real) };
    if SYS_SETPROFILE
        .compare_exchange(null_mut(), real, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // SAFETY: as above.
        unsafe { (a.api.dec_ref)(real) };
    }
    a.none()
});
// `sys.setprofile(function)` in the profile stack mode: the interpreter's own sets the thread's
// profile function, then memlens's goes back in front of it (or alone, for None), so the
// program's profiler gets its events after memlens's bookkeeping (see profiler.rs).
function!(memlens_setprofile, 1, |a| {
    let real = SYS_SETPROFILE.load(Ordering::Acquire);
    if real.is_null() {
        // SAFETY: GIL held; a static NUL-terminated message.
        unsafe {
            (a.api.err_set_string)(a.api.type_error, c"sys.setprofile is not wrapped".as_ptr())
        };
        return Err(());
    }
    // Whether the thread had a profile function of the program's before this one.
    let had = crate::profiler::program_profiling();
    // SAFETY: GIL held; a call of a live callable with one live argument, NULL-terminated;
    // the result is a new reference (or null with the exception set), released below.
    let result = unsafe { (a.api.call)(real, a.object(0), null_mut::<PyObject>()) };
    crate::profiler::program_set_profile(had);
    // SAFETY: as above.
    unsafe { (a.api.dec_ref)(new_ref(result)?) };
    a.none()
});
function!(memlens_forget_stacks, 0, |a| {
    crate::memlens_forget_stacks();
    a.none()
});
function!(memlens_stack_mode, 0, |a| a.long(crate::memlens_stack_mode().into()));
function!(memlens_active, 0, |a| a.long(crate::memlens_active().into()));
function!(memlens_pause, 1, |a| {
    crate::memlens_pause(a.int(0)? as c_int);
    a.none()
});
function!(memlens_census_begin, 3, |a| {
    let (trigger, label, every) = (a.int(0)? as c_int, a.text(1)?, a.int(2)? as u32);
    // SAFETY: `text` gives a NUL-terminated buffer or null.
    unsafe { crate::memlens_census_begin(trigger, label, every) };
    a.none()
});
function!(memlens_census_cache, 7, |a| {
    let counts = (a.int(0)? as u64, a.int(1)?, a.int(2)? as u64, a.int(3)? as u64);
    let (bytes, module, qualname) = (a.int(4)? as u64, a.text(5)?, a.text(6)?);
    // SAFETY: `text` gives NUL-terminated buffers or null.
    unsafe {
        crate::memlens_census_cache(counts.0, counts.1, counts.2, counts.3, bytes, module, qualname)
    };
    a.none()
});
function!(memlens_census_end, 3, |a| {
    crate::memlens_census_end(a.int(0)? as u64, a.int(1)? as u64, a.int(2)? as u32);
    a.none()
});
function!(memlens_census_objects, 5, |a| {
    let (objects, every) = (a.object(0), a.int(1)?.max(1) as usize);
    let (describe, attributes, wanted) = (a.object(2), a.object(3), a.object(4));
    // SAFETY: the census passes gc.get_objects()'s list with the collector held off, its
    // two functions, and a type (see census.rs).
    unsafe { crate::census::count_objects(a.api, objects, every, describe, attributes, wanted) }
});
// `compile(source, filename, "exec", dont_inherit=True)` without `compile()`'s first-call
// cost (see `_bootstrap._compile`). `from_str`: the source is a `str` encoded in UTF-8;
// `minor`: the interpreter's minor version (read by the parser only when it makes an AST).
function!(memlens_compile, 4, |a| {
    let (source, filename, from_str) = (a.text(0)?, a.text(1)?, a.int(2)? != 0);
    if source.is_null() || filename.is_null() {
        // SAFETY: GIL held; a static NUL-terminated message.
        unsafe { (a.api.err_set_string)(a.api.type_error, c"expected bytes".as_ptr()) };
        return Err(());
    }
    let cf_flags = PYCF_SOURCE_IS_UTF8 | if from_str { PYCF_IGNORE_COOKIE } else { 0 };
    let mut flags = CompilerFlags { cf_flags, cf_feature_version: a.int(3)? as c_int };
    // SAFETY: GIL held; NUL-terminated buffers alive during the call (the package passes no
    // source holding a NUL, which would end it early); optimize -1 is the interpreter's.
    new_ref(unsafe { (a.api.compile_string)(source, filename, PY_FILE_INPUT, &mut flags, -1) })
});
function!(memlens_read_ptr, 1, |a| {
    // SAFETY: the census reads only words of live objects' headers (`_layout.py`), with
    // the objects held alive by the caller.
    a.long(unsafe { (a.int(0)? as usize as *const usize).read_unaligned() } as i64)
});
function!(memlens_read_byte, 1, |a| {
    // SAFETY: as above: the byte before a live object's values array.
    a.long(unsafe { (a.int(0)? as usize as *const u8).read() }.into())
});

/// Called by `_imp.create_dynamic` (the package's `_load`), once per process.
#[no_mangle]
pub extern "C" fn PyInit__tracer() -> *mut PyObject {
    let Some(api) = api() else { return null_mut() };
    macro_rules! table {
        ($($f:ident),*) => {
            vec![
                $(MethodDef {
                    name: concat!(stringify!($f), "\0").as_ptr().cast(),
                    meth: Some($f),
                    flags: METH_FASTCALL,
                    doc: std::ptr::null(),
                },)*
                MethodDef { name: std::ptr::null(), meth: None, flags: 0, doc: std::ptr::null() },
            ]
        };
    }
    let methods = table!(
        memlens_start,
        memlens_start_in,
        memlens_set_sample,
        memlens_set_native_stacks,
        memlens_watch_end,
        memlens_name_thread,
        memlens_release_thread,
        memlens_last_error,
        memlens_unhook,
        memlens_stop,
        memlens_thread_start,
        memlens_mark,
        memlens_span,
        memlens_gc,
        memlens_stack_mode,
        memlens_stack_switched,
        memlens_greenlet_trace,
        memlens_forget_stacks,
        memlens_wrap_setprofile,
        memlens_setprofile,
        memlens_active,
        memlens_pause,
        memlens_census_begin,
        memlens_census_cache,
        memlens_census_end,
        memlens_census_objects,
        memlens_compile,
        memlens_read_ptr,
        memlens_read_byte
    );
    // The definition must outlive the module: CPython keeps pointers to it. Leaked once
    // per process (CPython keeps the module it made and does not call this again).
    let def = Box::leak(Box::new(ModuleDef {
        // Never freed: a reference count no decrement reaches 0 from.
        ob_refcnt: 1 << 30,
        ob_type: null_mut(),
        m_init: null_mut(),
        m_index: 0,
        m_copy: null_mut(),
        name: c"memlens._tracer".as_ptr(),
        doc: c"The memlens tracer's entry points (see memlens/__init__.py).".as_ptr(),
        size: -1,
        methods: Box::leak(methods.into_boxed_slice()).as_mut_ptr(),
        slots: null_mut(),
        traverse: null_mut(),
        clear: null_mut(),
        free: null_mut(),
    }));
    // SAFETY: GIL held (an import); `def` is a valid, leaked module definition.
    unsafe { (api.module_create2)((def as *mut ModuleDef).cast(), PYTHON_API_VERSION) }
}
