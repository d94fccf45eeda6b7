//! Per-thread single-producer/single-consumer byte rings, their registry, and the
//! logical clock that orders records across threads.
//!
//! Layer: foundations, below the emit layer: the per-thread state writes the rings and the
//! drain ([`crate::drain`]) empties them.
//!
//! Each traced thread owns one ring and appends encoded wire records to it; the drain
//! thread is the only consumer. Rings live in memory from `mmap` (never malloc, so
//! they do not show up as traced allocations), are linked into a lock-free
//! push-only list, and are reused after their thread exits and they are drained.
//!
//! **Stretches.** Records carry no time of their own (reading a clock at each of tens
//! of millions of allocations would cost more than the rest of the hook). A thread's
//! records come in stretches, each opened by a `Seq` record holding a number from the
//! process-wide logical [`CLOCK`] and the time-stamp counter. A thread keeps appending to
//! its stretch while the clock still holds the value it set; once any other thread, or
//! the drain, has advanced the clock, its next record opens a new stretch with a higher
//! number. So if thread B frees what thread A allocated, B's free is in a stretch
//! numbered above A's allocation: the drain, sorting stretches by number, keeps them
//! in order. Each number belongs to one stretch, so there are no ties. A thread also
//! opens a new stretch every [`RESTAMP`] records, and the drain advances the clock at every
//! pass (at least every 5 ms while tracing), so a record's time, its stretch's start, is at
//! most that early: some µs on a busy thread, up to a drain period on a quiet one. Markers,
//! gc runs and censuses open a stretch of their own and are exact. The producer notes where
//! each stretch starts in the ring's index of stretch starts, so the drain reads the `Seq`
//! records only, never the records between them.
//!
//! **Ordering protocol** (what makes the drain's cut correct): a producer sets `pending`,
//! *then* reads the clock, writes, publishes `head` and clears `pending`. The drain
//! advances the clock at each pass and cuts at the number it set at least a millisecond
//! earlier ([`crate::drain`]); it waits for `pending` to clear before reading `head`.
//! A record in a stretch below the cut was written by a thread that read the clock
//! before that advance, so its `pending` store was issued over a millisecond before the
//! drain looks (far longer than a store takes to become visible): it is either
//! published or still pending, and is never skipped. Stretches at or above the cut go
//! out in a later pass. This avoids a full memory fence on every record.

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{compiler_fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use memlens_wire::{peek_seq, Header, Record};

use crate::clock::now_ticks;
use crate::real::real;

/// Ring capacity: 4 MiB holds ~250,000 allocation records, tens of ms of the most
/// allocation-heavy Python thread; the drain runs continuously while rings are busy.
pub const RING_CAP: usize = 4 << 20;
/// How far ahead of a record the producer has the ring's memory fetched. The ring is larger
/// than a core's L2 cache, so the line a record goes to was evicted (or read by the drain on
/// another core) since the producer last wrote there: fetched at the last moment, each new
/// line stalled the program's thread (an eighth of the time `perf annotate` gave the free
/// record's path was on its store into the ring). Fetched eight lines ahead, churn.py runs
/// in 0.976 of the time, on 3.10 and 3.13 alike (14 and 16 paired rounds).
const PREFETCH_AHEAD: usize = 512;

/// Records per stretch at most: a stretch's records all get its start time, and 256
/// records are some µs of the busiest thread. Opening a stretch costs a compare-and-swap,
/// a counter read and 21 bytes, a fraction of a ns per record at this rate.
pub const RESTAMP: u32 = 256;

/// A producer whose ring is full yields this many times, then sleeps [`FULL_WAIT`] at a
/// time until the drain has made space (a fraction of the drain's 5 ms period).
const FULL_YIELDS: u32 = 8;
const FULL_WAIT: std::time::Duration = std::time::Duration::from_micros(200);

const FREE: u32 = 0;
const OWNED: u32 = 1;
const CLOSED: u32 = 2;

/// The logical clock: `seq << OWNER_BITS | owner`, where owner is 0 for the drain or
/// [`Stretch::owner`] of the thread that set it.
static CLOCK: AtomicU64 = AtomicU64::new(0);
const OWNER_BITS: u32 = 20;

/// Advances the clock for `owner`; returns the whole new value.
fn advance_clock(owner: u64) -> u64 {
    let mut cur = CLOCK.load(Ordering::Relaxed);
    loop {
        let new = ((cur >> OWNER_BITS) + 1) << OWNER_BITS | owner;
        match CLOCK.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return new,
            Err(now) => cur = now,
        }
    }
}

