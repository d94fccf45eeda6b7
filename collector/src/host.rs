//! Facts about this machine and clock that every recording's metadata needs.

use memlens_format::{CaptureOptions, Meta};
use nix::sys::time::TimeValLike;
use nix::time::{clock_gettime, ClockId};

/// CLOCK_MONOTONIC in nanoseconds: the clock the tracer stamps records with.
pub fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map(|t| t.num_nanoseconds() as u64).unwrap_or(0)
}

/// Metadata for process `pid`: memlens version, host, platform and start time filled in;
/// the Python fields and extras are left for the caller.
pub fn meta(pid: u32, command_line: Vec<String>, cwd: String, capture: CaptureOptions) -> Meta {
    Meta {
        memlens_version: env!("CARGO_PKG_VERSION").to_owned(),
        command_line,
        cwd,
        pid,
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        start_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        capture,
        ..Meta::default()
    }
}
