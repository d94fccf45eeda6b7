//! Anonymous mappings made by C code, and big blocks it allocates: reserved address space,
//! and how much of it is used.
//!
//! Layer: the emit layer, below the drain ([`crate::drain`]) that scans the mappings, the
//! native hooks that register them and [`crate::emit::record_block`].
//!
//! An `mmap` reserves address space; its pages take memory only once touched. OpenBLAS maps
//! a 32 MiB buffer per thread when it loads and touches a fraction of it; allocators such as
//! jemalloc and mimalloc map big regions and fill them over time. Counting a mapping's whole
//! length as heap made `import numpy` report twice its RSS. So the hooks record a mapping as
//! [`AllocKind::Reserved`] (not heap) and register the anonymous ones here; the drain thread
//! looks at their residency with `mincore` every [`SCAN_PERIOD`] (less often when that gets
//! costly) and once more at the end, and reports changes as [`Record::Resident`], which
//! the recorder turns into heap memory on the mapping's stack. File mappings are recorded as
//! reserved only: their resident pages are the page cache, shared with every reader.
//!
//! Blocks of [`BIG_BLOCK`] bytes or more that C code asks `malloc` (and its family) or
//! Python's raw domain for are reservations too: glibc serves them with a mapping of their
//! own, whose pages are untouched until written (SuperLU, under
//! `scipy.sparse.linalg.spsolve`, mallocs half a gigabyte of workspace and writes a
//! fraction of it; `lzma.compress` asks for 93 MiB; `calloc`'s zeroed blocks, such as
//! `numpy.zeros`, are untouched until used). They are registered as blocks
//! ([`add_block`]); their free takes them out and measures them once more first
//! ([`take_block`]), so a big block that lives between two scans is counted at its free.
//!
//! The registry is a `BTreeMap` behind a spin lock (a fork resets it: a child never waits
//! for a holder that did not follow it). Hooks hold it for an insert or a trim; the scan
//! copies the ranges out, calls `mincore` without the lock, and reports only for mappings
//! still registered as they were. The scan does without it when its holder is a thread a
//! fatal signal stopped for good ([`crate::guard::stopped_for_good`]), which never
//! releases it: the drain's last pass then still sends the records.

use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use memlens_wire::Record;

use crate::clock::now_ns;

/// How often residency is looked at: what the heap's timeline of mapped memory lags by.
const SCAN_PERIOD: Duration = Duration::from_millis(50);

/// A scan may take this share of the drain thread's time at most (the period grows).
const SCAN_SHARE: u64 = 50;

/// Changes smaller than this are reported only by the final scan: a mapping's residency
/// moves by pages, and reporting each would cost two events.
const REPORT_STEP: usize = 64 * 1024;

/// Pages per `mincore` call: 256 MiB of address space (of 4 KiB pages) per 64 KiB of vector.
const MINCORE_PAGES: usize = 64 * 1024;

/// Blocks C code asks for (the malloc family, Python's raw domain) that are this big or
/// bigger are reservations (glibc's own threshold for serving a block with a mapping of
/// its own starts at 128 KiB).
pub const BIG_BLOCK: usize = 256 * 1024;

/// Pages per `mincore` call when a block is allocated or freed (on the thread's stack).
const FREE_PAGES: usize = 1024;

/// How many registered blocks hash to each slot: a free asks the registry (a lock) only
/// when its address's slot is not empty.
const FILTER_SLOTS: usize = 4096;
static FILTER: [AtomicU32; FILTER_SLOTS] = [const { AtomicU32::new(0) }; FILTER_SLOTS];

fn slot(addr: usize) -> &'static AtomicU32 {
    let h = (addr as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52;
    &FILTER[h as usize % FILTER_SLOTS]
}

#[derive(Clone, Copy)]
struct Mapping {
    /// The range still mapped (trimmed by partial `munmap`s).
    start: usize,
    end: usize,
    /// The logical clock ([`crate::ring`]) when the mapping's record was written: it is on
    /// the pipe once the drain cut past it, and only then may its residency follow it.
    seq: u64,
    /// Bytes last reported resident.
    resident: usize,
    /// A block C code allocated (taken out by its free), not a mapping.
    block: bool,
}

