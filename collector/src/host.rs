//! Facts about this machine and clock that every recording's metadata needs.

use memlens_format::{CaptureOptions, Meta};

/// CLOCK_MONOTONIC in nanoseconds: the clock the tracer stamps records with.
#[cfg(target_os = "linux")]
pub fn monotonic_ns() -> u64 {
    use nix::sys::time::TimeValLike;
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map(|t| t.num_nanoseconds() as u64).unwrap_or(0)
}

/// Nanoseconds since memlens first asked: with no tracer stamping records, only memlens's own
/// times are compared.
#[cfg(not(target_os = "linux"))]
pub fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

#[cfg(target_os = "linux")]
fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(not(target_os = "linux"))]
fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_default()
}

/// Metadata for process `pid`: memlens version, host, platform and start time filled in;
/// the Python fields and extras are left for the caller.
pub fn meta(pid: u32, command_line: Vec<String>, cwd: String, capture: CaptureOptions) -> Meta {
    Meta {
        memlens_version: env!("CARGO_PKG_VERSION").to_owned(),
        command_line,
        cwd,
        pid,
        hostname: hostname(),
        platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        start_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        capture,
        ..Meta::default()
    }
}
