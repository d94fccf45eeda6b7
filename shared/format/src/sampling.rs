//! What the heap blocks of a sampled recording (`memlens run --sample BYTES`,
//! [`crate::Meta::sample_bytes`]) stand for: bytes ([`sample_weight`]) and blocks
//! ([`sampled_blocks`], [`BlockCount`]).
//!
//! The tracer samples each thread's allocated bytes as a Poisson process of mean `R` (the
//! rate), so a block of `s` bytes is sampled with probability `p = 1 - exp(-s / R)`. The
//! recorder writes each sampled block with the size `w = round(s / p)`: summed over the
//! sampled blocks of any set of blocks, these sizes are an unbiased estimate of the set's
//! bytes, so byte figures need no weighting by readers. Each sampled block also stands for
//! `1 / p = w / s` blocks; the recording stores only `w`, so counting recovers `s` from it
//! ([`sampled_blocks`]). Since format 8 every count of a sampled recording (the writer's
//! aggregates and summary, and every replay) adds that many blocks per sampled block; a
//! sampled recording of format 7 or below counts each sampled block once, in its aggregates
//! and in replays alike ([`BlockCount`] of [`crate::Recording::block_count`]).
//!
//! ```
//! use memlens_format::{sample_weight, sampled_blocks};
//! let rate = 512 * 1024;
//! // A 1,033-byte block is sampled with probability about 1/508: it stands for 508 blocks.
//! let w = sample_weight(1_033, rate);
//! assert_eq!(sampled_blocks(w, rate), 508);
//! // A block far above the rate is always sampled: it is itself.
//! assert_eq!(sampled_blocks(sample_weight(64 << 20, rate), rate), 1);
//! ```

/// The bytes a sampled block of `size` bytes stands for at mean `rate` (the recorder writes
/// this as its size): `size / (1 - exp(-size / rate))`, rounded; `rate` itself for an empty
/// block (the limit).
pub fn sample_weight(size: u64, rate: u64) -> u64 {
    if size == 0 {
        return rate;
    }
    let x = size as f64 / rate as f64;
    // -expm1 keeps its precision for blocks far below the rate, where 1 - exp would not.
    (size as f64 / -f64::exp_m1(-x)).round() as u64
}

/// How many blocks a sampled block stands for, from its recorded size `weight` (see
/// [`sample_weight`]) at mean `rate`: `weight / size`, `size` being the block's real size,
/// recovered by inverting [`sample_weight`]; rounded to whole blocks, at least 1.
///
/// Exactness. Far below the rate `weight` grows by half a byte per byte of size (`weight ≈
/// rate + size / 2`), so after rounding two consecutive sizes may share a weight; the size
/// taken is the middle of the sizes that give `weight`, off by at most half a byte: the count
/// is off by at most `1 / (2 size - 1)` of what it stands for (0.05% for a 1 KiB block, 3%
/// for a 16-byte one; a 1-byte block counts two thirds of what it stands for), far below the
/// sampling error of any site of fewer than ~10^5 sampled blocks. Rounding to whole blocks
/// matters only for blocks near the rate, which stand for 1 to a few blocks: a block of
/// about a fifth of the rate up to twice it may count up to half a block more or less than it
/// stands for. A block of twice the rate or more counts 1. A weight of `rate` (an empty
/// block) counts `rate` blocks (of at least one byte each).
pub fn sampled_blocks(weight: u64, rate: u64) -> u64 {
    if rate == 0 || weight >= rate.saturating_mul(2) {
        // w >= 2R means s >= 1.59 R: 1/p <= 1.26, which rounds to 1.
        return 1;
    }
    let size = sampled_size(weight, rate);
    ((weight as f64 / size).round() as u64).max(1)
}

/// The real size of a sampled block recorded as `weight` (< 2 `rate`), at least 1 byte: the
/// middle of the whole sizes whose [`sample_weight`] is `weight`, or the real solution of
/// `s / (1 - exp(-s / rate)) = weight` when no whole size gives it (a weight the recorder
/// did not write).
fn sampled_size(weight: u64, rate: u64) -> f64 {
    let s = invert(weight as f64, rate as f64);
    // The function's slope is between 1/2 and 1: the sizes that round to `weight` lie within
    // two bytes of the real solution.
    // (Saturating, and summed in f64: a crafted file may state any rate.)
    let first = (s.floor() as u64).saturating_sub(2).max(1);
    let (mut sum, mut n) = (0.0, 0u32);
    for size in first..=(s.ceil() as u64).saturating_add(2) {
        if sample_weight(size, rate) == weight {
            (sum, n) = (sum + size as f64, n + 1);
        }
    }
    if n == 0 {
        s.max(1.0)
    } else {
        sum / f64::from(n)
    }
}

/// Solves `s / (1 - exp(-s / r)) = w` for `s >= 0` by Newton's method. The left side is
/// increasing and convex in `s`, at least `max(r, s)`: from `s = w`, right of the solution,
/// every step stays right of it and moves towards it.
fn invert(w: f64, r: f64) -> f64 {
    if w <= r {
        return 0.0;
    }
    let mut s = w;
    for _ in 0..100 {
        let x = s / r;
        let q = -f64::exp_m1(-x);
        let f = s / q - w;
        // d/ds [s / q] = 1/q - x e^-x / q^2.
        let slope = 1.0 / q - x * f64::exp(-x) / (q * q);
        let step = f / slope;
        if !step.is_finite() || step <= 1e-9 * s.max(1.0) {
            break;
        }
        s = (s - step).max(0.0);
    }
    s
}