/// The logical clock's number now: a record written before this call is in a stretch
/// numbered at most this.
pub fn clock_seq() -> u64 {
    CLOCK.load(Ordering::Acquire) >> OWNER_BITS
}

/// The drain's mark: advances the clock so that every thread opens a new stretch, and
/// returns the number set (stretches below it were all opened before).
pub fn mark() -> u64 {
    advance_clock(0) >> OWNER_BITS
}

/// A producer's stretch (kept by its thread).
pub struct Stretch {
    /// This thread's owner bits in the clock: 1 + its index, wrapping below 2^20.
    owner: u64,
    thread: u32,
    /// The clock value that opened the current stretch (0: none open).
    clock: u64,
    /// Records the stretch may still take.
    left: u32,
}

impl Stretch {
    pub fn new(thread: u32) -> Self {
        let owner = 1 + thread as u64 % ((1 << OWNER_BITS) - 1);
        Stretch { owner, thread, clock: 0, left: 0 }
    }

    /// Makes the next record open a new stretch (and so be stamped with its own time).
    pub fn restamp(&mut self) {
        self.left = 0;
    }
}

/// Bytes of a `Seq` record.
const SEQ_LEN: usize = 21;

/// Entries of a ring's index of stretch starts: more than a full ring can hold stretches
/// (each is a `Seq` record and at least one more record, over 16 bytes), so an entry is
/// never overwritten before the drain has taken its stretch.
const MARKS: usize = RING_CAP >> 4;

/// The drain's view of a ring: the stretch its next records belong to.
#[derive(Clone, Copy, Default)]
struct Open {
    seq: u64,
    ticks: u64,
    thread: u32,
}

/// What the producer writes at every record, on a cache line of its own: the drain
/// writing `tail` next to it would make each record's first store wait for the line.
#[repr(C, align(64))]
struct ProducerSide {
    /// Bytes ever written.
    head: AtomicUsize,
    pending: AtomicU32,
    /// The producer's last reading of `tail` (it only ever grows, so the space it shows
    /// is there); read again only when that space runs out.
    tail_seen: AtomicUsize,
    /// Stretches ever opened: entry `i % MARKS` of the ring's index holds where the i-th
    /// stretch's `Seq` record is (the low 32 bits of its position), so the drain finds the
    /// stretches without reading every record. Published (Release) after its entry.
    opened: AtomicUsize,
}

impl ProducerSide {
    fn new() -> Self {
        ProducerSide {
            head: AtomicUsize::new(0),
            pending: AtomicU32::new(0),
            tail_seen: AtomicUsize::new(0),
            opened: AtomicUsize::new(0),
        }
    }
}

/// The drain's side, on a cache line of its own.
#[repr(C, align(64))]
struct DrainSide {
    /// Bytes ever consumed.
    tail: AtomicUsize,
    /// Touched only with the drain lock held.
    open: UnsafeCell<Open>,
    /// Entries of the index of stretch starts taken so far (only the drain touches it).
    marks_taken: AtomicUsize,
}

impl DrainSide {
    fn new() -> Self {
        DrainSide {
            tail: AtomicUsize::new(0),
            open: UnsafeCell::new(Open::default()),
            marks_taken: AtomicUsize::new(0),
        }
    }
}

pub struct Ring {
    next: AtomicPtr<Ring>,
    state: AtomicU32,
    data: *mut u8,
    /// The index of stretch starts, [`MARKS`] entries (see [`ProducerSide::opened`]).
    marks: *const AtomicU32,
    prod: ProducerSide,
    drain: DrainSide,
}

// SAFETY: `open` is only touched by whoever holds the drain lock (see its users); the
// rest is atomics and the data the SPSC protocol above hands over.
unsafe impl Sync for Ring {}

static RINGS: AtomicPtr<Ring> = AtomicPtr::new(ptr::null_mut());

fn map_anon(len: usize) -> *mut u8 {
    let r = real().expect("real functions resolved before the first ring");
    // SAFETY: anonymous private mapping, no file; the real mmap, not our hook.
    let p = unsafe {
        (r.mmap)(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        const MSG: &[u8] = b"memlens tracer: cannot map a ring buffer\n";
        // SAFETY: static message to stderr, then abort (we must never drop data).
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::abort();
        }
    }
    p.cast()
}

