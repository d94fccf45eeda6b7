//! Per-thread tracer state: the thread's ring, its index and its shadow stack.
//!
//! Layer: the emit layer, above the switches ([`crate::recording`]) and the rings; the
//! stack upkeep ([`crate::stacks`]), the records ([`crate::emit`]) and the hooks use it.
//!
//! The shadow stack is kept up to date by the profile callback ([`crate::profiler`])
//! and is sent to the parent lazily: the thread remembers which frames the parent
//! already knows (`emitted`) and, right before an allocation record, sends only the
//! difference as `Pop(n)` + `Push(code, line)` records.
//!
//! Each tracing session (see [`crate::session`]) starts with nothing known: the first
//! record a thread sends in a session is preceded by its `ThreadStart` (and name), and
//! its whole stack is sent again.
//!
//! Line numbers are lazy too: a frame that is not on top is suspended at its call
//! site, so its line cannot change until it is on top again. `clean` is the number of
//! bottom frames whose (code, line) is known to match what was emitted; only frames
//! at or above it need their line looked up at the next allocation (normally just the
//! top one), and a lookup goes to Python only for an instruction offset not seen before
//! in that code object (`LineCache`).

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use memlens_wire::Record;

use crate::guard::{tls, Tls};
use crate::python_api::{api, EvalHook, PyApi, PyObject};
use crate::recording;
use crate::ring::{Ring, Stretch};

/// A shadow-stack frame: a frame object, or an interpreter frame pushed by the
/// frame-evaluation hook ([`crate::profiler`]).
///
/// A frame object is a strong reference, taken at CALL (or when seeding) and released
/// when the entry goes: if another profiler replaces ours (cProfile, `sys.setprofile`)
/// and the RETURN never comes, the frame object stays valid memory (a finished frame
/// still answers `PyFrame_GetLineNumber`) instead of being read after it is freed.
/// An interpreter frame is only valid while it runs, which is exactly while the hook
/// keeps it on the stack.
struct Entry {
    frame: *mut PyObject,
    /// The frame as the frame-evaluation hook is given it, which its return pops by. For a
    /// hooked frame (`frame` null) it is also what its line is read from, with `code_obj`.
    /// A seeded frame object has it too (where the hook keeps the stacks), since the
    /// frames seeded from a greenlet's frames return through the hook: its line is read
    /// from the frame object, which stays valid if the frame ends unseen.
    iframe: *mut c_void,
    code_obj: *mut PyObject,
    code: u32,
    line: u32,
    /// The instruction offset `line` was found for (-2: none yet).
    lasti: i32,
    /// Which slots of `near` hold an answer.
    near_valid: u16,
    /// The lines of other offsets of this frame, direct-mapped by offset: a loop allocates
    /// at a handful of offsets in turn, and these answer it without the thread's
    /// [`LineCache`], whose slots are cache misses (a fifth of the tracer's time on churn).
    near: [(i32, u32); NEAR],
}

/// Slots of [`Entry::near`].
const NEAR: usize = 16;

impl Entry {
    fn new(frame: *mut PyObject, code: u32) -> Self {
        Entry {
            frame,
            iframe: ptr::null_mut(),
            code_obj: ptr::null_mut(),
            code,
            line: 0,
            lasti: -2,
            near_valid: 0,
            near: [(0, 0); NEAR],
        }
    }
}

/// Lines by (code id, instruction offset), direct-mapped: finding a line from an offset
/// reads the code object's line table from its start, a cost worth skipping at every
/// allocation. 4096 entries (48 KiB a thread) hold the hot spots of a program's loops.
const LINE_CACHE: usize = 4096;

struct LineCache(Box<[(u32, i32, u32)]>);

impl LineCache {
    fn new() -> Self {
        LineCache(vec![(u32::MAX, -1, 0); LINE_CACHE].into_boxed_slice())
    }

