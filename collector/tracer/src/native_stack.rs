//! Native stacks (`memlens run --native-stacks`): at each recorded allocation, the return
//! addresses of the C, C++ or Rust code between the allocator and the innermost Python line.
//!
//! Layer: foundations; imports nothing of the tracer.
//!
//! Unwinding: CPython and extension modules are built without frame pointers, so frames
//! are found from the DWARF call-frame information (`.eh_frame`) with libgcc's
//! `_Unwind_Backtrace`, which every Rust program already links (no new dependency) and which
//! on glibc 2.35+ finds a frame's unwind table through `_dl_find_object`, without a lock or
//! an allocation. Its first call may `dlopen`/`malloc`, so a session warms it up before the
//! hooks record ([`begin_session`]); inside a hook the re-entrancy guard is held anyway, so
//! whatever it allocates is not recorded. The walk stops at the first frame of CPython's
//! evaluation loop (`_PyEval_EvalFrameDefault`, found with `dlsym` + `dladdr1`), or at the
//! frame our frame-evaluation hook called, where the loop runs code outside that symbol (a
//! compiler's cold part of it): what lies below it is Python frames, which the shadow stack
//! already has, so the cost of a stack is the C code above the Python line, not the depth
//! of the program.
//!
//! Only the allocations of the kinds [`memlens_wire::AllocKind::native_stack`] names are
//! unwound: the blocks C code asks for itself, not Python's objects.
//!
//! Caching, as memray does: each thread keeps its native stacks as a prefix tree of
//! (parent node, return address) nodes ([`NativeState`]); a stack is sent as its innermost
//! node ([`Record::NativeStack`], only when it changed since the thread's last allocation),
//! and only nodes the recorder has not seen go out ([`Record::NativeFrame`]). Addresses
//! are never symbolized here: the recorder does that, outside the traced process. It learns
//! which module an address is in from [`Record::NativeModule`] records, sent the first time
//! a new node's address lies outside every module sent so far (the loaded modules are
//! listed again with `dl_iterate_phdr` only if something was loaded since the last look).

use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use memlens_wire::Record;

/// Frames walked at most per allocation: deep C recursion keeps its innermost frames.
const MAX_DEPTH: usize = 128;

/// `--native-stacks` for the next session (`memlens_set_native_stacks`).
static NEXT: AtomicBool = AtomicBool::new(false);
/// The current session records native stacks.
static ON: AtomicBool = AtomicBool::new(false);
/// Our own library's address range: its frames (the hook, the unwinder's caller) are left out.
static SELF_START: AtomicUsize = AtomicUsize::new(0);
static SELF_END: AtomicUsize = AtomicUsize::new(0);
/// `_PyEval_EvalFrameDefault`'s code, `[start, end)`; 0 when not found.
static EVAL_START: AtomicUsize = AtomicUsize::new(0);
static EVAL_END: AtomicUsize = AtomicUsize::new(0);
/// Node ids, process-wide so that a thread's ids never collide with another's.
static NEXT_NODE: AtomicU32 = AtomicU32::new(1);

/// Sets whether the next session records native stacks.
pub fn set_next(on: bool) {
    NEXT.store(on, Ordering::Relaxed);
}

/// Whether the current session records native stacks.
#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// A session starts (before recording is on): takes the setting made for it, and with native
/// stacks on, finds our own code and the evaluation loop and warms the unwinder up. The
/// session after it has none unless told. Returns the setting.
pub fn begin_session() -> bool {
    let on = NEXT.swap(false, Ordering::Relaxed);
    if on {
        find_ranges();
        let mut warm = [0usize; MAX_DEPTH];
        capture(&mut warm);
        modules::forget();
    }
    ON.store(on, Ordering::Relaxed);
    on
}

/// In a forked child: a thread that did not come along may have held the modules' lock.
pub fn after_fork_in_child() {
    modules::after_fork_in_child();
}

/// `dladdr1`'s flag asking for the symbol's table entry (glibc's `<dlfcn.h>`).
const RTLD_DL_SYMENT: c_int = 1;

