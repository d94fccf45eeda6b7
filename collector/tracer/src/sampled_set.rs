//! The addresses of the live sampled blocks (`memlens run --sample`): a free is recorded
//! only when its address is one of them, so that sampled blocks leave the live set and
//! the far more numerous frees of unsampled blocks cost one lookup.
//!
//! Layer: foundations; imports nothing of the tracer.
//!
//! A block may be freed on any thread, so the set is shared by all threads. Nearly every
//! free asks about an address that is not in it, and that lookup takes no lock: it reads an
//! open-addressing table (linear probing) between two reads of a sequence counter, and
//! tries again if a removal or a resize ran meanwhile (a seqlock). Insertions and removals,
//! one each per sampled block (a few per MiB allocated), hold a spin lock. A removal shifts
//! the entries after it back (no tombstones, so probes stay short however many blocks come
//! and go); an insertion only fills an empty slot, which cannot hide another entry from a
//! reader, so it leaves the counter alone. The table doubles at half full; the old one is
//! never freed (a reader may still be probing it), which costs at most the final table's
//! size again. The table's memory comes from libc through [`crate::real::RealAllocator`],
//! so it is never recorded.
//!
//! In front of the table sits a filter small enough to stay in the first-level cache: a
//! count of the entries per bucket of addresses ([`FILTER_LEN`] buckets of one byte, a
//! counting Bloom filter with one hash). A free whose bucket counts 0 (nearly all of them)
//! is answered without reading the table, whose slot would be a cache miss. The counts
//! change under the lock: up after an entry goes in, down after it goes out, so a bucket
//! never counts 0 while an entry of it is in the table. A count that reaches 255 stays
//! there until the next [`clear`] (its frees then always read the table).

use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

struct Table {
    mask: usize,
    slots: Box<[AtomicUsize]>,
}

/// 0 is never an allocation's address.
const EMPTY: usize = 0;
/// 32 KiB: room for 2,048 live sampled blocks (1 GiB of live heap sampled every 512 KiB)
/// before the first resize.
const MIN_SLOTS: usize = 1 << 12;

/// Buckets of the filter: 8 KiB. With n blocks sampled and live, a free not among them
/// reads the table with probability about n / 8192 (2.4% for 100 MiB of live heap sampled
/// every 512 KiB).
const FILTER_BITS: u32 = 13;
const FILTER_LEN: usize = 1 << FILTER_BITS;
static FILTER: [AtomicU8; FILTER_LEN] = [const { AtomicU8::new(0) }; FILTER_LEN];

/// `address`'s bucket of [`FILTER`] (the top bits of another multiplicative hash than
/// the table's).
#[inline(always)]
fn bucket(address: usize) -> &'static AtomicU8 {
    let h = (address as u64 >> 4).wrapping_mul(0xD6E8_FEB8_6659_FD93) >> (64 - FILTER_BITS);
    &FILTER[h as usize]
}

/// Counts an entry of `address`'s bucket in (`change` 1) or out (-1). Under [`LOCK`]; a
/// count at 255 stays there (see the module comment).
fn count(address: usize, change: i8) {
    let b = bucket(address);
    let n = b.load(Ordering::Relaxed);
    if n != u8::MAX {
        b.store(n.wrapping_add_signed(change), Ordering::Relaxed);
    }
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
/// Odd while a removal or a resize moves entries.
static SEQ: AtomicUsize = AtomicUsize::new(0);
static LOCK: AtomicBool = AtomicBool::new(false);
/// Entries in the table; changed only under [`LOCK`].
static LEN: AtomicUsize = AtomicUsize::new(0);

impl Table {
    fn new(slots: usize) -> Table {
        Table { mask: slots - 1, slots: (0..slots).map(|_| AtomicUsize::new(EMPTY)).collect() }
    }

    #[inline(always)]
    fn home(&self, address: usize) -> usize {
        // Fibonacci hashing of the address without its always-zero low bits.
        ((address as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    /// The slot holding `address`. Gives up after a full turn (a reader racing a writer
    /// may see no empty slot; the sequence check then sends it round again).
    #[inline(always)]
    fn find(&self, address: usize) -> Option<usize> {
        let mut i = self.home(address);
        for _ in 0..=self.mask {
            match self.slots[i].load(Ordering::Acquire) {
                v if v == address => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & self.mask,
            }
        }
        None
    }

    /// Puts `address` in an empty slot. Under the lock, with the table at most half full.
    fn put(&self, address: usize) {
        let mut i = self.home(address);
        while self.slots[i].load(Ordering::Relaxed) != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i].store(address, Ordering::Release);
    }

    /// Empties slot `hole` and moves back the entries after it that would no longer be
    /// found (Knuth's algorithm R). Under the lock, inside an odd sequence.
    fn take_out(&self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let v = self.slots[j].load(Ordering::Relaxed);
            if v == EMPTY {
                break;
            }
            let h = self.home(v);
            // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < h && h <= j } else { hole < h || h <= j };
            if !stays {
                self.slots[hole].store(v, Ordering::Relaxed);
                hole = j;
            }
        }
        self.slots[hole].store(EMPTY, Ordering::Relaxed);
    }
}

/// Holds [`LOCK`].
struct Locked;

impl Locked {
    fn take() -> Locked {
        while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            std::hint::spin_loop();
        }
        Locked
    }

    fn table(&self) -> Option<&'static Table> {
        // SAFETY: tables are leaked, never freed (see the module comment).
        unsafe { TABLE.load(Ordering::Acquire).as_ref() }
    }

    /// Runs `f` with readers told to look again.
    fn moving(&self, f: impl FnOnce()) {
        SEQ.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        f();
        SEQ.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
    }
}

