//! Hashers for addresses. FxHash is 32-bit on wasm32, where 16-byte-aligned addresses then
//! fall into a fraction of the buckets (replays ran ~20x slower in the browser than natively);
//! these mix all 64 bits on every target: [`Scattered`] everywhere, [`Nearby`] where locality
//! pays (the writer's live blocks).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;

/// How a [`MixHasher`] turns an address into a hash.
pub trait AddressMix {
    fn mix(a: u64) -> u64;
}

/// Hashes one `u64` (an address) with `M`.
pub struct MixHasher<M>(u64, PhantomData<M>);

impl<M> Default for MixHasher<M> {
    fn default() -> Self {
        MixHasher(0, PhantomData)
    }
}

impl<M: AddressMix> Hasher for MixHasher<M> {
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
        self.0 = M::mix(a);
    }
}

/// A multiply-xorshift mix of all 64 bits.
pub struct Scattered;

impl AddressMix for Scattered {
    #[inline]
    fn mix(a: u64) -> u64 {
        // The golden-ratio multiplier spreads the low (aligned, often zero) bits upward;
        // the final xorshift brings high bits back down for the bucket index.
        let h = (a ^ (a >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 32)
    }
}

/// Addresses close together land in buckets close together: 16-byte steps within a
/// 16 KiB page (a pymalloc pool) are consecutive buckets, and pages are scattered. A stream
/// of allocations and frees, which works through a pool at a time, then touches a few cache
/// lines of the table instead of one per event. The top 7 bits, which the table compares
/// before keys, still differ between neighbours.
pub(crate) struct Nearby;

impl AddressMix for Nearby {
    #[inline]
    fn mix(a: u64) -> u64 {
        const IN_PAGE: u64 = 0x3FF;
        const TAG: u64 = 0xFE00_0000_0000_0000;
        let scattered = Scattered::mix(a >> 14);
        let offset = (a >> 4) & IN_PAGE;
        let tag = (scattered ^ offset.wrapping_mul(0xD6E8_FEB8_6659_FD93)) & TAG;
        tag | (scattered & !TAG & !IN_PAGE) | offset
    }
}

/// A map keyed by address.
/// (Public for the analyses, which replay events keyed by address.)
pub type AddressMap<V> = HashMap<u64, V, BuildHasherDefault<MixHasher<Scattered>>>;

/// A map keyed by address, for a stream of events in program order (see [`Nearby`]).
pub(crate) type NearbyAddressMap<V> = HashMap<u64, V, BuildHasherDefault<MixHasher<Nearby>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn aligned_addresses_spread_over_low_bits() {
        let build = BuildHasherDefault::<MixHasher<Scattered>>::default();
        let mut buckets = [0u32; 64];
        for i in 0..64_000u64 {
            let h = build.hash_one(0x7f00_0000_0000u64 + i * 16);
            buckets[(h & 63) as usize] += 1;
        }
        // 1000 expected per bucket; a poor hash leaves most empty.
        assert!(buckets.iter().all(|&n| (800..1200).contains(&n)), "{buckets:?}");
    }

    #[test]
    fn nearby_addresses_get_nearby_buckets_and_distinct_tags() {
        let build = BuildHasherDefault::<MixHasher<Nearby>>::default();
        let base = 0x7f12_3456_4000u64;
        let h: Vec<u64> = (0..1024u64).map(|i| build.hash_one(base + i * 16)).collect();
        // One pool: consecutive buckets.
        assert!(h.windows(2).all(|w| w[1] & 0x3FF == (w[0] & 0x3FF) + 1));
        // ...whose 7-bit tags take most of their 128 values.
        let tags: std::collections::HashSet<u64> = h.iter().map(|x| x >> 57).collect();
        assert!(tags.len() > 100, "{} tags", tags.len());
        // Pages spread over the table: 64 buckets of 1024 pages' first blocks.
        let mut buckets = [0u32; 64];
        for page in 0..64_000u64 {
            let x = build.hash_one(base + (page << 14));
            buckets[((x >> 10) & 63) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (800..1200).contains(&n)), "{buckets:?}");
    }
}