struct Registry {
    /// By the address the mapping was recorded at.
    map: UnsafeCell<BTreeMap<usize, Mapping>>,
    /// The kernel id of the thread holding the lock, 0 if none.
    lock: AtomicI32,
}

// SAFETY: `map` is only reached through `with`, which holds `lock`.
unsafe impl Sync for Registry {}

static REGISTRY: Registry =
    Registry { map: UnsafeCell::new(BTreeMap::new()), lock: AtomicI32::new(0) };

/// Runs `f` on the registry, under its lock.
fn with<R>(f: impl FnOnce(&mut BTreeMap<usize, Mapping>) -> R) -> R {
    locked(false, f).unwrap_or_else(|| unreachable!("the lock is waited for"))
}

/// Runs `f` on the registry under its lock, or not at all when the lock's holder is a
/// thread stopped for good ([`crate::guard::stopped_for_good`]).
fn with_unless_stuck<R>(f: impl FnOnce(&mut BTreeMap<usize, Mapping>) -> R) -> Option<R> {
    locked(true, f)
}

/// Runs `f` under the registry's lock, waiting for it (unless its holder is stopped for
/// good and `unless_stuck`: then not at all, `None`).
fn locked<R>(unless_stuck: bool, f: impl FnOnce(&mut BTreeMap<usize, Mapping>) -> R) -> Option<R> {
    let me = crate::guard::gettid();
    while let Err(holder) =
        REGISTRY.lock.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
    {
        if unless_stuck && crate::guard::stopped_for_good() == Some(holder) {
            return None;
        }
        std::thread::yield_now();
    }
    // SAFETY: we hold the lock, so this is the only reference.
    let r = f(unsafe { &mut *REGISTRY.map.get() });
    REGISTRY.lock.store(0, Ordering::Release);
    Some(r)
}

/// Whether [addr, addr+len) lies inside a registered mapping (a `MAP_FIXED` map over part of
/// a reservation: the reservation already counts it).
pub fn inside_registered(addr: usize, len: usize) -> bool {
    with(|m| {
        m.range(..=addr).next_back().is_some_and(|(_, r)| r.start <= addr && addr + len <= r.end)
    })
}

/// Registers an anonymous mapping whose `Reserved` record was just written.
pub fn add(addr: usize, len: usize) {
    insert(addr, len, false, 0);
}

/// Registers a big block C code allocated ([`BIG_BLOCK`]) whose `Reserved` record was just
/// written, and returns its resident bytes, which the caller reports: a block the
/// allocator made of memory it had used before (or moved, for a `realloc`) is in memory
/// already; a block of pages fresh from the system is not, but for the one its allocator's
/// header is on.
pub fn add_block(addr: usize, len: usize) -> usize {
    let resident = resident_bytes(addr, addr.saturating_add(len), &mut [0; FREE_PAGES]);
    slot(addr).fetch_add(1, Ordering::Relaxed);
    insert(addr, len, true, resident);
    resident
}

fn insert(addr: usize, len: usize, block: bool, resident: usize) {
    let seq = crate::ring::clock_seq();
    let end = addr.saturating_add(len);
    let r = Mapping { start: addr, end, seq, resident, block };
    with(|m| {
        // A block freed behind our back (a free the hooks did not see) left its entry.
        forget(m, addr);
        m.insert(addr, r)
    });
}

/// Takes the entry at `key` out, keeping [`FILTER`]'s count of registered blocks. Under the
/// registry's lock.
fn forget(m: &mut BTreeMap<usize, Mapping>, key: usize) -> Option<Mapping> {
    let r = m.remove(&key)?;
    if r.block {
        slot(key).fetch_sub(1, Ordering::Relaxed);
    }
    Some(r)
}