impl Ring {
    /// A ring for the calling thread: a drained ring of an exited thread, or a new one.
    pub fn acquire() -> &'static Ring {
        let mut cur = RINGS.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY: rings are never unmapped once linked.
            let ring = unsafe { &*cur };
            if ring.state.compare_exchange(FREE, OWNED, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                return ring;
            }
            cur = ring.next.load(Ordering::Acquire);
        }
        let mem = map_anon(std::mem::size_of::<Ring>() + RING_CAP + MARKS * 4);
        let ring_ptr = mem.cast::<Ring>();
        // SAFETY: the mapping is large enough, page-aligned and exclusively ours.
        unsafe {
            ring_ptr.write(Ring {
                next: AtomicPtr::new(ptr::null_mut()),
                state: AtomicU32::new(OWNED),
                prod: ProducerSide::new(),
                drain: DrainSide::new(),
                data: mem.add(std::mem::size_of::<Ring>()),
                // Zeroed memory is a valid AtomicU32; RING_CAP keeps it 4-byte aligned.
                marks: mem.add(std::mem::size_of::<Ring>() + RING_CAP).cast(),
            });
        }
        let mut head = RINGS.load(Ordering::Acquire);
        loop {
            // SAFETY: ring_ptr is ours until published by the CAS below.
            unsafe { (*ring_ptr).next.store(head, Ordering::Relaxed) };
            match RINGS.compare_exchange(head, ring_ptr, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        // SAFETY: linked rings live forever.
        unsafe { &*ring_ptr }
    }

    /// Called when the owning thread exits: the drain empties it, then frees it.
    pub fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
    }

    /// In a forked child: only the forking thread, owner of `own` (if it has a ring), lives
    /// on. Every other thread's ring is closed as at its owner's exit, and one whose owner
    /// was in the middle of a record (it allocated without the GIL, as native code and a
    /// thread's exit do) has its unpublished record dropped: the drain waits for `pending`
    /// to clear, which no one would do in the child.
    pub fn after_fork_in_child(own: Option<&Ring>) {
        let mut cur = RINGS.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY: rings are never unmapped once linked.
            let ring = unsafe { &*cur };
            if !own.is_some_and(|o| ptr::eq(o, ring)) {
                ring.abandon();
            }
            cur = ring.next.load(Ordering::Acquire);
        }
    }

    /// The ring of a thread that is gone without exiting (see [`Self::after_fork_in_child`]).
    fn abandon(&self) {
        self.drop_record_in_progress();
        let _ = self.state.compare_exchange(OWNED, CLOSED, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// The ring of a thread stopped for good in the middle of a record (a fatal signal's
    /// handler, which waits for the drain and never returns to it; see
    /// [`crate::guard::stop_for_good`]): the record is dropped, as after a fork
    /// ([`Self::after_fork_in_child`]), so that the drain takes those before it. Its
    /// thread's still. Async-signal-safe.
    pub fn drop_record_in_progress(&self) {
        self.prod.pending.store(0, Ordering::Release);
    }

    /// Appends `len` bytes of records, written by `write`, to the thread's current
    /// stretch or a new one (see the module docs). Waits while the ring is full
    /// ([`Self::wait_for_space`]), as long as `wanted()` says records are: once it says not
    /// (the session stopped, or the recorder is gone and the drain with it), the record is
    /// dropped, since no one may ever make space. `scratch` is the caller's reusable
    /// buffer, for records that wrap around the ring's end.
    #[inline(always)]
    pub fn push_with(
        &self,
        s: &mut Stretch,
        len: usize,
        scratch: &mut Vec<u8>,
        wanted: fn() -> bool,
        write: impl FnOnce(&mut [u8]),
    ) {
        assert!(len + SEQ_LEN <= RING_CAP, "a batch of records larger than the ring");
        let p = &self.prod;
        let mut head = p.head.load(Ordering::Relaxed);
        // Space first, then `pending`: the drain waits for `pending` to clear, so
        // we must never wait for the drain while it is set.
        if RING_CAP - (head - p.tail_seen.load(Ordering::Relaxed)) < len + SEQ_LEN
            && self.wait_for_space(head, len + SEQ_LEN, wanted).is_none()
        {
            return;
        }
        p.pending.store(1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        if s.left == 0 || CLOCK.load(Ordering::Relaxed) != s.clock {
            self.open_stretch(s, head);
            head += SEQ_LEN;
        }
        s.left -= 1;
        let off = head & (RING_CAP - 1);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it faults on nothing and changes no memory. SSE is
        // part of x86-64's baseline.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let ahead = self.data.add((off + PREFETCH_AHEAD) & (RING_CAP - 1));
            _mm_prefetch::<_MM_HINT_T0>(ahead.cast::<i8>());
        }
        if off + len <= RING_CAP {
            // The common case: encode straight into the ring.
            // SAFETY: [off, off+len) is inside the ring's data, and the space from head
            // to tail+CAP belongs to the producer (checked above); no one else writes it.
            write(unsafe { std::slice::from_raw_parts_mut(self.data.add(off), len) });
        } else {
            scratch.clear();
            scratch.resize(len, 0);
            write(scratch);
            self.copy_in(head, scratch);
        }
        p.head.store(head + len, Ordering::Release);
        p.pending.store(0, Ordering::Release);
    }

    /// Reads the drain's `tail` until `need` bytes are free: yielding a few times, then
    /// sleeping [`FULL_WAIT`] at a time. The drain takes a ring's records in passes some
    /// ms apart; a producer spinning meanwhile takes the CPU from the drains and the
    /// recorder that make the space, which costs the most where following a pool puts more
    /// busy traced processes than cores on the machine (a fork pool of 4 churning workers
    /// on 2 cores: 46% less CPU time and 30% less wall time than yielding all along, the
    /// same for one process). Returns how often it looked, or `None` once `wanted()` says
    /// the records are no longer wanted.
    #[cold]
    fn wait_for_space(&self, head: usize, need: usize, wanted: fn() -> bool) -> Option<u32> {
        let mut looks = 0;
        loop {
            let tail = self.drain.tail.load(Ordering::Acquire);
            self.prod.tail_seen.store(tail, Ordering::Relaxed);
            looks += 1;
            if RING_CAP - (head - tail) >= need {
                return Some(looks);
            }
            if !wanted() {
                return None;
            }
            if looks <= FULL_YIELDS {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            } else {
                std::thread::sleep(FULL_WAIT);
            }
        }
    }

    /// Writes the `Seq` record that opens a new stretch at `head` (not yet published), and
    /// its entry in the index of stretch starts.
    #[cold]
    fn open_stretch(&self, s: &mut Stretch, head: usize) {
        s.clock = advance_clock(s.owner);
        s.left = RESTAMP;
        let seq = Record::Seq { seq: s.clock >> OWNER_BITS, ticks: now_ticks(), thread: s.thread };
        let mut buf = [0u8; SEQ_LEN];
        seq.encode_into(&mut buf);
        self.copy_in(head, &buf);
        let opened = self.prod.opened.load(Ordering::Relaxed);
        self.mark(opened).store(head as u32, Ordering::Relaxed);
        self.prod.opened.store(opened + 1, Ordering::Release);
    }

    /// Entry `i % MARKS` of the index of stretch starts.
    fn mark(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the index has MARKS entries and lives as long as the ring.
        unsafe { &*self.marks.add(i & (MARKS - 1)) }
    }

    fn copy_in(&self, pos: usize, bytes: &[u8]) {
        let off = pos & (RING_CAP - 1);
        let first = bytes.len().min(RING_CAP - off);
        // SAFETY: [off, off+first) and [0, rest) are inside the ring's data, and the
        // space between tail and tail+CAP beyond head is owned by the producer.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(off), first);
            ptr::copy_nonoverlapping(bytes.as_ptr().add(first), self.data, bytes.len() - first);
        }
    }

    fn copy_out(&self, pos: usize, out: &mut [u8]) {
        let off = pos & (RING_CAP - 1);
        let first = out.len().min(RING_CAP - off);
        // SAFETY: [pos, pos+len) lies between tail and a head published with
        // Release and read with Acquire, so the producer is done with those bytes.
        unsafe {
            ptr::copy_nonoverlapping(self.data.add(off), out.as_mut_ptr(), first);
            ptr::copy_nonoverlapping(self.data, out.as_mut_ptr().add(first), out.len() - first);
        }
    }

    /// Up to `SEQ_LEN` bytes at `pos` (fewer if fewer are `avail`), in place or copied
    /// into `tmp` where they wrap around the end.
    fn peek<'a>(&'a self, pos: usize, avail: usize, tmp: &'a mut [u8; SEQ_LEN]) -> &'a [u8] {
        let n = avail.min(SEQ_LEN);
        let off = pos & (RING_CAP - 1);
        if off + n <= RING_CAP {
            // SAFETY: [pos, pos+n) lies between tail and a published head (see copy_out).
            unsafe { std::slice::from_raw_parts(self.data.add(off), n) }
        } else {
            self.copy_out(pos, &mut tmp[..n]);
            &tmp[..n]
        }
    }

    /// Drain side: finds the stretches numbered below `cut` at the start of the ring and
    /// notes each one's extent in `found`; returns where they end, the ring's tail once
    /// they are copied out. It reads only the stretches' `Seq` records, found through the
    /// ring's index of stretch starts. Call with the drain lock held.
    fn find_below(&'static self, cut: u64, floor: u64, found: &mut Vec<Found>) -> usize {
        while self.prod.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
        let head = self.prod.head.load(Ordering::Acquire);
        // Read after `head`: it may count stretches opened beyond `head` since (their
        // entries are whole, published before `opened`), never miss one below it.
        let opened = self.prod.opened.load(Ordering::Acquire);
        let tail = self.drain.tail.load(Ordering::Relaxed);
        // SAFETY: the drain lock is held, so this is the only reference to `open`.
        let open = unsafe { &mut *self.drain.open.get() };
        let mut taken = self.drain.marks_taken.load(Ordering::Relaxed);
        let mut tmp = [0u8; SEQ_LEN];
        // The records before the first `Seq` continue the stretch opened in an earlier pass.
        let mut start = tail;
        let mut at = head;
        while taken < opened {
            // Entries lie within 2^31 bytes of the tail: behind it only when discarded.
            let ahead = self.mark(taken).load(Ordering::Relaxed).wrapping_sub(tail as u32) as i32;
            if ahead < 0 {
                taken += 1;
                continue;
            }
            let pos = tail + ahead as usize;
            if pos >= head {
                break;
            }
            let view = self.peek(pos, head - pos, &mut tmp);
            let Some((seq, ticks, thread)) = peek_seq(view) else {
                // Cannot happen (the producer indexes only its `Seq` records); drop the
                // ring's contents rather than misread them.
                taken = opened;
                start = head;
                break;
            };
            if seq >= cut {
                at = pos;
                break;
            }
            if pos > start && open.seq >= floor {
                found.push(Found::new(self, open, start, pos));
            }
            *open = Open { seq, ticks, thread };
            start = pos + SEQ_LEN;
            taken += 1;
        }
        if at > start && open.seq >= floor {
            found.push(Found::new(self, open, start, at));
        }
        self.drain.marks_taken.store(taken, Ordering::Relaxed);
        at
    }
}