/// False when `address` is surely not a live sampled block: its bucket of the filter counts
/// none (nearly every free). Reads one byte, which stays in the first-level cache.
#[inline(always)]
pub fn may_hold(address: usize) -> bool {
    bucket(address).load(Ordering::Relaxed) != 0
}

/// Whether `address` is a live sampled block. Takes no lock.
#[inline(always)]
pub fn contains(address: usize) -> bool {
    // An entry's count went up before its address was handed to the program, which freeing
    // it comes after.
    may_hold(address) && in_table(address)
}

/// [`contains`] past the filter.
#[inline(never)]
fn in_table(address: usize) -> bool {
    loop {
        let seq = SEQ.load(Ordering::Acquire);
        if seq & 1 == 0 {
            // SAFETY: tables are leaked, never freed.
            let Some(t) = (unsafe { TABLE.load(Ordering::Acquire).as_ref() }) else {
                return false;
            };
            let found = t.find(address).is_some();
            fence(Ordering::Acquire);
            if SEQ.load(Ordering::Relaxed) == seq {
                return found;
            }
        }
        std::hint::spin_loop();
    }
}

/// Adds a sampled block's address.
pub fn insert(address: usize) {
    let lock = Locked::take();
    let len = LEN.load(Ordering::Relaxed) + 1;
    let table = match lock.table() {
        Some(t) if len * 2 <= t.mask + 1 => t,
        old => {
            let slots = old.map_or(MIN_SLOTS, |t| 2 * (t.mask + 1));
            let new: &'static Table = Box::leak(Box::new(Table::new(slots)));
            lock.moving(|| {
                for v in old.iter().flat_map(|t| t.slots.iter()) {
                    match v.load(Ordering::Relaxed) {
                        EMPTY => {}
                        v => new.put(v),
                    }
                }
                TABLE.store(new as *const Table as *mut Table, Ordering::Release);
            });
            new
        }
    };
    if table.find(address).is_none() {
        table.put(address);
        LEN.store(len, Ordering::Relaxed);
        count(address, 1);
    }
}

/// Removes `address` if it is a sampled block; returns whether it was.
#[inline(always)]
pub fn remove(address: usize) -> bool {
    contains(address) && remove_locked(address)
}

#[cold]
fn remove_locked(address: usize) -> bool {
    let lock = Locked::take();
    let Some(table) = lock.table() else { return false };
    let Some(slot) = table.find(address) else { return false };
    lock.moving(|| table.take_out(slot));
    LEN.fetch_sub(1, Ordering::Relaxed);
    count(address, -1);
    true
}

/// Empties the set (a new session: blocks sampled before are not in its recording).
pub fn clear() {
    let lock = Locked::take();
    if let Some(table) = lock.table() {
        lock.moving(|| table.slots.iter().for_each(|s| s.store(EMPTY, Ordering::Relaxed)));
    }
    LEN.store(0, Ordering::Relaxed);
    FILTER.iter().for_each(|b| b.store(0, Ordering::Relaxed));
}

/// In a forked child only the forking thread lives on: no one holds the lock or is
/// moving entries (the next session clears the table).
pub fn after_fork_in_child() {
    LOCK.store(false, Ordering::Relaxed);
    SEQ.store((SEQ.load(Ordering::Relaxed) | 1) + 1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the set is a process-wide static.
    #[test]
    fn addresses_go_in_and_out_across_resizes_and_threads() {
        clear();
        let addr = |i: usize| 0x7f00_0000_0000 + i * 48;
        for i in 0..10_000 {
            insert(addr(i));
        }
        assert!((0..10_000).all(|i| contains(addr(i))));
        assert!(!contains(addr(10_000)) && !contains(0x1234_5670));
        // Remove every other one: the rest must still be found after the shifts.
        assert!((0..10_000).step_by(2).all(|i| remove(addr(i))));
        assert!((0..10_000).all(|i| contains(addr(i)) == (i % 2 == 1)));
        assert!(!remove(addr(0)));
        // Readers on other threads never miss an address that stays while writers churn.
        let readers: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    for round in 0..200 {
                        for i in (1..10_000).step_by(2 * 7) {
                            assert!(contains(addr(i)), "round {round}: {i} missed");
                        }
                    }
                })
            })
            .collect();
        for round in 0..50 {
            for i in (0..10_000).step_by(2) {
                insert(addr(i + 20_000 * (round % 2)));
            }
            for i in (0..10_000).step_by(2) {
                assert!(remove(addr(i + 20_000 * (round % 2))));
            }
        }
        readers.into_iter().for_each(|r| r.join().unwrap());
        // Every count went back down with its entry: only the odd addresses' remain.
        let counted: usize = FILTER.iter().map(|b| usize::from(b.load(Ordering::Relaxed))).sum();
        assert_eq!(counted, 5_000);
        clear();
        assert!(!contains(addr(1)));
    }
}
