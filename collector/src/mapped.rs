//! Reserved address space in a recording: what C code mapped with `mmap` (allocator kind
//! `Reserved`, not part of the heap), and how much of it was resident (kind `Mmap` blocks,
//! part of the heap), at the heap's peak and at the end.
//!
//! An `mmap` reserves address space; its pages take memory only once touched (OpenBLAS maps
//! 32 MiB per thread and touches a fraction). So the heap counts the resident pages only,
//! and this is the figure that says how much was mapped around them.

use anyhow::Result;
use memlens_analysis::kind_usage;
use memlens_format::{AllocatorKind, Recording};

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

/// The figures of `rec`, or `None` when it recorded no reserved space (also every recording
/// made before the `Reserved` kind existed, whose `Mmap` blocks were whole mappings). From
/// the aggregates (or a replay, for older recordings): see [`kind_usage`].
pub fn mapped(rec: &Recording) -> Result<Option<Mapped>> {
    let usage = kind_usage(rec)?;
    let of = |kind| usage.iter().find(|u| u.kind == kind);
    let Some(reserved) = of(AllocatorKind::Reserved) else { return Ok(None) };
    let resident = of(AllocatorKind::Mmap);
    Ok(Some(Mapped {
        at_peak: reserved.at_peak,
        max: reserved.max,
        at_end: reserved.at_end,
        resident_at_peak: resident.map_or(0, |r| r.at_peak),
        resident_at_end: resident.map_or(0, |r| r.at_end),
    }))
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
        // The same by replay (what older recordings get).
        let replayed = memlens_analysis::replay::kind_usage(&rec).unwrap();
        assert_eq!(replayed, kind_usage(&rec).unwrap());
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
