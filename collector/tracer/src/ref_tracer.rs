//! Objects re-created from CPython's free lists, charged to the code that re-created them
//! (3.13+, through `PyRefTracer`).
//!
//! Layer: the hooks layer; it writes through the thread's state and [`crate::stacks`], and
//! the session layer ([`crate::session`]) installs it.
//!
//! CPython keeps dead tuples, lists, dicts, floats (and a few more) on free lists and
//! makes new objects of the same type in them without calling an allocator. An
//! allocator-level tracer then charges such an object to whichever code first allocated
//! that memory: a cache of small tuples built by one function shows up as memory "left at
//! exit" by an unrelated function that built short-lived tuples earlier.
//!
//! 3.13's reference tracer is called with every object created (`_Py_NewReference`, which
//! free-listed objects go through too). An object created in the block this thread
//! allocated last is a fresh one, already recorded with its allocation: nothing to do, at
//! the cost of a compare. Any other is a re-creation: its block is found from the object
//! (before it, the GC header and the managed-dict/weakref pre-header its type has) and a
//! [`Record::Recreate`] charges it to the thread's current stack. The recorder turns that
//! into a "re-created object" event when the block is live and charged elsewhere (see
//! shared/FORMAT.md). Destruction events are not used.
//!
//! The tracer is installed for a session only when no other one is (`tracemalloc` uses the
//! same slot since 3.13, and there is one slot); if another tool replaces it during the
//! session, re-creations are simply no longer seen.

use std::ffi::{c_int, c_ulong, c_void};

use memlens_wire::Record;

use crate::guard::{self, Ctx, Guard};
use crate::python_api::{api, PyApi, PyObject, RefTracer, REFTRACER_CREATE};
use crate::recording;
use crate::stacks;
use crate::thread_state::with_state_in;

/// `Py_TPFLAGS_HAVE_GC`: instances have a `PyGC_Head` (two pointers) before them.
const HAVE_GC: c_ulong = 1 << 14;
/// `Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF` (`Py_TPFLAGS_PREHEADER`, 3.12+):
/// two more pointers before the GC header.
const PREHEADER: c_ulong = (1 << 4) | (1 << 3);
const PTR: usize = std::mem::size_of::<usize>();

/// Installs the tracer, unless this Python has none or another tool holds the slot (ours,
/// left from an earlier session, is fine). Needs the GIL.
pub fn install(api: &PyApi) {
    let Some(rt) = api.ref_tracer() else { return };
    let mut data = std::ptr::null_mut();
    // SAFETY: GIL held (tracing starts from a Python call); Get only reads the slot.
    let current = unsafe { (rt.get)(&mut data) };
    if current.is_none() {
        // SAFETY: GIL held; `on_object` has PyRefTracer's signature and lives as long as
        // the process.
        unsafe { (rt.set)(Some(on_object), std::ptr::null_mut()) };
    }
}

/// Removes the tracer if it is still ours (the end of a `memlens.record()` block: the
/// program runs on without a call at every object's creation). Needs the GIL.
pub fn uninstall() {
    let Some(rt) = api().ref_tracer() else { return };
    let mut data = std::ptr::null_mut();
    // SAFETY: GIL held (caller's contract).
    unsafe {
        let ours: RefTracer = on_object;
        if (rt.get)(&mut data).map(|f| f as usize) == Some(ours as usize) {
            (rt.set)(None, std::ptr::null_mut());
        }
    }
}

/// The start of the block an object was allocated in: the object minus its type's
/// pre-header (`_PyType_PreHeaderSize`, `Include/internal/pycore_object.h`). GIL held.
///
/// # Safety
/// `op` is an object being created, its type set (`_Py_NewReference`'s precondition).
unsafe fn block_of(op: *mut PyObject) -> usize {
    // SAFETY: per the contract; `ob_type` follows `ob_refcnt` in `PyObject` (GIL builds,
    // which are the only ones we trace).
    let tp = unsafe { *op.byte_add(PTR).cast::<*mut PyObject>() };
    if tp.is_null() {
        return op as usize;
    }
    // SAFETY: `tp` is the object's type, alive while the object is.
    let flags = unsafe { (api().ref_tracer().expect("installed").type_flags)(tp) };
    let gc = if flags & HAVE_GC != 0 { 2 * PTR } else { 0 };
    let pre = if flags & PREHEADER != 0 { 2 * PTR } else { 0 };
    op as usize - gc - pre
}

/// Under sampling, whether the object may lie in a sampled block: only those are in the
/// recording to be moved. Asked before the block is worked out (a call into CPython for
/// the type's flags), for each place the block can start (no pre-header, the GC header,
/// both), so that objects in unsampled blocks, nearly all of them, cost three lookups.
#[inline]
fn maybe_sampled(op: usize) -> bool {
    crate::sampling::mean() == 0
        || [0, 2 * PTR, 4 * PTR].iter().any(|&d| crate::sampled_set::contains(op.wrapping_sub(d)))
}

/// The `PyRefTracer`: sends a re-creation for each object created outside the block its
/// thread allocated last. CPython calls it at every object's creation and destruction. The
/// common case, an object created in the block just allocated for it, is a compare of
/// thread-locals ([`crate::guard::Tls::take_fresh`]); destructions, and objects created
/// while a hook of ours runs, return at once.
unsafe extern "C" fn on_object(op: *mut PyObject, event: c_int, _data: *mut c_void) -> c_int {
    if event == REFTRACER_CREATE {
        let tls = guard::tls();
        if tls.outside_hooks() && !tls.take_fresh(op as usize) && recording::active() {
            // SAFETY: CPython calls us with the object it is creating, its type set.
            unsafe { on_create(op) };
        }
    }
    0
}

/// [`on_object`] for an object created outside the block allocated last, while recording.
///
/// # Safety
/// `op` is an object being created, its type set.
#[inline(never)]
unsafe fn on_create(op: *mut PyObject) {
    let g = Guard::enter(Ctx::Tracer);
    if !maybe_sampled(op as usize) {
        return;
    }
    with_state_in(g.tls(), |st| {
        if st.pause_depth > 0 {
            return;
        }
        // SAFETY: per the function contract.
        let block = unsafe { block_of(op) };
        if stacks::walking() {
            stacks::walk_frames(st);
        }
        st.push_with_stack(Record::Recreate { address: block as u64 });
    });
}
