//! How a process traced by `memlens run` tells the recorder how it ends.
//!
//! `memlens run` execs the interpreter in its own process (the program keeps the PID the
//! user started) and records from a helper process beside it, which is not the
//! program's parent and so cannot `wait` for its exit status. The tracer sends one
//! [`EndReport`] on a control socket just before the process ends (from `exit`, `_exit`,
//! a fatal signal's handler, or a `kill` of itself), then waits until the recorder has
//! finished the recording and closed its end. Each report is one 8-byte datagram
//! (`SOCK_SEQPACKET`): a `u32` tag, then an `i32` value, little-endian.
//!
//! A process that replaces itself (`execve`) says so first, with the new command line
//! ([`encode_exec`]: the tag of [`EXEC_TAG`], then the arguments, each ended by a NUL), and
//! [`EndReport::ExecFailed`] if the exec returns. The socket stays open across the exec: the
//! program it runs reports the end (the process's, which is what the recorder waits for).

/// What the traced process says about its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReport {
    /// It is exiting with this status (`exit`, `_exit`, a return from `main`).
    Exited(i32),
    /// It is about to die of this signal.
    Signaled(i32),
    /// `memlens run` could not start the program: there is nothing to record.
    Aborted,
    /// The exec announced last ([`encode_exec`]) failed: the process goes on as it was.
    ExecFailed,
}

/// The tag of an exec's announcement ([`encode_exec`]).
pub const EXEC_TAG: u32 = 4;

/// At most this many bytes of an exec's announcement: longer command lines are cut.
pub const EXEC_REPORT_MAX: usize = 1024;

/// Writes the announcement of an exec of the command line `args` into `out`; returns its
/// length. No allocation: the tracer calls it before an `execve`, in any process.
pub fn encode_exec<'a>(
    args: impl Iterator<Item = &'a [u8]>,
    out: &mut [u8; EXEC_REPORT_MAX],
) -> usize {
    out[..4].copy_from_slice(&EXEC_TAG.to_le_bytes());
    out[4..8].copy_from_slice(&0i32.to_le_bytes());
    let mut len = 8;
    for arg in args {
        let n = arg.len().min(EXEC_REPORT_MAX - 1 - len);
        out[len..len + n].copy_from_slice(&arg[..n]);
        out[len + n] = 0;
        len += n + 1;
        if len >= EXEC_REPORT_MAX - 1 {
            break;
        }
    }
    len
}

/// The command line of an exec's announcement in `bytes`, its arguments joined by spaces.
pub fn decode_exec(bytes: &[u8]) -> Option<String> {
    if bytes.len() < END_REPORT_LEN || bytes[..4] != EXEC_TAG.to_le_bytes() {
        return None;
    }
    let args: Vec<String> = bytes[END_REPORT_LEN..]
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
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
            EndReport::ExecFailed => (5, 0),
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
            5 => Some(EndReport::ExecFailed),
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
            EndReport::ExecFailed,
        ] {
            assert_eq!(EndReport::decode(&r.encode()), Some(r));
        }
        assert_eq!(EndReport::decode(&[9, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(EndReport::decode(&[1, 0, 0, 0]), None);
    }

    #[test]
    fn an_exec_says_its_command_line_cut_to_the_limit() {
        let mut out = [0u8; EXEC_REPORT_MAX];
        let args: [&[u8]; 3] = [b"/bin/sh", b"-c", b"exit 4"];
        let n = encode_exec(args.into_iter(), &mut out);
        assert_eq!(decode_exec(&out[..n]).as_deref(), Some("/bin/sh -c exit 4"));
        assert_eq!(EndReport::decode(&out[..n]), None);
        assert_eq!(decode_exec(&EndReport::Exited(0).encode()), None);
        let long = vec![b'x'; 5000];
        let n = encode_exec([&long[..], b"y"].into_iter(), &mut out);
        assert!(n <= EXEC_REPORT_MAX);
        assert!(decode_exec(&out[..n]).unwrap().starts_with("xxx"));
    }
}
