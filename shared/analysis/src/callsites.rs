//! The call-site table: memory per frame, directly (self) and through callees (total).

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{FrameId, Recording, StackTotals, Totals};

/// One row of the call-site table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSite {
    /// The frame (function, file, line).
    pub frame: FrameId,
    /// Memory allocated directly at this line.
    pub self_: Totals,
    /// Memory allocated at this line or by anything it called (each stack counted once even
    /// when the frame recurses).
    pub total: Totals,
}

/// Call sites for `totals`, largest self memory first. With `hide_internal`, frames of the
/// import system and of memlens itself ([`crate::is_internal_file`]) are skipped, and what
/// they allocated counts as their nearest kept caller's own, as in the flame tree.
pub fn call_sites(rec: &Recording, totals: &StackTotals, hide_internal: bool) -> Vec<CallSite> {
    let mut map: FxHashMap<FrameId, (Totals, Totals)> = FxHashMap::default();
    let mut seen = FxHashSet::default();
    let kept = |f: &FrameId| !hide_internal || !crate::is_internal_frame(rec, *f);
    for &(stack, t) in &totals.stacks {
        seen.clear();
        for (i, frame) in rec.stack_frames(stack).filter(kept).enumerate() {
            let entry = map.entry(frame).or_default();
            if i == 0 {
                entry.0.merge(t);
            }
            if seen.insert(frame) {
                entry.1.merge(t);
            }
        }
    }
    let mut rows: Vec<CallSite> =
        map.into_iter().map(|(frame, (self_, total))| CallSite { frame, self_, total }).collect();
    rows.sort_by(|a, b| {
        b.self_
            .bytes
            .cmp(&a.self_.bytes)
            .then(b.total.bytes.cmp(&a.total.bytes))
            .then(a.frame.cmp(&b.frame))
    });
    rows
}
