//! Resident and virtual memory of the traced process and its descendants, read from
//! /proc (no ptrace, no signals: safe to do every few milliseconds).

use std::fs;

/// Bytes per page for /proc/<pid>/statm. 4 KiB on every Linux target memlens supports
/// (x86_64, aarch64 with 4 KiB pages); a 16/64 KiB-page kernel would need sysconf.
const PAGE_SIZE: u64 = 4096;

/// (rss, vms) in bytes of one process, if it still exists.
fn statm(pid: u32) -> Option<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let mut it = s.split_whitespace();
    let vms: u64 = it.next()?.parse().ok()?;
    let rss: u64 = it.next()?.parse().ok()?;
    Some((rss * PAGE_SIZE, vms * PAGE_SIZE))
}

/// Direct children of `pid`, over all its threads.
fn children(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(s) = fs::read_to_string(path) {
            out.extend(s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
}

/// RSS and VMS summed over `pid` and all its descendants. `None` once `pid` is gone.
pub fn tree_memory(pid: u32) -> Option<(u64, u64)> {
    tree_memory_except(pid, None)
}

/// [`tree_memory`] without the process `skip` (memlens's own recording process, when
/// the traced program started it).
pub fn tree_memory_except(pid: u32, skip: Option<u32>) -> Option<(u64, u64)> {
    let (mut rss, mut vms) = statm(pid)?;
    let mut todo = Vec::new();
    children(pid, &mut todo);
    let mut seen = 0;
    while let Some(child) = todo.pop() {
        // Bound the walk: a fork bomb must not stall sampling.
        seen += 1;
        if seen > 10_000 {
            break;
        }
        if Some(child) == skip {
            continue;
        }
        if let Some((r, v)) = statm(child) {
            rss += r;
            vms += v;
        }
        children(child, &mut todo);
    }
    Some((rss, vms))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_memory() {
        let (rss, vms) = super::tree_memory(std::process::id()).unwrap();
        assert!(rss > 0 && vms >= rss);
    }
}
