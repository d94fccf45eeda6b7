//! Sampled recordings (`memlens run --sample BYTES`): how every view says that its figures
//! are estimates, and why two recordings sampled differently are not compared silently.
//!
//! In a sampled recording each recorded heap block stands for the blocks of its size that
//! were not sampled: its size is the estimate of their bytes (see
//! [`memlens_format::Meta::sample_bytes`]), so byte figures need no weighting here. Counts
//! of allocations and blocks add, per recorded block, the blocks it stands for
//! ([`memlens_format::Recording::block_count`], which every replay here uses; a sampled
//! recording of format 7 or older counts its sampled blocks).

use crate::{format_bytes, Recording};

/// One line for every view of a sampled recording: `sampled every 512 KiB: figures are
/// estimates`. `None` for an exact recording.
pub fn sampling_notice(rec: &Recording) -> Option<String> {
    rec.meta().sample_bytes().map(notice_for)
}

/// The notice for a rate in bytes.
pub fn notice_for(sample_bytes: u64) -> String {
    format!("sampled every {}: figures are estimates", format_bytes(sample_bytes))
}

/// How two recordings' sampling differs, if it does: an exact and a sampled recording, or
/// two rates. Their differences would mix estimation error into the change.
pub fn sampling_mismatch(base: &Recording, head: &Recording) -> Option<String> {
    let describe = |b: Option<u64>| match b {
        None => "exact (every allocation)".to_owned(),
        Some(b) => format!("sampled every {}", format_bytes(b)),
    };
    let (b, h) = (base.meta().sample_bytes(), head.meta().sample_bytes());
    (b != h).then(|| format!("the base is {} and the head is {}", describe(b), describe(h)))
}

#[cfg(test)]
mod tests {
    use super::notice_for;

    #[test]
    fn the_notice_names_the_rate_in_binary_units() {
        assert_eq!(notice_for(512 * 1024), "sampled every 512 KiB: figures are estimates");
        assert_eq!(notice_for(2 << 20), "sampled every 2.00 MiB: figures are estimates");
    }
}
