//! Per-thread single-producer/single-consumer byte rings and their registry.
//!
//! Each traced thread owns one ring and appends encoded wire records to it; the drain
//! thread is the only consumer. Rings live in memory from `mmap` (never malloc, so
//! they do not show up as traced allocations), are linked into a lock-free
//! push-only list, and are reused after their thread exits and they are drained.
//!
//! Ordering protocol (what makes the drain's merge by time correct): a producer sets
//! `pending`, *then* reads the clock, writes, publishes `head` and clears `pending`.
//! The drain takes its cutoff T = now - [`crate::tracing`]'s margin (>= 1 ms), then waits
//! for `pending` to clear before reading `head`. A record stamped <= T had its
//! `pending` store issued over a millisecond before the drain looks (far longer than
//! a store takes to become visible), so it is either published or still pending, and
//! is never skipped; a record stamped later goes out in a later batch. This avoids a
//! full memory fence on every record.

use std::ptr;
use std::sync::atomic::{compiler_fence, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use memlens_wire::{peek_time, Header, Record};

use crate::clock::now_ticks;
use crate::real::real;

/// Ring capacity: 4 MiB holds ~120,000 allocation records, tens of ms of the most
/// allocation-heavy Python thread; the drain runs continuously while rings are busy.
pub const RING_CAP: usize = 4 << 20;

const FREE: u32 = 0;
const OWNED: u32 = 1;
const CLOSED: u32 = 2;

pub struct Ring {
    next: AtomicPtr<Ring>,
    state: AtomicU32,
    pending: AtomicU32,
    /// Bytes ever written (producer-owned).
    head: AtomicUsize,
    /// Bytes ever consumed (drain-owned).
    tail: AtomicUsize,
    data: *mut u8,
}

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
        let mem = map_anon(std::mem::size_of::<Ring>() + RING_CAP);
        let ring_ptr = mem.cast::<Ring>();
        // SAFETY: the mapping is large enough, page-aligned and exclusively ours.
        unsafe {
            ring_ptr.write(Ring {
                next: AtomicPtr::new(ptr::null_mut()),
                state: AtomicU32::new(OWNED),
                pending: AtomicU32::new(0),
                head: AtomicUsize::new(0),
                tail: AtomicUsize::new(0),
                data: mem.add(std::mem::size_of::<Ring>()),
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

    /// Appends records, all stamped with one reading of the clock (one hook call's
    /// stack changes and its allocation belong together). Waits (yielding) while
    /// the ring is full. `scratch` is the caller's reusable encoding buffer.
    pub fn push_all(&self, thread: u32, recs: &[Record<'_>], scratch: &mut Vec<u8>) {
        let len: usize = recs.iter().map(|r| r.encoded_len()).sum();
        assert!(len <= RING_CAP, "a batch of records larger than the ring");
        let head = self.head.load(Ordering::Relaxed);
        // Space first, then `pending`: the drain waits for `pending` to clear, so
        // we must never wait for the drain while it is set.
        while RING_CAP - (head - self.tail.load(Ordering::Acquire)) < len {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        self.pending.store(1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        // Ticks, turned into nanoseconds by the drain (clock.rs).
        let header = Header { time_ns: now_ticks(), thread };
        let off = head & (RING_CAP - 1);
        if off + len <= RING_CAP {
            // The common case: encode straight into the ring.
            // SAFETY: [off, off+len) is inside the ring's data, and the space from head
            // to tail+CAP belongs to the producer (checked above); no one else writes it.
            let dst = unsafe { std::slice::from_raw_parts_mut(self.data.add(off), len) };
            encode_all(recs, header, dst);
        } else {
            scratch.clear();
            scratch.resize(len, 0);
            encode_all(recs, header, scratch);
            self.copy_in(head, scratch);
        }
        self.head.store(head + len, Ordering::Release);
        self.pending.store(0, Ordering::Release);
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

    /// Drain side: moves every complete record stamped <= `cutoff` into `out`.
    fn take_until(&self, cutoff: u64, out: &mut Vec<u8>) {
        while self.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        // Find where the records to take end by their headers, then copy them at once.
        let mut end = tail;
        let mut hdr = [0u8; 12];
        while head - end >= 12 {
            self.copy_out(end, &mut hdr);
            if peek_time(&hdr).unwrap_or(0) > cutoff {
                break;
            }
            end += 4 + u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize;
        }
        let start = out.len();
        out.resize(start + (end - tail), 0);
        self.copy_out(tail, &mut out[start..]);
        self.tail.store(end, Ordering::Release);
    }
}

/// Drains every ring up to `cutoff` and appends the records, merged by time (each
/// thread's own order preserved), to `out`. `scratch` is reused between calls.
/// Returns the number of bytes taken.
pub fn drain_all(cutoff: u64, scratch: &mut Vec<Vec<u8>>, out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    let mut cur = RINGS.load(Ordering::Acquire);
    while !cur.is_null() {
        // SAFETY: rings are never unmapped once linked.
        let ring = unsafe { &*cur };
        // Read the state before draining: a ring closed before we drained it is
        // empty afterwards, because its owner wrote nothing after closing it.
        let state = ring.state.load(Ordering::Acquire);
        if state != FREE {
            if scratch.len() <= n {
                scratch.push(Vec::new());
            }
            scratch[n].clear();
            ring.take_until(cutoff, &mut scratch[n]);
            if state == CLOSED
                && ring.head.load(Ordering::Acquire) == ring.tail.load(Ordering::Relaxed)
            {
                ring.state.store(FREE, Ordering::Release);
            }
            if !scratch[n].is_empty() {
                n += 1;
            }
        }
        cur = ring.next.load(Ordering::Acquire);
    }
    let before = out.len();
    if n == 1 && out.is_empty() {
        // One thread's records: already in order, no merge (nor copy) needed.
        std::mem::swap(out, &mut scratch[0]);
    } else {
        merge(&scratch[..n], out);
    }
    out.len() - before
}

fn encode_all(recs: &[Record<'_>], header: Header, out: &mut [u8]) {
    let mut at = 0;
    for r in recs {
        at += r.encode_into(header, &mut out[at..]).unwrap_or(0);
    }
}

/// Empties every ring without reading it (records left from a finished session).
/// Call with the drain lock held.
pub fn discard_all() {
    let mut cur = RINGS.load(Ordering::Acquire);
    while !cur.is_null() {
        // SAFETY: rings are never unmapped once linked.
        let ring = unsafe { &*cur };
        let head = ring.head.load(Ordering::Acquire);
        ring.tail.store(head, Ordering::Release);
        cur = ring.next.load(Ordering::Acquire);
    }
}

/// k-way merge of per-thread record runs by timestamp; ties keep run order.
///
/// Threads holding the GIL take turns of milliseconds, so runs interleave in long
/// stretches: each step copies, in one block, every record of the earliest run up to the
/// next record due from another run.
fn merge(runs: &[Vec<u8>], out: &mut Vec<u8>) {
    if runs.len() == 1 {
        out.extend_from_slice(&runs[0]);
        return;
    }
    let mut pos = vec![0usize; runs.len()];
    loop {
        // The run with the earliest next record, and the earliest next record of the
        // others (with its run, for ties).
        let mut best: Option<(u64, usize)> = None;
        let mut next: Option<(u64, usize)> = None;
        for (i, run) in runs.iter().enumerate() {
            let Some(t) = peek_time(&run[pos[i]..]) else { continue };
            if best.is_none_or(|(bt, _)| t < bt) {
                next = best;
                best = Some((t, i));
            } else if next.is_none_or(|(nt, _)| t < nt) {
                next = Some((t, i));
            }
        }
        let Some((_, i)) = best else { break };
        let run = &runs[i];
        let start = pos[i];
        let mut end = start;
        while let Some(t) = peek_time(&run[end..]) {
            // A record of run i goes before the other run's next one if it is earlier,
            // or as early and run i comes first.
            let before = next.is_none_or(|(nt, j)| t < nt || (t == nt && i < j));
            if !before {
                break;
            }
            end += 4 + u32::from_le_bytes(run[end..end + 4].try_into().unwrap()) as usize;
        }
        out.extend_from_slice(&run[start..end]);
        pos[i] = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(time: u64, thread: u32) -> Vec<u8> {
        let r = Record::Pop { n: thread };
        let mut b = vec![0u8; r.encoded_len()];
        r.encode_into(Header { time_ns: time, thread }, &mut b);
        b
    }

    #[test]
    fn merge_copies_stretches_and_keeps_ties_in_run_order() {
        let a: Vec<u8> = [rec(1, 0), rec(2, 0), rec(3, 0), rec(7, 0), rec(8, 0)].concat();
        let b: Vec<u8> = [rec(3, 1), rec(4, 1), rec(5, 1), rec(8, 1)].concat();
        let c: Vec<u8> = [rec(0, 2), rec(9, 2)].concat();
        let mut out = Vec::new();
        merge(&[a, b, c], &mut out);
        let mut got = Vec::new();
        let mut p = 0;
        while let Some((h, _, n)) = memlens_wire::decode(&out[p..]).unwrap() {
            got.push((h.time_ns, h.thread));
            p += n;
        }
        let want = [
            (0, 2),
            (1, 0),
            (2, 0),
            (3, 0),
            (3, 1),
            (4, 1),
            (5, 1),
            (7, 0),
            (8, 0),
            (8, 1),
            (9, 2),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn merge_orders_by_time_and_keeps_thread_order() {
        let a: Vec<u8> = [rec(1, 0), rec(5, 0), rec(5, 0)].concat();
        let b: Vec<u8> = [rec(2, 1), rec(5, 1), rec(9, 1)].concat();
        let mut out = Vec::new();
        merge(&[a, b], &mut out);
        let mut got = Vec::new();
        let mut p = 0;
        while let Some((h, _, n)) = memlens_wire::decode(&out[p..]).unwrap() {
            got.push((h.time_ns, h.thread));
            p += n;
        }
        assert_eq!(got, vec![(1, 0), (2, 1), (5, 0), (5, 0), (5, 1), (9, 1)]);
    }
}
