//! Memory by allocator kind: the live bytes of each kind (pymalloc, malloc, resident mmap
//! pages, reserved address space, ...) at the heap's high-water mark, at their own highest
//! and at the end. Kinds outside the heap (reserved address space, pymalloc's arenas) are
//! counted too: this is where their figures come from.

use crate::{AddressMap, AllocatorKind, Error, Op, Recording};

/// The live bytes of one allocator kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindUsage {
    /// The kind.
    pub kind: AllocatorKind,
    /// Live at the heap's high-water mark (right after the allocation that reached it).
    pub at_peak: u64,
    /// At their own highest.
    pub max: u64,
    /// Live at the end.
    pub at_end: u64,
}

/// Every kind the recording has, in code order: from the interval aggregates when it has
/// them, else by replaying its events.
pub fn kind_usage(rec: &Recording) -> Result<Vec<KindUsage>, Error> {
    if rec.aggregates_missing().is_some() {
        return replayed(rec);
    }
    let shapes = rec.base_shapes();
    let Some(last) = shapes.last() else { return Ok(Vec::new()) };
    let peak = crate::query::global_peak(rec).map(|k| &shapes[k]);
    // A kind seen once is listed in every later interval: the last one lists them all.
    Ok(last
        .kinds
        .iter()
        .map(|k| {
            let of =
                |s: &memlens_format::Interval| s.kinds.iter().find(|f| f.kind == k.kind).copied();
            KindUsage {
                kind: k.kind,
                at_peak: peak.and_then(of).map_or(0, |f| f.at_max),
                max: shapes.iter().filter_map(of).map(|f| f.max).max().unwrap_or(0),
                at_end: k.end,
            }
        })
        .collect())
}

/// [`kind_usage`] by replaying every event.
pub(crate) fn replayed(rec: &Recording) -> Result<Vec<KindUsage>, Error> {
    const KINDS: usize = 8;
    // Heap kinds share one block per address; each kind outside the heap has its own (an
    // arena holds pymalloc's blocks, a mapping its resident part).
    let mut heap_blocks: AddressMap<(u64, AllocatorKind)> = AddressMap::default();
    let mut outside: Vec<AddressMap<u64>> = (0..KINDS).map(|_| AddressMap::default()).collect();
    let (mut live, mut max, mut at_peak) = ([0u64; KINDS], [0u64; KINDS], [0u64; KINDS]);
    let mut seen = [false; KINDS];
    let (mut heap, mut peak) = (0u64, 0u64);
    rec.for_each_event_chunk(|events| {
        // An object re-created in a block changes the block's owner, not its kind.
        for e in events.iter().filter(|e| !e.is_recreation()) {
            let i = e.kind as usize;
            let change = if e.kind.counts_in_heap() {
                match e.op {
                    Op::Alloc => {
                        let old = heap_blocks.insert(e.address, (e.size, e.kind));
                        if let Some((size, kind)) = old {
                            live[kind as usize] = live[kind as usize].wrapping_sub(size);
                            heap = heap.wrapping_sub(size);
                        }
                        heap = heap.wrapping_add(e.size);
                        Some((i, e.size, true))
                    }
                    Op::Free => heap_blocks.remove(&e.address).map(|(size, kind)| {
                        heap = heap.wrapping_sub(size);
                        (kind as usize, size, false)
                    }),
                }
            } else {
                match e.op {
                    Op::Alloc => {
                        if let Some(old) = outside[i].insert(e.address, e.size) {
                            live[i] = live[i].wrapping_sub(old);
                        }
                        Some((i, e.size, true))
                    }
                    Op::Free => outside[i].remove(&e.address).map(|size| (i, size, false)),
                }
            };
            let Some((k, size, alloc)) = change else { continue };
            seen[k] = true;
            live[k] = if alloc { live[k].wrapping_add(size) } else { live[k].wrapping_sub(size) };
            max[k] = max[k].max(live[k]);
            if heap > peak {
                (peak, at_peak) = (heap, live);
            }
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok((0..KINDS)
        .filter(|&k| seen[k])
        .filter_map(|k| {
            let kind = AllocatorKind::from_code(k as u8)?;
            Some(KindUsage { kind, at_peak: at_peak[k], max: max[k], at_end: live[k] })
        })
        .collect())
}