fn find_ranges() {
    let here = find_ranges as fn() as usize;
    // SAFETY: dl_iterate_phdr calls `own_range` with valid info structures; `here` outlives it.
    unsafe { libc::dl_iterate_phdr(Some(own_range), (&here as *const usize).cast_mut().cast()) };
    // SAFETY: dlsym with a NUL-terminated name; a null result is handled.
    let eval = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_PyEval_EvalFrameDefault".as_ptr()) };
    if eval.is_null() {
        return;
    }
    // SAFETY: Dl_info is plain data; all zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let mut sym: *mut libc::Elf64_Sym = std::ptr::null_mut();
    // SAFETY: dladdr1 fills `info` and points `sym` at the symbol's entry in its object's
    // symbol table (mapped as long as the object is loaded, and libpython is not unloaded).
    let found = unsafe {
        libc::dladdr1(
            eval,
            &mut info,
            (&mut sym as *mut *mut libc::Elf64_Sym).cast(),
            RTLD_DL_SYMENT,
        )
    };
    // SAFETY: `sym` is null or valid (above).
    let size = if found != 0 && !sym.is_null() { unsafe { (*sym).st_size as usize } } else { 0 };
    // Without a size, the evaluation loop's first 64 KiB (3.11's is about 40 KiB of code):
    // a return address inside it is a call made by the loop.
    let size = if size == 0 { 64 << 10 } else { size };
    EVAL_START.store(eval as usize, Ordering::Relaxed);
    EVAL_END.store(eval as usize + size, Ordering::Relaxed);
}

/// `dl_iterate_phdr` callback: notes the range of the object holding the address at `data`.
unsafe extern "C" fn own_range(
    info: *mut libc::dl_phdr_info,
    _: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: both pointers are valid for the call (dl_iterate_phdr, find_ranges).
    let (info, here) = unsafe { (&*info, *data.cast::<usize>()) };
    let (start, end) = modules::range(info);
    if start <= here && here < end {
        SELF_START.store(start, Ordering::Relaxed);
        SELF_END.store(end, Ordering::Relaxed);
        return 1;
    }
    0
}

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

type TraceFn = unsafe extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int;

extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
}

/// `_URC_NO_REASON`: go on; `_URC_NORMAL_STOP`: stop the walk.
const URC_NO_REASON: c_int = 0;
const URC_NORMAL_STOP: c_int = 4;

struct Walk<'a> {
    out: &'a mut [usize; MAX_DEPTH],
    len: usize,
}