    /// The line `e`'s frame is at, asking Python only when its offset is new to us. Inlined
    /// up to the test that the frame is still at the offset of its last allocation (seven
    /// calls in ten on churn.py); the rest is [`Self::line_at`].
    #[inline(always)]
    fn line(&mut self, api: &PyApi, e: &mut Entry) -> u32 {
        // A hooked frame (only ever pushed where the hook exists) is read directly.
        let hooked = if e.frame.is_null() { api.eval_hook() } else { None };
        let lasti = if let Some(hook) = hooked {
            // SAFETY: a hooked frame is on the stack only while it runs.
            unsafe { hook.lasti(e.iframe, e.code_obj) }
        } else if let Some(get_lasti) = api.frame_get_lasti {
            // SAFETY: we hold a reference to every frame object on the shadow stack, so
            // it is alive; reading its position is read-only.
            unsafe { get_lasti(e.frame) }
        } else {
            // SAFETY: as above.
            return unsafe { (api.frame_get_line_number)(e.frame) }.max(0) as u32;
        };
        if lasti == e.lasti {
            return e.line;
        }
        self.line_at(api, hooked, e, lasti)
    }

    /// [`Self::line`] at an offset other than the last one's.
    #[inline(never)]
    fn line_at(
        &mut self,
        api: &PyApi,
        hooked: Option<&EvalHook>,
        e: &mut Entry,
        lasti: c_int,
    ) -> u32 {
        e.lasti = lasti;
        let n = (lasti as u32).wrapping_mul(0x9E37_79B1) as usize >> (32 - NEAR.trailing_zeros());
        if e.near_valid & (1 << n) != 0 && e.near[n].0 == lasti {
            return e.near[n].1;
        }
        let h = (e.code.wrapping_mul(0x9E37_79B1) ^ lasti as u32).wrapping_mul(0x85EB_CA6B);
        let slot = &mut self.0[(h >> 20) as usize % LINE_CACHE];
        if slot.0 != e.code || slot.1 != lasti {
            let line = match hooked {
                // SAFETY: as above.
                Some(hook) => unsafe { (hook.addr2line)(e.code_obj, lasti) },
                // SAFETY: as above.
                None => unsafe { (api.frame_get_line_number)(e.frame) },
            };
            let line = line.max(0) as u32;
            *slot = (e.code, lasti, line);
        }
        e.near_valid |= 1 << n;
        e.near[n] = (lasti, slot.2);
        slot.2
    }
}

pub struct ThreadState {
    /// The session this thread last introduced itself to.
    session: u32,
    os_tid: u64,
    /// The OS thread name, then the Python one once known.
    name: Vec<u8>,
    ring: &'static Ring,
    stretch: Stretch,
    stack: Vec<Entry>,
    emitted: Vec<(u32, u32)>,
    clean: usize,
    lines: LineCache,
    scratch: Vec<u8>,
    /// Pauses by `memlens_pause` not yet resumed (they nest: a census inside `memlens
    /// attach`'s own, always paused, thread resumes only its own pause). While above 0 the
    /// thread's allocations and frees are not recorded (the census's own work); stack
    /// tracking goes on.
    pub pause_depth: u32,
    /// The frames on the shadow stack are not ours to release (seeded by a frame walk).
    borrowed: bool,
    /// The [`STACK_EPOCH`] the shadow stack was built from the thread's frames in (0: not
    /// built, or dropped).
    seeded: u32,
    /// The thread's native stacks (`--native-stacks`), see [`crate::native_stack`].
    native: crate::native_stack::NativeState,
}

/// Bumped when every thread's shadow stack is out of date (the frame-evaluation hook was
/// taken out, so frames came and went unseen): each is built afresh at its next use.
static STACK_EPOCH: AtomicU32 = AtomicU32::new(1);