/// The number of blocks each heap block of a recording stands for: 1 for an exact recording
/// (and for a sampled one of format 7 or below, see the module documentation), else
/// [`sampled_blocks`] of its recorded size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCount {
    /// The sampling rate, 0 when every block counts 1.
    rate: u64,
}

impl BlockCount {
    /// Every block counts 1.
    pub const EXACT: BlockCount = BlockCount { rate: 0 };

    /// Blocks sampled at mean `rate` bytes (0: exact).
    pub fn sampled(rate: u64) -> BlockCount {
        BlockCount { rate }
    }

    /// Whether every block counts 1.
    pub fn is_exact(self) -> bool {
        self.rate == 0
    }

    /// The blocks a heap block recorded with `size` bytes stands for.
    #[inline]
    pub fn of(self, size: u64) -> u64 {
        if self.rate == 0 {
            1
        } else {
            sampled_blocks(size, self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a sampled block of `size` bytes stands for: 1 / p.
    fn stands_for(size: u64, rate: u64) -> f64 {
        1.0 / -f64::exp_m1(-(size as f64) / rate as f64)
    }

    #[test]
    fn weights_undo_the_sampling_probability() {
        let rate = 512 * 1024;
        // A tiny block stands for about rate / size blocks: rate bytes, plus half its size.
        assert_eq!(sample_weight(64, rate), rate + 32);
        assert_eq!(sample_weight(0, rate), rate);
        let p = 1.0 - (-1f64).exp();
        assert_eq!(sample_weight(rate, rate), (rate as f64 / p).round() as u64);
        // A block far above the rate is always sampled: its weight is its size.
        assert_eq!(sample_weight(64 * rate, rate), 64 * rate);
        // Unbiased: the expected recorded bytes (probability times weight) are the size.
        for size in [1, 16, 4096, 100_000, 3 * rate] {
            let expected = sample_weight(size, rate) as f64 / stands_for(size, rate);
            assert!((expected / size as f64 - 1.0).abs() < 1e-4, "{size}: {expected}");
        }
    }

    #[test]
    fn counts_round_trip_through_the_weight() {
        for rate in [4096, 64 * 1024, 512 * 1024, 2 << 20, 1 << 30] {
            for size in [1, 2, 3, 16, 17, 24, 100, 1000, 1033, 64 << 10, 512 << 10, 4 << 20] {
                let got = sampled_blocks(sample_weight(size, rate), rate) as f64;
                let want = stands_for(size, rate);
                // Half a byte of size, and half a block of rounding.
                let bound = want / (2.0 * size as f64 - 1.0) + 0.5 + 1e-6 * want;
                assert!(
                    (got - want).abs() <= bound,
                    "size {size} at rate {rate}: {got} blocks, stands for {want}"
                );
                assert!(got >= 1.0);
            }
        }
    }

    #[test]
    fn sizes_that_share_a_weight_count_as_their_middle() {
        let rate = 512 * 1024;
        // Far below the rate an odd size and the even one above it share a weight.
        assert_eq!(sample_weight(1033, rate), sample_weight(1034, rate));
        assert_ne!(sample_weight(1032, rate), sample_weight(1033, rate));
        let w = sample_weight(1033, rate);
        assert_eq!(sampled_blocks(w, rate), (w as f64 / 1033.5).round() as u64);
    }

    #[test]
    fn blocks_far_above_the_rate_count_once() {
        for rate in [4096, 512 * 1024, 2 << 20] {
            for size in [2 * rate, 4 * rate, 100 << 20] {
                assert_eq!(sampled_blocks(sample_weight(size, rate), rate), 1, "{size} at {rate}");
            }
        }
        // At the rate a block stands for 1 / (1 - 1/e) = 1.58 blocks.
        assert_eq!(sampled_blocks(sample_weight(512 << 10, 512 << 10), 512 << 10), 2);
    }

    #[test]
    fn weights_no_sampler_wrote_still_count_sanely() {
        let rate = 512 * 1024;
        // An empty block's weight: the rate, of 1-byte blocks; no weight counts more.
        assert_eq!(sampled_blocks(rate, rate), rate);
        assert_eq!(sampled_blocks(0, rate), 1);
        assert_eq!(sampled_blocks(u64::MAX, rate), 1);
        assert_eq!(sampled_blocks(1000, 0), 1);
        for w in (0..3 * rate).step_by(97) {
            let n = sampled_blocks(w, rate);
            assert!((1..=rate).contains(&n), "{w}: {n}");
        }
        // Rates and weights a crafted file may state: no overflow, at least one block.
        for rate in [1, 2, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            for w in [0, 1, rate / 2, rate, rate.saturating_add(1), u64::MAX - 1, u64::MAX] {
                assert!(sampled_blocks(w, rate) >= 1, "{w} at {rate}");
            }
        }
    }

    #[test]
    fn exact_recordings_count_every_block_once() {
        assert_eq!(BlockCount::EXACT.of(1033), 1);
        assert_eq!(BlockCount::default(), BlockCount::EXACT);
        assert!(BlockCount::sampled(0).is_exact());
        let rate = 512 * 1024;
        let sampled = BlockCount::sampled(rate);
        assert_eq!(sampled.of(sample_weight(1000, rate)), stands_for(1000, rate).round() as u64);
    }
}
