//! The clocks: CLOCK_MONOTONIC, shared by the parent (which subtracts its own start time)
//! and every record that leaves the process, and cheaper ticks for the hot path.
//!
//! Layer: foundations; imports nothing of the tracer.
//!
//! Records are not stamped one by one (see [`crate::ring`]): each stretch of a thread's
//! records starts with a reading of the x86_64 time-stamp counter ([`now_ticks`], a few ns
//! where `clock_gettime` through the vDSO measured ~20-40 ns here, a VM), and the drain
//! turns those ticks into CLOCK_MONOTONIC nanoseconds ([`TickConverter`]) before writing
//! to the pipe. Where there is no usable counter, ticks are CLOCK_MONOTONIC nanoseconds
//! and the conversion is the identity.

/// Nanoseconds of CLOCK_MONOTONIC.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC is
    // always supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The time-stamp counter: constant-rate and synchronized across cores on the machines
/// where Linux itself uses it as its clock source (it then refuses an unstable one).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn now_ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn now_ticks() -> u64 {
    now_ns()
}

/// Ticks and nanoseconds read at (nearly) the same instant.
fn now_pair() -> (u64, u64) {
    let a = now_ticks();
    let ns = now_ns();
    let b = now_ticks();
    (a / 2 + b / 2, ns)
}

/// Turns tick stamps into CLOCK_MONOTONIC nanoseconds, batch by batch: a batch's stamps
/// are placed from the (ticks, ns) pair read at this batch, at the counter's rate measured
/// since the session started, and time never goes backwards across batches.
///
/// The rate comes from the longest baseline at hand: two pairs read some µs apart (busy
/// drain passes follow each other at once) give it only to a few %, and a drain that fell
/// behind converts stamps seconds old, whose times were then off by hundreds of ms (a
/// followed worker's records came after its end).
pub struct TickConverter {
    /// The pair read when the session started.
    origin: (u64, u64),
    /// The pair read at the current batch.
    ticks: u64,
    ns: u64,
    /// Nanoseconds per tick.
    rate: f64,
    last_ns: u64,
}

impl TickConverter {
    pub const fn new() -> Self {
        TickConverter { origin: (0, 0), ticks: 0, ns: 0, rate: 1.0, last_ns: 0 }
    }

    /// Starts converting from now (a new session).
    pub fn reset(&mut self) {
        let (ticks, ns) = now_pair();
        *self = TickConverter { origin: (ticks, ns), ticks, ns, rate: 1.0, last_ns: 0 };
    }

    /// Reads the clocks for the batch about to be converted.
    pub fn begin_batch(&mut self) {
        let (ticks, ns) = now_pair();
        let (t0, n0) = self.origin;
        if ticks > t0 && ns > n0 {
            self.rate = (ns - n0) as f64 / (ticks - t0) as f64;
        }
        self.ticks = ticks;
        self.ns = ns;
    }

    /// A stamp of the current batch in nanoseconds.
    pub fn convert(&mut self, ticks: u64) -> u64 {
        let offset = ticks.wrapping_sub(self.ticks) as i64 as f64 * self.rate;
        let converted = (self.ns as f64 + offset).max(0.0) as u64;
        self.last_ns = self.last_ns.max(converted);
        self.last_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_stamps_are_monotonic_nanoseconds_between_the_drains() {
        let mut c = TickConverter::new();
        c.reset();
        let before = now_ns();
        let mut stamps = Vec::new();
        for _ in 0..100 {
            stamps.push(now_ticks());
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        c.begin_batch();
        let after = now_ns();
        let mut last = 0;
        for t in stamps {
            let ns = c.convert(t);
            // Within a few µs of the real clock (the pairs are read a few ns apart).
            assert!(ns + 50_000 >= before && ns <= after + 50_000, "{before} {ns} {after}");
            assert!(ns >= last);
            last = ns;
        }
        assert!(last - (before.max(1)) > 4_000_000, "100 x 50 µs elapsed");
    }

    #[test]
    fn old_stamps_converted_after_batches_close_together_keep_their_time() {
        let mut c = TickConverter::new();
        c.reset();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (stamp, at) = (now_ticks(), now_ns());
        std::thread::sleep(std::time::Duration::from_millis(200));
        // Busy passes: pairs a few µs apart.
        c.begin_batch();
        c.begin_batch();
        let ns = c.convert(stamp);
        assert!(ns.abs_diff(at) < 2_000_000, "{} ms off", ns.abs_diff(at) as f64 / 1e6);
    }
}