/// See [`STACK_EPOCH`].
pub fn invalidate_stacks() {
    STACK_EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// A thread whose state was torn down at exit; it records nothing any more.
const DEAD: *mut ThreadState = std::ptr::dangling_mut();

static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);
static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Creates the pthread key whose destructor closes a thread's ring at exit.
pub fn init_key() {
    if KEY.load(Ordering::Acquire) != u32::MAX {
        return;
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: key is a valid out-pointer; the destructor has the required signature.
    if unsafe { libc::pthread_key_create(&mut key, Some(destroy)) } == 0 {
        KEY.store(key, Ordering::Release);
    }
}

unsafe extern "C" fn destroy(p: *mut c_void) {
    let st = p.cast::<ThreadState>();
    if st.is_null() || st == DEAD {
        return;
    }
    tls().state.set(DEAD.cast());
    // SAFETY: p is the Box pointer stored by `create` for this (exiting) thread,
    // and STATE no longer points to it, so nothing else will use it.
    let st = unsafe { Box::from_raw(st) };
    st.ring.close();
}

/// In a forked child: the rings of the threads that did not come along are closed (see
/// [`Ring::after_fork_in_child`]); the forking thread keeps its own.
pub fn after_fork_in_child() {
    Ring::after_fork_in_child(own_ring());
}

/// From a fatal signal's handler, on the thread the signal stopped for good: a record the
/// thread was writing when it came is dropped ([`Ring::drop_record_in_progress`]): the drain
/// would wait for it to be published, and the recorder for the drain. Async-signal-safe.
pub fn drop_record_in_progress() {
    if let Some(ring) = own_ring() {
        ring.drop_record_in_progress();
    }
}

/// The calling thread's ring, if it has a live state, read without borrowing the state
/// (code it interrupted, a fork's or a signal's, may hold that). Async-signal-safe.
fn own_ring() -> Option<&'static Ring> {
    let p = tls().state.get().cast::<ThreadState>();
    // SAFETY: a live state is this thread's own Box (see `create`); only its ring, set at
    // creation, is read, through the pointer.
    (!p.is_null() && p != DEAD).then(|| unsafe { std::ptr::addr_of!((*p).ring).read() })
}

fn create() -> *mut ThreadState {
    let mut name = [0u8; 16];
    // SAFETY: 16 bytes is the documented maximum for thread names, NUL included.
    unsafe { libc::pthread_getname_np(libc::pthread_self(), name.as_mut_ptr().cast(), 16) };
    let name_len = name.iter().position(|&b| b == 0).unwrap_or(16);
    let index = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
    let st = Box::into_raw(Box::new(ThreadState {
        session: 0,
        os_tid: crate::guard::gettid() as u64,
        name: name[..name_len].to_vec(),
        ring: Ring::acquire(),
        stretch: Stretch::new(index),
        stack: Vec::new(),
        emitted: Vec::new(),
        clean: 0,
        lines: LineCache::new(),
        scratch: Vec::new(),
        pause_depth: 0,
        borrowed: false,
        seeded: 0,
        native: Default::default(),
    }));
    let key = KEY.load(Ordering::Acquire);
    if key != u32::MAX {
        // SAFETY: key was created by init_key; st is a valid pointer we own.
        unsafe { libc::pthread_setspecific(key, st.cast()) };
    }
    st
}

/// Runs `f` with the calling thread's state, creating it on first use. Returns
/// `None` on a thread that already went through its exit destructor.
#[inline]
pub fn with_state<R>(f: impl FnOnce(&mut ThreadState) -> R) -> Option<R> {
    with_state_in(tls(), f)
}

/// [`with_state`] with the thread-locals at hand (a hook's [`crate::guard::Guard`]).
#[inline(always)]
pub fn with_state_in<R>(tls: &Tls, f: impl FnOnce(&mut ThreadState) -> R) -> Option<R> {
    let mut p = tls.state.get().cast::<ThreadState>();
    if p == DEAD {
        return None;
    }
    if p.is_null() {
        p = create();
        tls.state.set(p.cast());
    }
    // SAFETY: p is this thread's own Box, only ever used from this thread, and the
    // re-entrancy guard keeps hooks from nesting into a second &mut.
    let st = unsafe { &mut *p };
    let session = recording::session();
    if st.session != session && recording::active() {
        st.join_session(session);
    }
    Some(f(st))
}

impl ThreadState {
    /// Introduces the thread to a new session: name, and no stack known yet.
    #[cold]
    fn join_session(&mut self, session: u32) {
        self.session = session;
        self.emitted.clear();
        self.clean = 0;
        self.native.reset();
        let name = std::mem::take(&mut self.name);
        self.push(&Record::ThreadStart { os_tid: self.os_tid, name: &name });
        self.name = name;
    }

    /// Sets the thread's (Python) name and sends it.
    pub fn set_name(&mut self, name: &[u8]) {
        self.name = name.to_vec();
        self.push(&Record::ThreadName { name });
    }

    /// Sends one record (nothing between sessions: no one drains the ring then), in a
    /// stretch of its own: its time is exact (a gc, a marker or a census says when it
    /// happened; allocations need only their order).
    pub fn push(&mut self, rec: &Record<'_>) {
        self.restamp();
        self.push_free(rec);
    }

