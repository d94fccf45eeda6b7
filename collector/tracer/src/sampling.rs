//! Poisson byte sampling (`memlens run --sample BYTES`).
//!
//! Layer: foundations (the guard's thread-locals below it); the emit layer asks it.
//!
//! Each thread samples the bytes it allocates as a Poisson process of mean `BYTES`, as
//! tcmalloc does: it keeps a countdown of bytes drawn from an exponential distribution of
//! that mean; every allocation subtracts its size, and the one that takes the countdown to
//! zero or below is recorded (with its stack) and a new countdown is drawn. The exponential
//! has no memory, so an allocation of `s` bytes is recorded with probability
//! `1 - exp(-s / BYTES)` whatever the thread allocated before: the recorder undoes that
//! with each sampled block's weight (`collector/src/sampling.rs`).
//!
//! The unsampled path is a decrement and a branch on the thread-locals the hook already
//! holds ([`crate::guard::Tls`]): no stack, no ring. The random state is a per-thread
//! xorshift64*, seeded from the thread's TLS address, the time-stamp counter and a
//! process-wide counter.
//!
//! Only kinds for which [`memlens_wire::AllocKind::sampled`] holds are sampled; a sampled
//! block's address goes into [`crate::sampled_set`], and only the frees of addresses found
//! there are recorded.
//!
//! A thread's countdown outlives a session: the first sample of a thread in a session
//! that follows one with another rate comes after a countdown of the old mean (once per
//! thread, negligible against the thousands of samples a recording holds).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::guard::Tls;

/// The current session's mean bytes between samples; 0: every allocation is recorded.
static MEAN: AtomicU64 = AtomicU64::new(0);
/// The mean the next session will use (`memlens_set_sample`).
static NEXT: AtomicU64 = AtomicU64::new(0);
/// Mixed into each thread's seed, so that threads seeded in the same tick differ.
static SEEDS: AtomicU64 = AtomicU64::new(0);

/// The current session's mean bytes between samples; 0 when not sampling.
#[inline(always)]
pub fn mean() -> u64 {
    MEAN.load(Ordering::Relaxed)
}

/// Sets the rate of the next session (0: exact).
pub fn set_next(bytes: u64) {
    NEXT.store(bytes, Ordering::Relaxed);
}

/// A session starts: it takes the rate set for it, and the session after it is exact
/// unless told otherwise. Returns the rate. Called before recording is turned on.
pub fn begin_session() -> u64 {
    let mean = NEXT.swap(0, Ordering::Relaxed);
    MEAN.store(mean, Ordering::Relaxed);
    mean
}

/// Whether the calling thread's allocation of `size` bytes is sampled, `mean` being
/// [`mean()`] (not 0).
#[inline(always)]
pub fn take(tls: &Tls, size: usize, mean: u64) -> bool {
    let size = bytes(size);
    !count_down(tls, size) && crossed(tls, size, mean)
}

/// Whether a session samples and the calling thread's allocation of `size` bytes is not
/// sampled, the countdown not crossed: it is then decremented. When it would be crossed,
/// it is left as it was, for [`take`] to find (the hooks' fast path, before their usual one).
#[inline(always)]
pub fn skip(tls: &Tls, size: usize) -> bool {
    mean() != 0 && count_down(tls, bytes(size))
}

/// An allocation's size as the countdown counts it.
#[inline(always)]
fn bytes(size: usize) -> i64 {
    size.min(i64::MAX as usize) as i64
}

/// Takes `size` bytes off the countdown if it stays above zero (the allocation is not
/// sampled); otherwise leaves it as it is and returns false.
#[inline(always)]
fn count_down(tls: &Tls, size: i64) -> bool {
    let left = tls.countdown.get().saturating_sub(size);
    if left > 0 {
        tls.countdown.set(left);
    }
    left > 0
}

/// The countdown reached zero: a sample, and a new countdown. On a thread that never
/// sampled, the countdown was never drawn: it is drawn now, and this allocation counts
/// against it like any other.
#[cold]
#[inline(never)]
fn crossed(tls: &Tls, size: i64, mean: u64) -> bool {
    let mut rng = tls.rng.get();
    if rng == 0 {
        rng = seed(tls);
        let left = draw(&mut rng, mean).saturating_sub(size);
        tls.rng.set(rng);
        if left > 0 {
            tls.countdown.set(left);
            return false;
        }
    }
    tls.countdown.set(draw(&mut rng, mean));
    tls.rng.set(rng);
    true
}

/// A non-zero seed for the calling thread.
fn seed(tls: &Tls) -> u64 {
    let n = SEEDS.fetch_add(1, Ordering::Relaxed);
    let mut z = (tls as *const Tls as u64) ^ crate::clock::now_ticks().rotate_left(32) ^ n;
    // splitmix64's finalizer: nearby inputs give unrelated seeds.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    if z == 0 {
        0x9E37_79B9_7F4A_7C15
    } else {
        z
    }
}

/// An exponentially distributed number of bytes of mean `mean`, at least 1.
fn draw(rng: &mut u64, mean: u64) -> i64 {
    // xorshift64* (Vigna): state never 0, 64 good bits out.
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
    // Uniform in (0, 1]: ln never sees 0.
    let u = (bits + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    // `as` saturates: a huge draw is i64::MAX bytes, never negative.
    ((-u.ln() * mean as f64) as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a new thread, whose thread-locals start zeroed.
    fn on_fresh_thread<R: Send + 'static>(f: impl FnOnce(&Tls) -> R + Send + 'static) -> R {
        std::thread::spawn(move || f(crate::guard::tls())).join().unwrap()
    }

    #[test]
    fn draws_are_exponential_with_the_mean_asked() {
        let mut rng = 12345;
        let n = 200_000;
        let mean = 512 * 1024;
        let draws: Vec<f64> = (0..n).map(|_| draw(&mut rng, mean) as f64).collect();
        let avg = draws.iter().sum::<f64>() / n as f64;
        // Standard error of the mean of n exponentials: mean / sqrt(n) = 0.22%.
        assert!((avg / mean as f64 - 1.0).abs() < 0.01, "mean {avg}");
        // P(X > mean) = exp(-1) = 0.368.
        let above = draws.iter().filter(|&&d| d > mean as f64).count() as f64 / n as f64;
        assert!((above - (-1f64).exp()).abs() < 0.01, "P(X > mean) = {above}");
    }

    #[test]
    fn small_blocks_are_sampled_with_probability_one_minus_exp_minus_size_over_mean() {
        let n = 2_000_000;
        let sampled =
            on_fresh_thread(move |tls| (0..n).filter(|_| take(tls, 4096, 64 * 1024)).count());
        let expected = n as f64 * (1.0 - (-4096f64 / 65536.0).exp());
        // Binomial: sd = sqrt(n p (1 - p)) = 336 of 121,000; 5 sd is 1.4%.
        assert!((sampled as f64 / expected - 1.0).abs() < 0.014, "{sampled} vs {expected}");
    }

    #[test]
    fn a_block_far_above_the_mean_is_always_sampled_and_the_first_allocation_not_always() {
        let firsts: usize =
            (0..50).map(|_| on_fresh_thread(|tls| take(tls, 64, 512 * 1024)) as usize).sum();
        // Each first 64-byte allocation is sampled with probability 1.2e-4.
        assert_eq!(firsts, 0);
        on_fresh_thread(|tls| {
            for _ in 0..1000 {
                assert!(take(tls, 64 << 20, 512 * 1024));
            }
        });
    }
}
