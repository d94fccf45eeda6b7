//! [`LiveBlocks`]: the writer's heap blocks by address, live ones and the tombstones of
//! freed ones.
//!
//! Nearly every event is a small block (pymalloc's, at most 512 bytes), and the blocks of a
//! 16 KiB page (a pymalloc pool) come and go together. So small 16-byte-aligned blocks live
//! in *pages*: 1024 slots of 16 bytes, one per 16-byte step of a 16 KiB span of addresses,
//! found through a small direct-mapped cache in front of a page directory. An event then
//! costs an index into a dense array rather than a probe of a hash table three times the
//! size. Larger or oddly aligned blocks go to a hash map. A page whose blocks are all freed
//! keeps its tombstones until pages with no live blocks outnumber the busy ones by 256
//! (4 MiB); then they are cleared and reused. Memory: a page takes as many bytes as the span
//! of addresses it covers, so the table is about as large as the traced program's small-block
//! heap (the hash table took ~45 bytes per block: less for 512-byte blocks, 3 times more for
//! 16-byte ones).

use crate::addr_hash::{AddressMap, NearbyAddressMap};
use crate::AllocatorKind;

/// Blocks up to this size (pymalloc's limit), at 16-byte-aligned addresses, go in pages.
const SMALL: u64 = 512;
const SLOT_SHIFT: u32 = 4;
const PAGE_SHIFT: u32 = 14;
const SLOTS: usize = 1 << (PAGE_SHIFT - SLOT_SHIFT);
/// Entries of the direct-mapped page cache.
const CACHE: usize = 64;
/// In [`Small::chunk`]: the block is live.
const LIVE: u32 = 1 << 31;

/// A heap block: its size and owner (the writer's key for its thread and stack), and where
/// its event is (chunk number, and alloc index while live, free index once freed, within the
/// chunk), so that a free or a reuse in the same chunk can point back at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub size: u64,
    pub key: u32,
    /// The allocator that made it (a free names its block's).
    pub kind: AllocatorKind,
    pub chunk: u32,
    pub index: u32,
}

/// What an allocation found at its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prior {
    /// Nothing known.
    Vacant,
    /// A live block whose free was never seen: replaced.
    Live(Block),
    /// A freed block: its chunk and free index.
    Freed { chunk: u32, index: u32 },
}

/// A block in a page. All zeros: never used.
#[derive(Debug, Clone, Copy, Default)]
struct Small {
    key: u32,
    /// At most [`SMALL`].
    size: u16,
    /// The [`AllocatorKind`]'s code.
    kind: u8,
    /// Chunk number + 1, with [`LIVE`] set while the block is live.
    chunk: u32,
    index: u32,
}

