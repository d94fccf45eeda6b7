//! Reserved address space in a recording: what C code mapped with `mmap` (allocator kind
//! `Reserved`, not part of the heap), and how much of it was resident (kind `Mmap` blocks,
//! part of the heap), at the heap's peak and at the end.
//!
//! An `mmap` reserves address space; its pages take memory only once touched (OpenBLAS maps
//! 32 MiB per thread and touches a fraction). So the heap counts the resident pages only,
//! and this is the figure that says how much was mapped around them.

use std::collections::HashMap;
use std::ops::ControlFlow;

use anyhow::Result;
use memlens_format::{AllocatorKind, Op, Recording};

/// Mapped memory figures, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mapped {
    /// Reserved address space live at the heap's peak.
    pub at_peak: u64,
    /// Its most at any time.
    pub max: u64,
    /// Live at the end.
    pub at_end: u64,
    /// Of the reserved space, resident (and counted in the heap) at the heap's peak.
    pub resident_at_peak: u64,
    /// ... and at the end.
    pub resident_at_end: u64,
}

/// Live bytes of one kind of block, by address.
#[derive(Default)]
struct Live {
    blocks: HashMap<u64, u64>,
    total: u64,
}

impl Live {
    fn apply(&mut self, op: Op, address: u64, size: u64) {
        match op {
            Op::Alloc => {
                self.total += size;
                if let Some(old) = self.blocks.insert(address, size) {
                    self.total -= old;
                }
            }
            Op::Free => {
                if let Some(old) = self.blocks.remove(&address) {
                    self.total -= old;
                }
            }
        }
    }
}

/// The figures of `rec`, or `None` when it recorded no reserved space (also every recording
/// made before the `Reserved` kind existed, whose `Mmap` blocks were whole mappings).
pub fn mapped(rec: &Recording) -> Result<Option<Mapped>> {
    let peak_time = rec.summary().peak_heap_time_ns;
    let (mut reserved, mut resident) = (Live::default(), Live::default());
    let mut m = Mapped::default();
    let mut seen = false;
    let mut past_peak = false;
    rec.for_each_event_chunk(|events| {
        for e in events {
            if !past_peak && e.time_ns > peak_time {
                past_peak = true;
                (m.at_peak, m.resident_at_peak) = (reserved.total, resident.total);
            }
            match e.kind {
                AllocatorKind::Reserved => {
                    seen = true;
                    reserved.apply(e.op, e.address, e.size);
                    m.max = m.max.max(reserved.total);
                }
                AllocatorKind::Mmap => resident.apply(e.op, e.address, e.size),
                _ => {}
            }
        }
        ControlFlow::Continue(())
    })?;
    if !past_peak {
        (m.at_peak, m.resident_at_peak) = (reserved.total, resident.total);
    }
    (m.at_end, m.resident_at_end) = (reserved.total, resident.total);
    Ok(seen.then_some(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_format::{Meta, ProcessEnd, RecordingWriter, StackId, ThreadId};

    #[test]
    fn reserved_and_resident_at_the_peak_and_the_end() {
        let mut w = RecordingWriter::new(Vec::new(), &Meta::default()).unwrap();
        let (t, s) = (ThreadId(0), StackId::ROOT);
        w.alloc(1_000, t, s, 0x1000_0000, 32 << 20, AllocatorKind::Reserved).unwrap();
        w.alloc(2_000, t, s, 0x1000_0001, 1 << 20, AllocatorKind::Mmap).unwrap();
        w.alloc(3_000, t, s, 0x50, 4 << 20, AllocatorKind::Malloc).unwrap(); // the peak
        w.free(4_000, t, 0x50, AllocatorKind::Malloc).unwrap();
        w.free(5_000, t, 0x1000_0001, AllocatorKind::Mmap).unwrap();
        w.free(5_000, t, 0x1000_0000, AllocatorKind::Reserved).unwrap();
        w.alloc(6_000, t, s, 0x2000_0000, 8 << 20, AllocatorKind::Reserved).unwrap();
        let rec = Recording::from_vec(w.finish(ProcessEnd::default()).unwrap()).unwrap();
        assert_eq!(rec.summary().peak_heap, 5 << 20, "reserved space is not heap");
        let m = mapped(&rec).unwrap().unwrap();
        assert_eq!(
            m,
            Mapped {
                at_peak: 32 << 20,
                max: 32 << 20,
                at_end: 8 << 20,
                resident_at_peak: 1 << 20,
                resident_at_end: 0
            }
        );
    }
}