/// A block about to be freed: if it is a registered big block, takes it out and returns
/// whether it is one and, if they changed since the last report, its resident bytes now,
/// which the caller reports before the free. Nearly every free is answered by the filter,
/// without the lock.
pub fn take_block(addr: usize) -> Option<Option<usize>> {
    if slot(addr).load(Ordering::Relaxed) == 0 {
        return None;
    }
    let r = with(|m| match m.get(&addr) {
        Some(r) if r.block => forget(m, addr),
        _ => None,
    })?;
    // The block is still allocated: the caller frees it after this.
    Some(resident_now(&r))
}

/// `munmap(addr, len)` is about to unmap the mapping registered at `addr` whole: its
/// resident bytes now, if they changed since the last report (a mapping written and
/// unmapped between two scans is counted then). The entry stays for [`remove`].
pub fn unmapping(addr: usize, len: usize) -> Option<usize> {
    let end = addr.saturating_add(len);
    let r = with(|m| m.get(&addr).filter(|r| r.start == addr && r.end <= end).copied())?;
    resident_now(&r)
}

/// A registered range's resident bytes, if they are not those last reported.
fn resident_now(r: &Mapping) -> Option<usize> {
    // Whole in memory when last looked at (a block made of memory used before): it still is.
    if r.resident >= span_bytes(r.start, r.end) {
        return None;
    }
    let now = resident_bytes(r.start, r.end, &mut [0; FREE_PAGES]);
    (now != r.resident).then_some(now)
}

/// `munmap(addr, len)`: trims or drops the registered mappings it covers; returns the
/// recorded address of each one it drops other than `addr` itself (whose free the caller
/// records anyway), for the caller to record their frees: after the lock is released, since
/// a record can wait for the drain (a full ring), which takes the lock to scan.
pub fn remove(addr: usize, len: usize) -> Vec<usize> {
    let end = addr.saturating_add(len);
    with(|m| {
        let hit: Vec<usize> =
            m.range(..end).rev().take_while(|(_, r)| r.end > addr).map(|(&k, _)| k).collect();
        let mut dropped = Vec::new();
        for key in hit {
            let Some(r) = m.get_mut(&key) else { continue };
            if addr <= r.start && end >= r.end {
                forget(m, key);
                if key != addr {
                    dropped.push(key);
                }
            } else if addr <= r.start {
                r.start = end;
            } else {
                // The tail, or a hole in the middle (the part after it is then not looked at).
                r.end = addr;
            }
        }
        dropped
    })
}

/// Forgets every mapping (a new tracing session: its recording knows none of them).
pub fn clear() {
    with(|m| m.clear());
    FILTER.iter().for_each(|s| s.store(0, Ordering::Relaxed));
}

/// In a forked child: the lock may have been held by a thread that did not follow.
pub fn after_fork_in_child() {
    REGISTRY.lock.store(0, Ordering::Release);
}

/// The drain thread's side: scans and reports.
pub struct Scanner {
    /// (key, start, end, seq) of the mappings being looked at.
    ranges: Vec<(usize, usize, usize, u64)>,
    resident: Vec<usize>,
    vec: Vec<u8>,
    next_ns: u64,
}

impl Scanner {
    pub const fn new() -> Scanner {
        Scanner { ranges: Vec::new(), resident: Vec::new(), vec: Vec::new(), next_ns: 0 }
    }

