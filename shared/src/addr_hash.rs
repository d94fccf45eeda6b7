//! A hasher for addresses. FxHash is 32-bit on wasm32, where 16-byte-aligned addresses then
//! fall into a fraction of the buckets (replays ran ~20x slower in the browser than natively);
//! this one mixes all 64 bits on every target.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes one `u64` (an address) with a multiply-xorshift mix.
#[derive(Default, Clone, Copy)]
pub(crate) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with this hasher; fold anything else in byte by byte.
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, a: u64) {
        // The golden-ratio multiplier spreads the low (aligned, often zero) bits upward;
        // the final xorshift brings high bits back down for the bucket index.
        let h = (a ^ (a >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

/// A map keyed by address.
pub(crate) type AddressMap<V> = HashMap<u64, V, BuildHasherDefault<AddressHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn aligned_addresses_spread_over_low_bits() {
        let build = BuildHasherDefault::<AddressHasher>::default();
        let mut buckets = [0u32; 64];
        for i in 0..64_000u64 {
            let h = build.hash_one(0x7f00_0000_0000u64 + i * 16);
            buckets[(h & 63) as usize] += 1;
        }
        // 1000 expected per bucket; a poor hash leaves most empty.
        assert!(buckets.iter().all(|&n| (800..1200).contains(&n)), "{buckets:?}");
    }
}