unsafe extern "C" fn step(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` `capture` passed, alive for the whole walk; `ctx` is the
    // unwinder's context for this frame.
    let (walk, ip) = unsafe { (&mut *arg.cast::<Walk<'_>>(), _Unwind_GetIP(ctx)) };
    if ip == 0 {
        return URC_NORMAL_STOP;
    }
    if (SELF_START.load(Ordering::Relaxed)..SELF_END.load(Ordering::Relaxed)).contains(&ip) {
        if walk.len == 0 {
            // The hook that called the allocator, and what it called.
            return URC_NO_REASON;
        }
        // The frame-evaluation hook, which called the evaluation loop: the last frame was
        // the loop's, in code outside `_PyEval_EvalFrameDefault`'s symbol (GCC's cold
        // parts: Debian's 3.14). It is dropped, as the recorder drops the loop's frame.
        walk.len -= 1;
        return URC_NORMAL_STOP;
    }
    walk.out[walk.len] = ip;
    walk.len += 1;
    let in_eval =
        (EVAL_START.load(Ordering::Relaxed)..EVAL_END.load(Ordering::Relaxed)).contains(&ip);
    if in_eval || walk.len == MAX_DEPTH {
        URC_NORMAL_STOP
    } else {
        URC_NO_REASON
    }
}

/// The calling thread's return addresses, innermost first, without our own frames, up to and
/// including the first one in the evaluation loop (or up to the loop's frame, without it,
/// where that is found as the caller of our frame-evaluation hook). Returns how many.
#[inline(never)]
fn capture(out: &mut [usize; MAX_DEPTH]) -> usize {
    let mut walk = Walk { out, len: 0 };
    // SAFETY: `step` has the callback signature and only uses `walk` during the call.
    unsafe { _Unwind_Backtrace(step, (&mut walk as *mut Walk<'_>).cast()) };
    walk.len
}

/// A thread's native stacks as a prefix tree: an open-addressing table from (parent node,
/// return address) to node, and the node its last allocation was sent with.
#[derive(Default)]
pub struct NativeState {
    /// (address, parent, id); id 0: an empty slot. Its length is 0 or a power of two.
    slots: Vec<(u64, u32, u32)>,
    used: usize,
    sent: u32,
}

impl NativeState {
    /// A new session: the recorder knows none of the nodes.
    pub fn reset(&mut self) {
        self.slots = Vec::new();
        self.used = 0;
        self.sent = 0;
    }

    /// Captures the calling thread's native stack and sends what the recorder needs to know
    /// it through `push`: the modules and nodes it has not seen, and the stack if it is not
    /// the one sent last.
    pub fn sync(&mut self, push: &mut impl FnMut(&Record<'_>)) {
        let mut ips = [0usize; MAX_DEPTH];
        let n = capture(&mut ips);
        let mut node = 0;
        for &ip in ips[..n].iter().rev() {
            node = self.child(node, ip as u64, push);
        }
        if node != self.sent {
            self.sent = node;
            push(&Record::NativeStack { node });
        }
    }

    /// The node for `address` called from `parent`, made (and sent) if new.
    fn child(&mut self, parent: u32, address: u64, push: &mut impl FnMut(&Record<'_>)) -> u32 {
        if self.used * 2 >= self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = slot_of(parent, address) & mask;
        loop {
            let (a, p, id) = self.slots[i];
            if id == 0 {
                break;
            }
            if a == address && p == parent {
                return id;
            }
            i = (i + 1) & mask;
        }
        let id = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
        self.slots[i] = (address, parent, id);
        self.used += 1;
        modules::ensure_known(address as usize, push);
        push(&Record::NativeFrame { id, parent, address });
        id
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        self.slots = vec![(0, 0, 0); (old.len() * 2).max(256)];
        let mask = self.slots.len() - 1;
        for (a, p, id) in old.into_iter().filter(|s| s.2 != 0) {
            let mut i = slot_of(p, a) & mask;
            while self.slots[i].2 != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = (a, p, id);
        }
    }
}

#[inline]
fn slot_of(parent: u32, address: u64) -> usize {
    // Fibonacci hashing of both halves: return addresses differ in their low bits.
    ((address ^ (u64::from(parent) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize
}

/// The loaded modules sent so far in this session.
mod modules {
    use super::*;

    /// At most this many modules are tracked (a program with more gets the rest of its
    /// addresses shown as unknown).
    const MAX_MODULES: usize = 4096;

    struct Known {
        ranges: [(usize, usize); MAX_MODULES],
        len: usize,
    }

    static LOCK: AtomicBool = AtomicBool::new(false);
    static mut KNOWN: Known = Known { ranges: [(0, 0); MAX_MODULES], len: 0 };
    /// `dlpi_adds` at the last listing: nothing new was loaded while it is the same.
    static LAST_ADDS: AtomicU64 = AtomicU64::new(u64::MAX);

    fn with_known<R>(f: impl FnOnce(&mut Known) -> R) -> R {
        while LOCK.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
        // SAFETY: LOCK is held, so this is the only reference to KNOWN.
        let r = f(unsafe { &mut *std::ptr::addr_of_mut!(KNOWN) });
        LOCK.store(false, Ordering::Release);
        r
    }

    /// See [`super::after_fork_in_child`].
    pub fn after_fork_in_child() {
        LOCK.store(false, Ordering::Relaxed);
    }

    /// A new session: the recorder knows no module.
    pub fn forget() {
        with_known(|k| k.len = 0);
        LAST_ADDS.store(u64::MAX, Ordering::Relaxed);
    }

    /// `[start, end)` of the object's loaded segments.
    pub fn range(info: &libc::dl_phdr_info) -> (usize, usize) {
        let (mut start, mut end) = (usize::MAX, 0);
        for ph in phdrs(info).iter().filter(|p| p.p_type == libc::PT_LOAD) {
            start = start.min(info.dlpi_addr as usize + ph.p_vaddr as usize);
            end = end.max(info.dlpi_addr as usize + (ph.p_vaddr + ph.p_memsz) as usize);
        }
        (start, end)
    }

    fn phdrs(info: &libc::dl_phdr_info) -> &[libc::Elf64_Phdr] {
        if info.dlpi_phdr.is_null() {
            return &[];
        }
        // SAFETY: the loader's program headers of a loaded object, `dlpi_phnum` of them.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
    }

    /// The object's GNU build id (`NT_GNU_BUILD_ID` note), or empty.
    fn build_id(info: &libc::dl_phdr_info) -> &[u8] {
        let loaded = |ph: &libc::Elf64_Phdr| {
            phdrs(info).iter().any(|l| {
                l.p_type == libc::PT_LOAD
                    && l.p_vaddr <= ph.p_vaddr
                    && ph.p_vaddr + ph.p_memsz <= l.p_vaddr + l.p_filesz
            })
        };
        for ph in phdrs(info).iter().filter(|p| p.p_type == libc::PT_NOTE && loaded(p)) {
            let base = (info.dlpi_addr + ph.p_vaddr) as *const u8;
            // SAFETY: the notes lie inside a loaded segment's file-backed bytes (checked
            // above: a file whose notes are not mapped has no build id for us).
            let notes = unsafe { std::slice::from_raw_parts(base, ph.p_memsz as usize) };
            let mut pos = 0;
            while pos + 12 <= notes.len() {
                let word = |i: usize| {
                    u32::from_ne_bytes(notes[i..i + 4].try_into().unwrap_or_default()) as usize
                };
                let (namesz, descsz, kind) = (word(pos), word(pos + 4), word(pos + 8));
                let name_at = pos + 12;
                let desc_at = name_at + namesz.next_multiple_of(4);
                let Some(desc) = notes.get(desc_at..desc_at + descsz) else { break };
                if kind == 3 && notes.get(name_at..name_at + namesz) == Some(b"GNU\0") {
                    return desc;
                }
                pos = desc_at + descsz.next_multiple_of(4);
            }
        }
        &[]
    }

    /// Makes sure the module holding `address` was sent, listing the loaded modules again if
    /// something was loaded since the last look.
    pub fn ensure_known(address: usize, push: &mut dyn FnMut(&Record<'_>)) {
        let known =
            with_known(|k| k.ranges[..k.len].iter().any(|&(s, e)| s <= address && address < e));
        if known {
            return;
        }
        let mut listing = Listing { push, first: true };
        // SAFETY: `list` is called with valid info structures; `listing` outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(list), (&mut listing as *mut Listing<'_>).cast()) };
    }

    struct Listing<'a> {
        push: &'a mut dyn FnMut(&Record<'_>),
        first: bool,
    }

    unsafe extern "C" fn list(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: valid for the call (dl_iterate_phdr; ensure_known's `listing`).
        let (info, listing) = unsafe { (&*info, &mut *data.cast::<Listing<'_>>()) };
        // Every object of a listing has the same count of loads: if nothing was loaded
        // since the last listing, there is nothing new to send.
        if std::mem::take(&mut listing.first)
            && info.dlpi_adds == LAST_ADDS.swap(info.dlpi_adds, Ordering::Relaxed)
        {
            return 1;
        }
        let (start, end) = range(info);
        if start >= end {
            return 0;
        }
        let is_new = with_known(|k| {
            let new = !k.ranges[..k.len].contains(&(start, end)) && k.len < MAX_MODULES;
            if new {
                k.ranges[k.len] = (start, end);
                k.len += 1;
            }
            new
        });
        if !is_new {
            return 0;
        }
        let mut exe = [0u8; 4096];
        let name = if info.dlpi_name.is_null() {
            &[][..]
        } else {
            // SAFETY: dlpi_name is NUL-terminated, alive while the object is loaded.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
        };
        let path = if name.is_empty() {
            // The main program has no name in the list.
            // SAFETY: readlink into a buffer of the given size.
            let n = unsafe {
                libc::readlink(c"/proc/self/exe".as_ptr(), exe.as_mut_ptr().cast(), exe.len())
            };
            &exe[..n.max(0) as usize]
        } else {
            name
        };
        (listing.push)(&Record::NativeModule {
            bias: info.dlpi_addr,
            start: start as u64,
            end: end as u64,
            path,
            build_id: build_id(info),
        });
        0
    }
}