/// One stretch found by the drain: its records are `ring`'s bytes `start..end` (positions
/// in bytes ever written).
#[derive(Clone, Copy)]
struct Found {
    seq: u64,
    ticks: u64,
    thread: u32,
    ring: &'static Ring,
    start: usize,
    end: usize,
}

impl Found {
    fn new(ring: &'static Ring, o: &Open, start: usize, end: usize) -> Self {
        Found { seq: o.seq, ticks: o.ticks, thread: o.thread, ring, start, end }
    }

    /// Appends the stretch's records to `out`.
    fn copy_to(&self, out: &mut Vec<u8>) {
        let base = out.len();
        out.reserve(self.end - self.start);
        // SAFETY: the reserved capacity is at least that long; `copy_out` fills all of
        // it (u8 has no invalid values).
        unsafe {
            let dst =
                std::slice::from_raw_parts_mut(out.as_mut_ptr().add(base), self.end - self.start);
            self.ring.copy_out(self.start, dst);
            out.set_len(base + (self.end - self.start));
        }
    }
}

/// What draining keeps between passes.
pub struct Drain {
    found: Vec<Found>,
    /// Each ring drained this pass, with its tail once its stretches are copied out, and
    /// whether it is then empty and its thread gone.
    tails: Vec<(&'static Ring, usize, bool)>,
    /// Stretches numbered below this are left over from an earlier session: dropped.
    floor: u64,
}

impl Drain {
    pub const fn new() -> Self {
        Drain { found: Vec::new(), tails: Vec::new(), floor: 0 }
    }

