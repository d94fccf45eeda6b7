//! Compare mode's model, below its components: what two recordings' memory by stack gives
//! for one flame mode ([`CompareData`]: the diff tree and the call-site deltas) and how a
//! change reads ([`delta_text`]). The compare page, its timeline, delta table and
//! differential flame graph use it; it uses none of them.

use memlens_analysis::{diff_sites, DiffOptions, DiffTree, FlameOptions, SiteDelta, StackTotals};
use memlens_format::Recording;

/// Everything compared for one flame mode.
pub struct CompareData {
    pub tree: DiffTree,
    /// Call sites, biggest absolute change first.
    pub sites: Vec<SiteDelta>,
}

impl CompareData {
    /// The comparison of the two recordings' memory by stack in one mode.
    pub fn build(base: &Recording, bt: &StackTotals, head: &Recording, ht: &StackTotals) -> Self {
        let options = DiffOptions {
            flame: FlameOptions { merge_lines: true, hide_internal: true, hide_native: false },
            show_vanished: true,
        };
        let tree = DiffTree::build(base, bt, head, ht, &options);
        let sites = diff_sites(base, bt, head, ht);
        CompareData { tree, sites }
    }
}

/// `+1.5 MiB (+25%)`-style change text.
pub fn delta_text(base: u64, head: u64) -> String {
    let d = head as i128 - base as i128;
    if d == 0 {
        return "0 B".to_string();
    }
    let bytes =
        memlens_analysis::format_bytes_delta(d.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
    if base == 0 {
        return format!("{bytes} (new)");
    }
    let percent = d as f64 * 100.0 / base as f64;
    if percent >= 1000.0 {
        format!("{bytes} (×{:.0})", head as f64 / base as f64)
    } else {
        format!("{bytes} ({percent:+.0}%)")
    }
}