    /// Appends a `Resident` record (of no thread) to `out` for each mapping recorded before
    /// `cut` whose residency changed: by [`REPORT_STEP`] or more, or at all when `exact`.
    /// Does nothing before its time unless `exact`.
    pub fn scan(&mut self, cut: u64, exact: bool, out: &mut Vec<u8>) {
        let began = now_ns();
        if !exact && began < self.next_ns {
            return;
        }
        self.ranges.clear();
        let ranges = &mut self.ranges;
        let copied = with_unless_stuck(|m| {
            ranges.extend(
                m.iter().filter(|(_, r)| r.seq < cut).map(|(&k, r)| (k, r.start, r.end, r.seq)),
            )
        });
        if copied.is_none() {
            return;
        }
        self.resident.clear();
        self.vec.resize(MINCORE_PAGES, 0);
        for &(_, start, end, _) in &self.ranges {
            self.resident.push(resident_bytes(start, end, &mut self.vec));
        }
        let (ranges, resident) = (&self.ranges, &self.resident);
        with_unless_stuck(|m| {
            for (&(key, _, _, seq), &now) in ranges.iter().zip(resident) {
                let Some(r) = m.get_mut(&key) else { continue };
                let step = now.abs_diff(r.resident);
                if r.seq != seq || step == 0 || (!exact && step < REPORT_STEP) {
                    continue;
                }
                r.resident = now;
                crate::recording::encode_unthreaded(
                    &Record::Resident { address: key as u64, bytes: now as u64 },
                    out,
                );
            }
        });
        let took = now_ns().saturating_sub(began);
        self.next_ns = began + (SCAN_PERIOD.as_nanos() as u64).max(took * SCAN_SHARE);
    }
}

/// 4 KiB on x86-64; 16 or 64 KiB on some arm64 kernels. glibc answers from memory.
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// The bytes of the pages [start, end) touches: all of them resident is as resident as it gets.
fn span_bytes(start: usize, end: usize) -> usize {
    let page = page_size();
    end.next_multiple_of(page) - (start & !(page - 1))
}

/// Resident bytes of [start, end), by `mincore` (`vec.len()` pages at a time); 0 for a
/// range that is no longer mapped.
fn resident_bytes(start: usize, end: usize, vec: &mut [u8]) -> usize {
    let page = page_size();
    let mut pages = 0;
    let mut at = start & !(page - 1);
    while at < end {
        let n = ((end - at).div_ceil(page)).min(vec.len());
        // SAFETY: `vec` has room for one byte per page of the range; mincore only reads the
        // page tables of [at, at + n pages) and fails (ENOMEM) if part of it is unmapped.
        let rc = unsafe { libc::mincore(at as *mut libc::c_void, n * page, vec.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        pages += vec[..n].iter().filter(|&&b| b & 1 != 0).count();
        at += n * page;
    }
    pages * page
}

#[cfg(test)]
mod tests {
    use super::{locked, resident_bytes, Scanner};

    /// The drain's last pass scans while the thread a fatal signal stopped holds the
    /// registry's lock (it was in a hook): the scan does without, instead of waiting forever.
    #[test]
    fn a_scan_does_without_the_lock_a_thread_stopped_for_good_holds() {
        let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let (held_tx, release_rx) = (held.0, release.1);
        let holder = std::thread::spawn(move || {
            locked(false, |_| {
                crate::guard::stop_for_good();
                held_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
        });
        held.1.recv().unwrap();
        let mut out = Vec::new();
        Scanner::new().scan(u64::MAX, true, &mut out);
        assert!(out.is_empty());
        release.0.send(()).unwrap();
        holder.join().unwrap();
    }

    /// Residency counts the system's pages (with a 4 KiB page hard-coded, a 16 KiB-page arm64
    /// kernel fails every call: the range passed to mincore overruns the mapping).
    #[test]
    fn counts_the_touched_pages_of_the_systems_size() {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = 16 * page;
        let (prot, flags) =
            (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS);
        // SAFETY: a new anonymous mapping, unmapped at the end of the test.
        let at = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
        assert_ne!(at, libc::MAP_FAILED);
        let start = at as usize;
        let mut vec = vec![0; 4];
        assert_eq!(resident_bytes(start, start + len, &mut vec), 0);
        for i in [0, 5, 6, 15] {
            // SAFETY: a byte inside the mapping, which is writable.
            unsafe { ((start + i * page) as *mut u8).write_volatile(1) };
        }
        assert_eq!(resident_bytes(start, start + len, &mut vec), 4 * page);
        // A range from inside a page counts whole pages.
        assert_eq!(resident_bytes(start + 4 * page + 1, start + 6 * page + 1, &mut vec), 2 * page);
        // SAFETY: the mapping made above, not used after this.
        unsafe { libc::munmap(at, len) };
    }
}