    /// Drains every ring's stretches numbered below `cut` and appends them to `out` in
    /// number order, each after a `Stretch` record with its thread and time, copying
    /// straight from the rings. Returns the number of record bytes taken. `to_ns` turns a
    /// stretch's ticks into its time. Call with the drain lock held.
    pub fn drain(&mut self, cut: u64, to_ns: impl FnMut(u64) -> u64, out: &mut Vec<u8>) -> usize {
        self.found.clear();
        self.tails.clear();
        let mut cur = RINGS.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY: rings are never unmapped once linked.
            let ring: &'static Ring = unsafe { &*cur };
            // Read the state before draining: a ring closed before we drained it is
            // empty afterwards, because its owner wrote nothing after closing it.
            let state = ring.state.load(Ordering::Acquire);
            if state != FREE {
                let tail = ring.find_below(cut, self.floor, &mut self.found);
                let emptied = state == CLOSED && ring.prod.head.load(Ordering::Acquire) == tail;
                self.tails.push((ring, tail, emptied));
            }
            cur = ring.next.load(Ordering::Acquire);
        }
        emit(&mut self.found, to_ns, out);
        // Only now may the producers reuse the space, and another thread the ring of one
        // that exited.
        let mut taken = 0;
        for &(ring, tail, emptied) in &self.tails {
            taken += tail - ring.drain.tail.load(Ordering::Relaxed);
            ring.drain.tail.store(tail, Ordering::Release);
            if emptied {
                ring.state.store(FREE, Ordering::Release);
            }
        }
        taken
    }

