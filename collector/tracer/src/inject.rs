//! `memlens attach PID`: Python code run in a process that was not started by memlens.
//!
//! Layer: beside the layers, called only from the C API; imports [`crate::python_api`] alone.
//!
//! A debugger (lldb, driven by `memlens attach`) stops the process at the entry of one of
//! CPython's allocator functions (no lock of libc's or of Python's is held there), loads
//! this library with `dlopen` and calls [`run_on_new_thread`] through `memlens_inject`.
//! That starts a thread which takes the GIL the way any Python thread does
//! (`PyGILState_Ensure`), so the code runs at a point where the interpreter hands the GIL
//! over, never in the middle of whatever the stopped thread was doing, and lldb can detach
//! right away.

use std::ffi::{c_char, c_int, c_void, CString};

use crate::python_api::resolve;

type Ensure = unsafe extern "C-unwind" fn() -> c_int;
type Release = unsafe extern "C" fn(c_int);
type RunString = unsafe extern "C-unwind" fn(*const c_char) -> c_int;

/// The three CPython functions the thread needs, found in the process's global scope.
struct Api {
    ensure: Ensure,
    release: Release,
    run: RunString,
}

impl Api {
    /// Each function's C signature is stable since 3.0: the types above.
    fn find() -> Option<Api> {
        Some(Api {
            ensure: resolve(&[c"PyGILState_Ensure"]).ok()?,
            release: resolve(&[c"PyGILState_Release"]).ok()?,
            run: resolve(&[c"PyRun_SimpleString"]).ok()?,
        })
    }
}

/// What the new thread needs: the API and the code (owned: freed by the thread).
struct Job {
    api: Api,
    code: *mut c_char,
}

/// Runs `code` (Python source) on a new thread holding the GIL. Returns false when this is
/// not a Python process or no thread could be started.
///
/// A plain pthread, not a Rust thread: an interpreter that is finalizing ends threads that
/// ask it for the GIL with `pthread_exit`, whose forced unwinding must pass through the
/// thread's frames (a Rust thread catches it and aborts the process).
pub fn run_on_new_thread(code: &[u8]) -> bool {
    let (Some(api), Ok(code)) = (Api::find(), CString::new(code)) else { return false };
    let job = Box::into_raw(Box::new(Job { api, code: code.into_raw() }));
    let mut thread: libc::pthread_t = 0;
    type Start = extern "C" fn(*mut c_void) -> *mut c_void;
    // SAFETY: `run_job` has pthread's start routine signature; "C-unwind" and "C" are the
    // same calling convention (the former lets a forced unwind through). `job` is a valid,
    // owned pointer handed to the thread (or taken back below if the thread did not start).
    let rc = unsafe {
        let start =
            std::mem::transmute::<extern "C-unwind" fn(*mut c_void) -> *mut c_void, Start>(run_job);
        libc::pthread_create(&mut thread, std::ptr::null(), start, job.cast::<c_void>())
    };
    if rc != 0 {
        // SAFETY: the thread did not start, so `job` and its string are still ours.
        unsafe {
            let job = Box::from_raw(job);
            drop(CString::from_raw(job.code));
        }
        return false;
    }
    // SAFETY: `thread` was just created; nobody joins it.
    unsafe { libc::pthread_detach(thread) };
    true
}

/// The thread: take the GIL, run the code, give the GIL back. No value with a destructor is
/// alive across the Python calls (see [`run_on_new_thread`]).
extern "C-unwind" fn run_job(job: *mut c_void) -> *mut c_void {
    // SAFETY: `job` is the Box handed over by run_on_new_thread, read once here.
    let Job { api, code } = *unsafe { Box::from_raw(job.cast::<Job>()) };
    // SAFETY: PyGILState_Ensure may be called by any thread of an initialized interpreter (a
    // process that has PyRun_SimpleString is one: lldb stopped it running); PyRun_SimpleString
    // runs with the GIL held and a NUL-terminated string; the state Ensure returned goes back
    // to Release on the same thread. The string is freed after the last use.
    unsafe {
        let state = (api.ensure)();
        (api.run)(code);
        (api.release)(state);
        drop(CString::from_raw(code));
    }
    std::ptr::null_mut()
}
