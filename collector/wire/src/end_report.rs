//! How a process traced by `memlens run` tells the recorder how it ends.
//!
//! `memlens run` execs the interpreter in its own process (the program keeps the PID the
//! user started) and records from a helper process beside it, which is not the
//! program's parent and so cannot `wait` for its exit status. The tracer sends one
//! [`EndReport`] on a control socket just before the process ends (from `exit`, `_exit`,
//! a fatal signal's handler, or a `kill` of itself), then waits until the recorder has
//! finished the recording and closed its end. Each report is one 8-byte datagram
//! (`SOCK_SEQPACKET`): a `u32` tag, then an `i32` value, little-endian.

/// What the traced process says about its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReport {
    /// It is exiting with this status (`exit`, `_exit`, a return from `main`).
    Exited(i32),
    /// It is about to die of this signal.
    Signaled(i32),
    /// `memlens run` could not start the program: there is nothing to record.
    Aborted,
}

/// Bytes of one report.
pub const END_REPORT_LEN: usize = 8;

impl EndReport {
    /// The report's bytes.
    pub fn encode(self) -> [u8; END_REPORT_LEN] {
        let (tag, value): (u32, i32) = match self {
            EndReport::Exited(code) => (1, code),
            EndReport::Signaled(sig) => (2, sig),
            EndReport::Aborted => (3, 0),
        };
        let mut out = [0u8; END_REPORT_LEN];
        out[..4].copy_from_slice(&tag.to_le_bytes());
        out[4..].copy_from_slice(&value.to_le_bytes());
        out
    }

    /// The report in `bytes`, if they hold one.
    pub fn decode(bytes: &[u8]) -> Option<EndReport> {
        let bytes: &[u8; END_REPORT_LEN] = bytes.try_into().ok()?;
        let tag = u32::from_le_bytes(bytes[..4].try_into().ok()?);
        let value = i32::from_le_bytes(bytes[4..].try_into().ok()?);
        match tag {
            1 => Some(EndReport::Exited(value)),
            2 => Some(EndReport::Signaled(value)),
            3 => Some(EndReport::Aborted),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_junk_is_refused() {
        for r in [
            EndReport::Exited(0),
            EndReport::Exited(-3),
            EndReport::Signaled(9),
            EndReport::Aborted,
        ] {
            assert_eq!(EndReport::decode(&r.encode()), Some(r));
        }
        assert_eq!(EndReport::decode(&[9, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(EndReport::decode(&[1, 0, 0, 0]), None);
    }
}