    /// Empties every ring without reading it (records left from a finished session),
    /// and drops whatever a thread still adds to its old stretch. Call with the drain
    /// lock held.
    pub fn discard_all(&mut self) {
        self.floor = mark();
        let mut cur = RINGS.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY: rings are never unmapped once linked.
            let ring = unsafe { &*cur };
            // `opened` before `head`: a stretch opened in between is either behind the new
            // tail (its entry is skipped) or ahead of it (kept).
            let opened = ring.prod.opened.load(Ordering::Acquire);
            let head = ring.prod.head.load(Ordering::Acquire);
            ring.drain.tail.store(head, Ordering::Release);
            ring.drain.marks_taken.store(opened, Ordering::Relaxed);
            cur = ring.next.load(Ordering::Acquire);
        }
    }
}

/// Writes the stretches in `found` to `out` by number, each after a `Stretch` record with
/// its time in CLOCK_MONOTONIC nanoseconds.
fn emit(found: &mut [Found], mut to_ns: impl FnMut(u64) -> u64, out: &mut Vec<u8>) {
    found.sort_unstable_by_key(|f| f.seq);
    for f in found.iter() {
        Record::Stretch(Header { time_ns: to_ns(f.ticks), thread: f.thread }).append_to(out);
        f.copy_to(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_wire::Decoder;

    /// An empty ring, not linked into [`RINGS`] (a leaked buffer standing in for the
    /// mapping).
    fn test_ring() -> &'static Ring {
        let data: &'static mut [u8] = vec![0u8; RING_CAP].leak();
        let marks: &'static [AtomicU32] =
            (0..MARKS).map(|_| AtomicU32::new(0)).collect::<Vec<_>>().leak();
        Box::leak(Box::new(Ring {
            next: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU32::new(OWNED),
            data: data.as_mut_ptr(),
            marks: marks.as_ptr(),
            prod: ProducerSide::new(),
            drain: DrainSide::new(),
        }))
    }

    #[test]
    fn stretches_go_out_by_number_with_their_thread_and_time() {
        // One ring's bytes holding four stretches, the last wrapping around the ring's
        // end, as two threads would leave them.
        let ring = test_ring();
        let mut found = Vec::new();
        let mut at = 100;
        for (seq, thread, n) in [(3, 0, 2), (4, 1, 3), (5, 1, 1), (7, 0, 2)] {
            if seq == 7 {
                at = RING_CAP - 7;
            }
            let start = at;
            for i in 0..n {
                let mut rec = Vec::new();
                Record::Pop { n: seq as u32 * 10 + i }.append_to(&mut rec);
                ring.copy_in(at, &rec);
                at += rec.len();
            }
            let o = Open { seq, ticks: seq * 1000, thread };
            found.push(Found::new(ring, &o, start, at));
        }
        found.swap(0, 3);
        let mut out = Vec::new();
        emit(&mut found, |t| t, &mut out);
        let mut d = Decoder::default();
        let mut got = Vec::new();
        let mut pos = 0;
        while let Some((h, r, used)) = d.next(&out[pos..]).unwrap() {
            let Record::Pop { n } = r else { panic!("{r:?}") };
            got.push((h.time_ns, h.thread, n));
            pos += used;
        }
        let want = [
            (3000, 0, 30),
            (3000, 0, 31),
            (4000, 1, 40),
            (4000, 1, 41),
            (4000, 1, 42),
            (5000, 1, 50),
            (7000, 0, 70),
            (7000, 0, 71),
        ];
        assert_eq!(got, want);
    }

    /// Held by the tests that move the process-wide [`CLOCK`], which run at once on other
    /// threads: one that checks the clock's value has it to itself.
    static CLOCK_USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn clock_to_myself() -> std::sync::MutexGuard<'static, ()> {
        CLOCK_USERS.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes `n` `Pop` records numbered from `first` as the ring's producer, the first
    /// one opening a new stretch.
    fn push_pops(ring: &Ring, s: &mut Stretch, scratch: &mut Vec<u8>, first: u32, n: u32) {
        s.restamp();
        for i in first..first + n {
            let rec = Record::Pop { n: i };
            ring.push_with(
                s,
                rec.encoded_len(),
                scratch,
                || true,
                |out| {
                    rec.encode_into(out);
                },
            );
        }
    }

    /// One drain pass over `ring` alone: the `Pop` numbers of its stretches below `cut`, as
    /// the drain writes them (checking that each is `thread`'s), and how many stretches.
    fn drain_below(ring: &'static Ring, cut: u64, thread: u32) -> (Vec<u32>, usize) {
        let mut found = Vec::new();
        let tail = ring.find_below(cut, 0, &mut found);
        let mut out = Vec::new();
        emit(&mut found, |t| t, &mut out);
        ring.drain.tail.store(tail, Ordering::Release);
        let mut d = Decoder::default();
        let (mut pops, mut pos) = (Vec::new(), 0);
        while let Some((h, r, used)) = d.next(&out[pos..]).unwrap() {
            let Record::Pop { n } = r else { panic!("{r:?}") };
            assert_eq!(h.thread, thread);
            pops.push(n);
            pos += used;
        }
        (pops, found.len())
    }

    #[test]
    fn the_ring_of_a_thread_gone_in_the_middle_of_a_record_is_drained_and_closed() {
        let _clock = clock_to_myself();
        let ring = test_ring();
        let (mut s, mut scratch) = (Stretch::new(3), Vec::new());
        push_pops(ring, &mut s, &mut scratch, 0, 5);
        // Its owner did not come along into a forked child while writing a record.
        ring.prod.pending.store(1, Ordering::Relaxed);
        ring.abandon();
        assert_eq!(drain_below(ring, u64::MAX, 3), ((0..5).collect(), 1));
        assert_eq!(ring.state.load(Ordering::Relaxed), CLOSED);
    }

    #[test]
    fn a_record_its_thread_was_stopped_for_good_in_the_middle_of_is_dropped_not_waited_for() {
        let _clock = clock_to_myself();
        let ring = test_ring();
        let (mut s, mut scratch) = (Stretch::new(4), Vec::new());
        push_pops(ring, &mut s, &mut scratch, 0, 5);
        // A fatal signal's handler interrupted its owner while writing a record.
        ring.prod.pending.store(1, Ordering::Relaxed);
        ring.drop_record_in_progress();
        assert_eq!(drain_below(ring, u64::MAX, 4), ((0..5).collect(), 1));
        // Still its thread's: the handler's thread lives until the recording is complete.
        assert_eq!(ring.state.load(Ordering::Relaxed), OWNED);
    }

    #[test]
    fn the_drain_finds_each_stretch_through_the_index_and_leaves_those_at_the_cut() {
        let _clock = clock_to_myself();
        let ring = test_ring();
        let mut s = Stretch::new(7);
        let mut scratch = Vec::new();
        let (mut from, mut next) = (0, 0);
        // Over three times the ring's size in passes, so positions wrap around its end
        // and the index's entries are reused.
        for pass in 0..40u32 {
            let sizes = [1, 3, 255, 256, 100_000, 7 + pass];
            for &n in &sizes {
                push_pops(ring, &mut s, &mut scratch, next, n);
                next += n;
            }
            let cut = mark();
            // Opened after the cut: left for the next pass.
            push_pops(ring, &mut s, &mut scratch, next, 5);
            let (pops, stretches) = drain_below(ring, cut, 7);
            assert_eq!(pops, (from..next).collect::<Vec<_>>(), "pass {pass}");
            // A stretch takes RESTAMP records at most: 391 for the 100,000; and the one
            // left from the pass before. (More where another test's thread moved the
            // process-wide clock meanwhile.)
            assert!(stretches >= 5 + 391 + usize::from(pass > 0), "pass {pass}");
            from = next;
            next += 5;
        }
        assert!(ring.prod.head.load(Ordering::Relaxed) > 3 * RING_CAP);
    }

    /// Two producers write while the drain takes their stretches below marks set a
    /// millisecond earlier, as the drain thread does: every record arrives once, in order,
    /// with its thread, over several laps of each ring.
    #[test]
    fn records_of_concurrent_producers_all_arrive_in_order() {
        let _clock = clock_to_myself();
        const N: u32 = 1_000_000;
        let rings = [test_ring(), test_ring()];
        let producers: Vec<_> = rings
            .iter()
            .enumerate()
            .map(|(k, &ring)| {
                std::thread::spawn(move || {
                    let mut s = Stretch::new(10 + k as u32);
                    let mut scratch = Vec::new();
                    for first in (0..N).step_by(997) {
                        push_pops(ring, &mut s, &mut scratch, first, 997.min(N - first));
                    }
                })
            })
            .collect();
        let mut got = [Vec::new(), Vec::new()];
        let mut take = |cut: u64| {
            for (k, &ring) in rings.iter().enumerate() {
                got[k].extend(drain_below(ring, cut, 10 + k as u32).0);
            }
        };
        let mut cut = mark();
        while !producers.iter().all(|p| p.is_finished()) {
            std::thread::sleep(std::time::Duration::from_millis(1));
            take(cut);
            cut = mark();
        }
        for p in producers {
            p.join().unwrap();
        }
        take(u64::MAX);
        for (k, ring) in rings.iter().enumerate() {
            assert!(got[k].iter().copied().eq(0..N), "ring {k}: {} records", got[k].len());
            assert!(ring.prod.head.load(Ordering::Relaxed) > RING_CAP);
        }
    }

    /// Regression (issue 20's benchmark, bench/processes.py): a producer whose ring was
    /// full yielded until the drain made space, taking the CPU from the drains and the
    /// recorder that make it; a fork pool of 4 traced workers on 2 cores spent nearly half
    /// its CPU time so. It now yields a few times, then sleeps.
    #[test]
    fn a_producer_on_a_full_ring_sleeps_until_the_drain_makes_space() {
        let ring = test_ring();
        ring.prod.head.store(RING_CAP, Ordering::Release);
        let start = std::time::Instant::now();
        let producer = std::thread::spawn(move || ring.wait_for_space(RING_CAP, 64, || true));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!producer.is_finished(), "the ring is still full");
        ring.drain.tail.store(4096, Ordering::Release);
        let looks = producer.join().unwrap().unwrap();
        assert_eq!(ring.prod.tail_seen.load(Ordering::Relaxed), 4096);
        // Each look after the yields follows a sleep of at least FULL_WAIT: a bound that
        // holds however slow the machine is; a spinning producer looks tens of thousands
        // of times in those 50 ms.
        let waited = start.elapsed();
        let most = FULL_YIELDS + 2 + (waited.as_micros() / FULL_WAIT.as_micros()) as u32;
        assert!(looks <= most, "{looks} looks at the ring's tail in {waited:?}");
    }

    /// Regression: a producer waiting on a full ring when the recorder went away (its pipe
    /// broke, so recording was cut off and nothing drains the rings) waited forever, and
    /// the program with it. It now drops its record once records are no longer wanted.
    #[test]
    fn a_producer_on_a_full_ring_gives_up_once_records_are_no_longer_wanted() {
        static WANTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
        let ring = test_ring();
        ring.prod.head.store(RING_CAP, Ordering::Release);
        let mut s = Stretch::new(5);
        let producer = std::thread::spawn(move || {
            let rec = Record::Pop { n: 1 };
            ring.push_with(
                &mut s,
                rec.encoded_len(),
                &mut Vec::new(),
                || WANTED.load(Ordering::Acquire),
                |out| {
                    rec.encode_into(out);
                },
            );
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!producer.is_finished(), "the ring is full and records are wanted");
        WANTED.store(false, Ordering::Release);
        producer.join().unwrap();
        assert_eq!(ring.prod.head.load(Ordering::Relaxed), RING_CAP, "the record is dropped");
        assert_eq!(ring.prod.pending.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_clock_orders_threads_and_each_number_is_one_stretch() {
        let _clock = clock_to_myself();
        let mut a = Stretch::new(0);
        let mut b = Stretch::new(1);
        let first = advance_clock(a.owner);
        a.clock = first;
        // `a` keeps its stretch until someone else advances the clock.
        assert_eq!(CLOCK.load(Ordering::Relaxed), a.clock);
        b.clock = advance_clock(b.owner);
        assert!(b.clock >> OWNER_BITS > first >> OWNER_BITS);
        assert_ne!(CLOCK.load(Ordering::Relaxed), a.clock, "a must open a new stretch");
        let m = mark();
        assert!(m > b.clock >> OWNER_BITS);
        assert_ne!(CLOCK.load(Ordering::Relaxed), b.clock);
    }
}