    /// Makes the next record open a stretch of its own, with an exact time.
    pub fn restamp(&mut self) {
        self.stretch.restamp();
    }

    /// Sends the native stack of the allocation being recorded (what the recorder does not
    /// know of it yet), to go before the allocation's record.
    pub fn push_native_stack(&mut self) {
        let mut native = std::mem::take(&mut self.native);
        native.sync(&mut |rec| self.push_free(rec));
        self.native = native;
    }

    /// Sends a free (or another record whose time may be its stretch's).
    #[inline(always)]
    pub fn push_free(&mut self, rec: &Record<'_>) {
        if recording::active() {
            self.ring.push_with(
                &mut self.stretch,
                rec.encoded_len(),
                &mut self.scratch,
                recording::active,
                #[inline(always)]
                |out| {
                    rec.encode_into(out);
                },
            );
        }
    }

    /// Sends the stack changes since the last event, then `rec`, as one batch written
    /// straight into the ring.
    #[inline(always)]
    pub fn push_with_stack(&mut self, rec: Record<'static>) {
        if !recording::active() {
            return;
        }
        match self.top_only() {
            Some(false) => self.push_free(&rec),
            Some(true) => self.push_after_line(&rec),
            None => self.push_after_stack_change(&rec),
        }
    }

    /// Sends a `Line` record with the top frame's new line, then `rec`.
    #[inline(always)]
    fn push_after_line(&mut self, rec: &Record<'_>) {
        let line = Record::Line { line: self.emitted.last().map_or(0, |e| e.1) };
        let len = line.encoded_len() + rec.encoded_len();
        self.ring.push_with(
            &mut self.stretch,
            len,
            &mut self.scratch,
            recording::active,
            #[inline(always)]
            |out| {
                let at = line.encode_into(out).unwrap_or(0);
                rec.encode_into(&mut out[at..]);
            },
        );
    }

    /// The stack changed beyond the top frame's line (a call or a return since the last
    /// event): sends the difference, then `rec`. Kept out of line, so that the hooks' usual
    /// path stays short.
    #[inline(never)]
    fn push_after_stack_change(&mut self, rec: &Record<'_>) {
        let (popped, first_new, moved) = self.diff_stack();
        if moved {
            return self.push_after_line(rec);
        }
        let pushed = &self.emitted[first_new..];
        let pop = Record::Pop { n: popped };
        let pop_len = if popped > 0 { pop.encoded_len() } else { 0 };
        let push_len = Record::Push { code: 0, line: 0 }.encoded_len();
        let len = pop_len + pushed.len() * push_len + rec.encoded_len();
        self.ring.push_with(&mut self.stretch, len, &mut self.scratch, recording::active, |out| {
            let mut at = 0;
            if popped > 0 {
                at += pop.encode_into(out).unwrap_or(0);
            }
            for &(code, line) in pushed {
                at += Record::Push { code, line }.encode_into(&mut out[at..]).unwrap_or(0);
            }
            rec.encode_into(&mut out[at..]);
        });
    }

    /// A Python frame started (profile CALL). Takes a reference to `frame`. GIL held.
    #[inline]
    pub fn enter_frame(&mut self, frame: *mut PyObject, code: u32) {
        // SAFETY: frame is a live frame object and the GIL is held (profile callback).
        unsafe { (api().inc_ref)(frame) };
        self.stack.push(Entry::new(frame, code));
    }

    /// The frame-evaluation hook is about to run `iframe`, which runs `code` (id `id`).
    /// GIL held.
    #[inline]
    pub fn enter_iframe(&mut self, iframe: *mut c_void, code: *mut PyObject, id: u32) {
        self.stack.push(Entry { iframe, code_obj: code, ..Entry::new(ptr::null_mut(), id) });
    }

    /// The frame-evaluation hook finished running `iframe`. GIL held.
    #[inline]
    pub fn leave_iframe(&mut self, iframe: *mut c_void) {
        self.leave_where(|e| e.iframe == iframe);
    }

    /// Drops the topmost entry for which `is_it` holds, and every entry above it.
    #[inline]
    fn leave_where(&mut self, is_it: impl Fn(&Entry) -> bool) {
        let Some(pos) = self.stack.iter().rposition(is_it) else { return };
        self.truncate(pos);
        self.clean = self.clean.min(pos.saturating_sub(1));
    }

