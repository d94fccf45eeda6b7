//! The clocks: CLOCK_MONOTONIC, shared by the parent (which subtracts its own start time)
//! and every record that leaves the process, and cheaper ticks for the hot path.
//!
//! Every traced allocation is stamped, so the stamp's cost is on the program's critical
//! path: `clock_gettime` through the vDSO measured ~40 ns here (a VM), the x86_64
//! time-stamp counter a few ns. Ring records are therefore stamped in ticks
//! ([`now_ticks`]); the drain merges the rings by ticks and turns them into
//! CLOCK_MONOTONIC nanoseconds ([`TickConverter`]) before writing them to the pipe. Where
//! there is no usable counter, ticks are CLOCK_MONOTONIC nanoseconds and the conversion
//! is the identity.

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

/// Turns tick stamps into CLOCK_MONOTONIC nanoseconds, batch by batch: between two
/// drains it interpolates on the line through the (ticks, ns) pairs read at each, and
/// never lets time go backwards across batches.
pub struct TickConverter {
    ticks: u64,
    ns: u64,
    last_ns: u64,
}

impl TickConverter {
    pub const fn new() -> Self {
        TickConverter { ticks: 0, ns: 0, last_ns: 0 }
    }

    /// Starts converting from now (a new session).
    pub fn reset(&mut self) {
        let (ticks, ns) = now_pair();
        *self = TickConverter { ticks, ns, last_ns: 0 };
    }

    /// Rewrites the stamp of every record in `buf` (whole wire records, in tick order)
    /// from ticks to nanoseconds.
    pub fn convert(&mut self, buf: &mut [u8]) {
        let (ticks, ns) = now_pair();
        let rate = if ticks > self.ticks && ns > self.ns {
            (ns - self.ns) as f64 / (ticks - self.ticks) as f64
        } else {
            1.0
        };
        let mut pos = 0;
        while let Some(t) = memlens_wire::peek_time(&buf[pos..]) {
            let len =
                4 + u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let offset = t.wrapping_sub(self.ticks) as i64 as f64 * rate;
            let converted = (self.ns as f64 + offset).max(0.0) as u64;
            self.last_ns = self.last_ns.max(converted);
            memlens_wire::set_time(&mut buf[pos..], self.last_ns);
            pos += len;
        }
        self.ticks = ticks;
        self.ns = ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memlens_wire::{Header, Record};

    #[test]
    fn converted_stamps_are_monotonic_nanoseconds_between_the_drains() {
        let mut c = TickConverter::new();
        c.reset();
        let before = now_ns();
        let mut buf = Vec::new();
        let mut stamps = Vec::new();
        for _ in 0..100 {
            let r = Record::Pop { n: 1 };
            let start = buf.len();
            buf.resize(start + r.encoded_len(), 0);
            let t = now_ticks();
            stamps.push(t);
            r.encode_into(Header { time_ns: t, thread: 0 }, &mut buf[start..]);
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        c.convert(&mut buf);
        let after = now_ns();
        let mut pos = 0;
        let mut last = 0;
        while let Some(ns) = memlens_wire::peek_time(&buf[pos..]) {
            // Within a few µs of the real clock (the pairs are read a few ns apart).
            assert!(ns + 50_000 >= before && ns <= after + 50_000, "{before} {ns} {after}");
            assert!(ns >= last);
            last = ns;
            pos += Record::Pop { n: 1 }.encoded_len();
        }
        assert!(last - (before.max(1)) > 4_000_000, "100 x 50 µs elapsed");
    }
}