impl Small {
    /// The block, with the chunk and index it was written at (live or freed).
    fn block(&self) -> Block {
        Block {
            size: self.size.into(),
            key: self.key,
            kind: AllocatorKind::from_code(self.kind).unwrap_or(AllocatorKind::PymallocObject),
            chunk: (self.chunk & !LIVE).wrapping_sub(1),
            index: self.index,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Big {
    block: Block,
    live: bool,
}

/// A 16 KiB span of addresses that holds live blocks or small tombstones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    /// Its slots are `slots[self.slots * SLOTS..][..SLOTS]`; [`NO_SLOTS`]: it has none.
    slots: u32,
    /// Live big blocks in the span. A small block allocated where one of them is would
    /// replace it (a free that was never seen), so small allocations look in the big map
    /// only when this is not 0.
    big: u32,
}

const NO_SLOTS: u32 = u32::MAX;
const EMPTY: Page = Page { slots: NO_SLOTS, big: 0 };

/// Heap blocks by address (see the module documentation). At most one block is live at
/// an address, whichever table it is in.
pub(crate) struct LiveBlocks {
    slots: Vec<Small>,
    /// Live blocks per slot page.
    slots_live: Vec<u32>,
    /// Page number (address >> PAGE_SHIFT) to page.
    dir: AddressMap<Page>,
    /// Direct-mapped cache of `dir`, by page number modulo [`CACHE`].
    cache: [(u64, Page); CACHE],
    /// Cleared slot pages, free for reuse.
    spare: Vec<u32>,
    /// Pages with slots, and those of them with live blocks.
    paged: usize,
    busy: usize,
    big: NearbyAddressMap<Big>,
    big_live: usize,
    live: usize,
}

impl Default for LiveBlocks {
    fn default() -> Self {
        LiveBlocks {
            slots: Vec::new(),
            slots_live: Vec::new(),
            dir: AddressMap::default(),
            cache: [(u64::MAX, EMPTY); CACHE],
            spare: Vec::new(),
            paged: 0,
            busy: 0,
            big: NearbyAddressMap::default(),
            big_live: 0,
            live: 0,
        }
    }
}

#[inline]
fn slot_of(address: u64) -> usize {
    (address >> SLOT_SHIFT) as usize & (SLOTS - 1)
}

#[inline]
fn aligned(address: u64) -> bool {
    address % (1 << SLOT_SHIFT) == 0
}

impl LiveBlocks {
    /// Live blocks.
    pub fn live(&self) -> usize {
        self.live
    }

    #[inline]
    fn lookup(&mut self, page: u64) -> Page {
        let c = &mut self.cache[page as usize % CACHE];
        if c.0 == page {
            return c.1;
        }
        let Some(&p) = self.dir.get(&page) else { return EMPTY };
        *c = (page, p);
        p
    }

    fn store(&mut self, page: u64, p: Page) {
        let c = &mut self.cache[page as usize % CACHE];
        if p == EMPTY {
            self.dir.remove(&page);
            if c.0 == page {
                c.0 = u64::MAX;
            }
        } else {
            self.dir.insert(page, p);
            *c = (page, p);
        }
    }

    /// The index in `slots` of the live small block at `address` in page `p`, if any.
    #[inline]
    fn live_slot(&self, p: Page, address: u64) -> Option<usize> {
        if p.slots == NO_SLOTS || !aligned(address) {
            return None;
        }
        let at = p.slots as usize * SLOTS + slot_of(address);
        (self.slots[at].chunk & LIVE != 0).then_some(at)
    }

    /// Counts the small block in slot `at` as no longer live; true if its page is then
    /// without live blocks.
    #[inline]
    fn small_gone(&mut self, at: usize) -> bool {
        let i = at / SLOTS;
        self.live -= 1;
        self.slots_live[i] -= 1;
        let emptied = self.slots_live[i] == 0;
        self.busy -= usize::from(emptied);
        emptied
    }

    fn new_slots(&mut self) -> u32 {
        self.paged += 1;
        self.spare.pop().unwrap_or_else(|| {
            self.slots_live.push(0);
            self.slots.resize(self.slots.len() + SLOTS, Small::default());
            self.slots_live.len() as u32 - 1
        })
    }

    /// Records a live block at `address`; returns what was there.
    #[inline(always)]
    pub fn alloc(&mut self, address: u64, b: Block) -> Prior {
        debug_assert!(b.chunk < LIVE - 1);
        if b.size > SMALL || !aligned(address) {
            return self.alloc_big(address, b);
        }
        let page = address >> PAGE_SHIFT;
        let p = self.lookup(page);
        if p.big > 0 || p.slots == NO_SLOTS {
            return self.alloc_small_new_page(page, p, address, b);
        }
        self.put_small(p.slots, address, b)
    }

    /// [`LiveBlocks::alloc`] of a small block in a page without slots yet, or one with live
    /// big blocks (which the small one may replace). Kept out of line: the usual allocation
    /// returns what was in its slot straight from registers.
    #[cold]
    fn alloc_small_new_page(&mut self, page: u64, mut p: Page, address: u64, b: Block) -> Prior {
        let replaced = if p.big > 0 { self.take_big(address) } else { None };
        p.big -= u32::from(replaced.is_some());
        if p.slots == NO_SLOTS {
            p.slots = self.new_slots();
        }
        self.store(page, p);
        let prior = self.put_small(p.slots, address, b);
        replaced.map_or(prior, Prior::Live)
    }

    /// Puts small block `b` in its slot of slot page `i`; returns what the slot held.
    #[inline(always)]
    fn put_small(&mut self, i: u32, address: u64, b: Block) -> Prior {
        let i = i as usize;
        let s = &mut self.slots[i * SLOTS + slot_of(address)];
        let prior = if s.chunk & LIVE != 0 {
            Prior::Live(s.block())
        } else if s.chunk != 0 {
            Prior::Freed { chunk: s.chunk - 1, index: s.index }
        } else {
            Prior::Vacant
        };
        *s = Small {
            key: b.key,
            size: b.size as u16,
            kind: b.kind as u8,
            chunk: (b.chunk + 1) | LIVE,
            index: b.index,
        };
        if !matches!(prior, Prior::Live(..)) {
            self.live += 1;
            self.slots_live[i] += 1;
            if self.slots_live[i] == 1 {
                self.busy += 1;
            }
        }
        prior
    }

    /// Forgets the live big block at `address` (being replaced); returns it.
    fn take_big(&mut self, address: u64) -> Option<Block> {
        let old = self.big.remove(&address)?;
        if !old.live {
            return None;
        }
        self.live -= 1;
        self.big_live -= 1;
        Some(old.block)
    }

    fn alloc_big(&mut self, address: u64, b: Block) -> Prior {
        let page = address >> PAGE_SHIFT;
        let mut p = self.lookup(page);
        let replaced = self.live_slot(p, address).map(|at| {
            let block = self.slots[at].block();
            self.slots[at] = Small::default();
            self.small_gone(at);
            block
        });
        let prior = match self.big.insert(address, Big { block: b, live: true }) {
            Some(old) if old.live => return Prior::Live(old.block),
            Some(old) => Prior::Freed { chunk: old.block.chunk, index: old.block.index },
            None => Prior::Vacant,
        };
        self.live += 1;
        self.big_live += 1;
        p.big += 1;
        self.store(page, p);
        replaced.map_or(prior, Prior::Live)
    }

    /// Turns the live block at `address` into a tombstone at (`chunk`, free `index`);
    /// returns the block as it was, or `None` when no block is live there.
    #[inline(always)]
    pub fn free(&mut self, address: u64, chunk: u32, index: u32) -> Option<Block> {
        let page = address >> PAGE_SHIFT;
        let mut p = self.lookup(page);
        if let Some(at) = self.live_slot(p, address) {
            let old = self.slots[at];
            self.slots[at] = Small { chunk: chunk + 1, index, ..old };
            if self.small_gone(at) && self.paged > 2 * self.busy + 256 {
                self.sweep();
            }
            return Some(old.block());
        }
        if p.big == 0 {
            return None;
        }
        let slot = self.big.get_mut(&address).filter(|s| s.live)?;
        let old = slot.block;
        *slot = Big { block: Block { chunk, index, ..old }, live: false };
        self.live -= 1;
        self.big_live -= 1;
        p.big -= 1;
        self.store(page, p);
        if self.big.len() > 2 * self.big_live + 4096 {
            self.big.retain(|_, s| s.live);
        }
        Some(old)
    }

    /// Clears the slot pages with no live blocks and keeps them for reuse.
    fn sweep(&mut self) {
        let (slots, slots_live, spare) = (&mut self.slots, &self.slots_live, &mut self.spare);
        self.dir.retain(|_, p| {
            let i = p.slots as usize;
            if p.slots == NO_SLOTS || slots_live[i] > 0 {
                return true;
            }
            slots[i * SLOTS..][..SLOTS].fill(Small::default());
            spare.push(p.slots);
            p.slots = NO_SLOTS;
            p.big > 0
        });
        self.paged = self.busy;
        self.cache = [(u64::MAX, EMPTY); CACHE];
    }

    /// Hands the live block at `address` to `key`, its event now at (`chunk`, alloc `index`)
    /// (an object re-created in it); returns the block as it was, or `None` when no block is
    /// live there. Its size and kind stay.
    pub fn rekey(&mut self, address: u64, key: u32, chunk: u32, index: u32) -> Option<Block> {
        debug_assert!(chunk < LIVE - 1);
        let p = self.lookup(address >> PAGE_SHIFT);
        if let Some(at) = self.live_slot(p, address) {
            let s = &mut self.slots[at];
            let old = s.block();
            (s.key, s.chunk, s.index) = (key, (chunk + 1) | LIVE, index);
            return Some(old);
        }
        if p.big == 0 {
            return None;
        }
        let slot = self.big.get_mut(&address).filter(|s| s.live)?;
        let old = slot.block;
        slot.block = Block { key, chunk, index, ..old };
        Some(old)
    }

    /// The size and key of the live block at `address`.
    pub fn get(&self, address: u64) -> Option<(u64, u32)> {
        let p = *self.dir.get(&(address >> PAGE_SHIFT))?;
        if let Some(at) = self.live_slot(p, address) {
            let s = self.slots[at];
            return Some((s.size.into(), s.key));
        }
        self.big.get(&address).filter(|s| s.live).map(|s| (s.block.size, s.block.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn block(size: u64, chunk: u32, index: u32) -> Block {
        let kind =
            if index % 2 == 0 { AllocatorKind::PymallocObject } else { AllocatorKind::PyMem };
        Block { size, key: index + 7, kind, chunk, index }
    }

    /// Against a plain map of live blocks and tombstones, over addresses that mix pages and
    /// the big map, a block of one table allocated over a live block of the other (after a
    /// free that was never seen), reuse, frees of unknown blocks, blocks changing hands and
    /// enough emptied pages to sweep.
    #[test]
    fn behaves_like_a_map_of_live_blocks_and_tombstones() {
        let mut live = LiveBlocks::default();
        let mut model: HashMap<u64, (Block, bool)> = HashMap::new();
        // Every free at each address: an allocation may point back at any of them.
        let mut frees: HashMap<u64, Vec<Prior>> = HashMap::new();
        let mut model_live = 0;
        let mut swept = false;
        let mut x = 0x1234_5678u64;
        // Stretches of PHASE steps take turns: allocations and some frees at random in a
        // window of 20 pages (some 8-byte-aligned, some big), then frees of every 16-byte
        // step of the window, emptying its pages. Over 30 windows, the empty pages come to
        // outnumber the busy ones.
        const PHASE: u32 = 20 << 10;
        for step in 0..60 * PHASE {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let chunk = step / 1000;
            let (phase, in_phase) = (step / PHASE, u64::from(step % PHASE));
            let base = 0x7f00_0000_0000 + u64::from(phase / 2 % 30) * (20 << 14);
            let freeing = phase % 2 == 1;
            let address = match x % 10 {
                _ if freeing => base + in_phase * 16,
                0 => base + (x >> 20) % (40 << 10) * 8,
                _ => base + (x >> 8) % (20 << 10) * 16,
            };
            let size = if x % 7 == 0 { 4096 } else { (x >> 40) % 512 + 1 };
            if x % 11 == 4 && !freeing {
                // An object re-created in the block: it changes hands, and stays live.
                let got = live.rekey(address, step + 1, chunk, step);
                let want = match model.get_mut(&address) {
                    Some((b, true)) => {
                        let old = *b;
                        *b = Block { key: step + 1, chunk, index: step, ..old };
                        Some(old)
                    }
                    _ => None,
                };
                assert_eq!(got, want, "rekey {address:#x} at {step}");
            } else if x % 3 == 0 || freeing {
                let got = live.free(address, chunk, step);
                let want = match model.get_mut(&address) {
                    Some((b, l)) if *l => {
                        let old = *b;
                        *b = Block { chunk, index: step, ..old };
                        *l = false;
                        model_live -= 1;
                        frees.entry(address).or_default().push(Prior::Freed { chunk, index: step });
                        Some(old)
                    }
                    _ => None,
                };
                assert_eq!(got, want, "free {address:#x} at {step}");
            } else {
                let b = block(size, chunk, step);
                let got = live.alloc(address, b);
                let want = match model.insert(address, (b, true)) {
                    Some((old, true)) => Prior::Live(old),
                    Some((old, false)) => Prior::Freed { chunk: old.chunk, index: old.index },
                    None => Prior::Vacant,
                };
                if !matches!(want, Prior::Live(..)) {
                    model_live += 1;
                }
                // Tombstones are forgotten (swept, or replaced by the other table's), and a
                // block may point back at an earlier free at its address.
                let earlier = frees.get(&address).is_some_and(|f| f.contains(&got));
                assert!(
                    got == want
                        || matches!(want, Prior::Freed { .. }) && (got == Prior::Vacant || earlier),
                    "alloc {address:#x} at {step}: {got:?} vs {want:?}"
                );
            }
            assert_eq!(live.live(), model_live);
            swept |= !live.spare.is_empty();
            let probe = base + (x >> 30) % (20 << 10) * 16;
            let want = model.get(&probe).filter(|(_, l)| *l).map(|(b, _)| (b.size, b.key));
            assert_eq!(live.get(probe), want);
        }
        assert!(swept, "no page was ever swept");
        // The counts that bound the pages kept are right.
        let with_slots: Vec<usize> =
            live.dir.values().filter(|p| p.slots != NO_SLOTS).map(|p| p.slots as usize).collect();
        assert_eq!(live.paged, with_slots.len());
        assert_eq!(live.busy, with_slots.iter().filter(|&&i| live.slots_live[i] > 0).count());
        assert!(live.paged <= 2 * live.busy + 256);
    }
}