    /// Drops the shadow stack above `len`, releasing the frame references. GIL held.
    fn truncate(&mut self, len: usize) {
        let api = api();
        let owned = !self.borrowed;
        for e in self.stack.drain(len..) {
            if !e.frame.is_null() && owned {
                // SAFETY: releasing the reference taken in enter_frame/seed; GIL held.
                unsafe { (api.dec_ref)(e.frame) };
            }
        }
    }

    /// A Python frame finished (profile RETURN). Frames above it that never got a
    /// RETURN (unlikely, but e.g. a profiler swapped mid-call) are dropped with it.
    /// GIL held.
    #[inline]
    pub fn leave_frame(&mut self, frame: *mut PyObject) {
        self.leave_where(|e| e.frame == frame && !frame.is_null());
    }

    /// Replaces the shadow stack with the given frames, outermost first (used when
    /// the profiler is installed in the middle of a running thread, and after a greenlet
    /// switch): each a frame object, the frame the evaluation hook will pop it by (null
    /// where it does not keep the stacks) and its code id. Takes over one reference to
    /// each frame object if `owned`; otherwise (frame walking) the frames are valid only
    /// until the thread runs on. GIL held.
    pub fn seed(
        &mut self,
        frames: impl Iterator<Item = (*mut PyObject, *mut c_void, u32)>,
        owned: bool,
    ) {
        self.truncate(0);
        self.borrowed = !owned;
        self.stack.extend(
            frames.map(|(frame, iframe, code)| Entry { iframe, ..Entry::new(frame, code) }),
        );
        self.clean = 0;
        self.seeded = STACK_EPOCH.load(Ordering::Acquire);
    }

    /// The next records go out with the lines sent last: the frames are not read (frame
    /// walking without the GIL, where they may be gone).
    pub fn keep_lines(&mut self) {
        self.clean = self.stack.len();
    }

    /// Drops the shadow stack: the thread no longer has the profiler, and must be seeded
    /// again if it gets it back. GIL held.
    pub fn forget_stack(&mut self) {
        self.truncate(0);
        self.clean = 0;
        self.seeded = 0;
    }

    /// Whether the shadow stack was ever built from the thread's frames (a thread given
    /// the profiler from another thread starts without).
    pub fn seeded(&self) -> bool {
        self.seeded == STACK_EPOCH.load(Ordering::Relaxed)
    }

    pub fn os_tid(&self) -> u64 {
        self.os_tid
    }

    /// The usual case, checked before [`Self::diff_stack`]: the parent knows every frame
    /// and only the top one can have moved. Returns whether its line changed (and notes
    /// the new one as sent), or `None` when the stack changed otherwise.
    #[inline(always)]
    fn top_only(&mut self) -> Option<bool> {
        let len = self.stack.len();
        if len == 0 || self.clean + 1 != len || self.emitted.len() != len {
            return None;
        }
        let e = &mut self.stack[len - 1];
        let sent = &mut self.emitted[len - 1];
        if sent.0 != e.code {
            return None;
        }
        e.line = self.lines.line(api(), e);
        if sent.1 == e.line {
            return Some(false);
        }
        sent.1 = e.line;
        Some(true)
    }

    /// Brings `emitted` up to date with the shadow stack; returns how many frames it lost,
    /// where the frames it gained begin, and whether the change is just the top frame's
    /// line (same depth, same code).
    fn diff_stack(&mut self) -> (u32, usize, bool) {
        let len = self.stack.len();
        if len > 0 {
            let api = api();
            for e in &mut self.stack[self.clean..] {
                e.line = self.lines.line(api, e);
            }
        }
        let known = len.min(self.emitted.len());
        let mut same = self.clean.min(known);
        while same < known && self.emitted[same] == (self.stack[same].code, self.stack[same].line) {
            same += 1;
        }
        let popped = (self.emitted.len() - same) as u32;
        let moved = popped == 1 && same + 1 == len && self.emitted[same].0 == self.stack[same].code;
        self.emitted.truncate(same);
        self.emitted.extend(self.stack[same..].iter().map(|e| (e.code, e.line)));
        self.clean = len.saturating_sub(1);
        (popped, same, moved)
    }
}
