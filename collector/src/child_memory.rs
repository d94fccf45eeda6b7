//! Resident and virtual memory of a process and its descendants, through `sysinfo` (so on
//! Linux, macOS and Windows alike, with the system's page size; no ptrace, no signals: safe
//! to do every few milliseconds).
//!
//! Each sample refreshes only the processes of the tree and only their memory (a refresh of
//! every process costs about 0.7 µs per process on the machine, at every sample). On Linux
//! that is about 20 µs for a lone process and 30 µs per process of a bigger tree (sysinfo
//! reads `stat`, `status` and `statm` of each, where a bare `statm` took 10 µs), whatever
//! else runs on the machine; the tree is found from `/proc/PID/task/TID/children`, which
//! reads just the tree. Elsewhere the tree is found from the parent of every process,
//! which sysinfo has to list.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

/// At most this many descendants are looked at: a fork bomb must not stall sampling.
const MAX_DESCENDANTS: usize = 10_000;

/// Samples the memory of one process tree, again and again (keeping sysinfo's state
/// between samples is what makes them cheap).
pub struct TreeMemory {
    system: System,
    root: Pid,
    /// Left out of the tree with its descendants: memlens's own recording process, when
    /// the traced program started it.
    skip: Option<Pid>,
    tree: Vec<Pid>,
    /// Only the root process, not its descendants.
    alone: bool,
}

impl TreeMemory {
    /// The tree of `pid`, without `skip` (and what `skip` started).
    pub fn new(pid: u32, skip: Option<u32>) -> TreeMemory {
        TreeMemory {
            system: System::new(),
            root: Pid::from_u32(pid),
            skip: skip.map(Pid::from_u32),
            tree: Vec::new(),
            alone: false,
        }
    }

    /// The process `pid` alone (a followed descendant: its own descendants have streams of
    /// their own). Following processes needs the tracer: Linux only.
    #[cfg(target_os = "linux")]
    pub fn alone(pid: u32) -> TreeMemory {
        TreeMemory { alone: true, ..TreeMemory::new(pid, None) }
    }

    /// (RSS, VMS) in bytes summed over the tree. `None` once the root process is gone.
    pub fn sample(&mut self) -> Option<(u64, u64)> {
        self.tree.clear();
        self.tree.push(self.root);
        if !self.alone {
            self.find_descendants();
        }
        let memory_only = ProcessRefreshKind::nothing().without_tasks().with_memory();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&self.tree),
            true,
            memory_only,
        );
        self.system.process(self.root)?;
        let procs = self.tree.iter().filter_map(|pid| self.system.process(*pid));
        Some(procs.fold((0, 0), |(rss, vms), p| (rss + p.memory(), vms + p.virtual_memory())))
    }

    /// Appends the root's descendants to `self.tree` (the root is its first element).
    #[cfg(target_os = "linux")]
    fn find_descendants(&mut self) {
        let mut next = 0;
        while next < self.tree.len() && self.tree.len() <= MAX_DESCENDANTS {
            let pid = self.tree[next];
            next += 1;
            let children = children_of(pid.as_u32()).into_iter().map(Pid::from_u32);
            self.tree.extend(children.filter(|c| Some(*c) != self.skip));
        }
    }

    /// Appends the root's descendants to `self.tree`, from every process's parent.
    #[cfg(not(target_os = "linux"))]
    fn find_descendants(&mut self) {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().without_tasks(),
        );
        let mut children: std::collections::HashMap<Pid, Vec<Pid>> = Default::default();
        for (pid, p) in self.system.processes() {
            if let Some(parent) = p.parent().filter(|_| Some(*pid) != self.skip) {
                children.entry(parent).or_default().push(*pid);
            }
        }
        let mut next = 0;
        while next < self.tree.len() && self.tree.len() <= MAX_DESCENDANTS {
            let pid = self.tree[next];
            next += 1;
            self.tree.extend(children.get(&pid).into_iter().flatten());
        }
    }
}

/// The children of process `pid` (those of each of its threads), from
/// `/proc/PID/task/TID/children`; none if it is gone.
#[cfg(target_os = "linux")]
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let lists =
        tasks.flatten().filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok());
    lists
        .flat_map(|s| s.split_whitespace().filter_map(|c| c.parse().ok()).collect::<Vec<_>>())
        .collect()
}

/// The command line and working directory of a process memlens did not start (empty when
/// they cannot be read), and whether it exists.
pub fn command_and_cwd(pid: u32) -> Option<(Vec<String>, String)> {
    let pid = Pid::from_u32(pid);
    let mut system = System::new();
    let kind = ProcessRefreshKind::nothing()
        .without_tasks()
        .with_cmd(UpdateKind::Always)
        .with_cwd(UpdateKind::Always);
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, kind);
    let p = system.process(pid)?;
    let cmd = p.cmd().iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let cwd = p.cwd().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    Some((cmd, cwd))
}

#[cfg(test)]
mod tests {
    use super::TreeMemory;
    use std::process::{Command, Stdio};

    #[test]
    fn reads_our_own_memory() {
        let (rss, vms) = TreeMemory::new(std::process::id(), None).sample().unwrap();
        assert!(rss > 0 && vms >= rss);
    }

    /// A child's memory counts, unless it is the one left out; a process that is gone has
    /// no memory.
    #[test]
    fn counts_children_but_not_the_skipped_one() {
        // `sleep` is a child of this test process: its RSS is at least one page.
        let mut child = Command::new("sleep").arg("30").stdout(Stdio::null()).spawn().unwrap();
        let me = std::process::id();
        let child_rss = |skip| {
            let mut tree = TreeMemory::new(me, skip);
            for _ in 0..200 {
                tree.sample().unwrap();
                if tree.tree.len() > 1 || skip.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let child = sysinfo::Pid::from_u32(child.id());
            (tree.tree.contains(&child), tree.system.process(child).map(|p| p.memory()))
        };
        let (found, rss) = child_rss(None);
        assert!(found && rss.unwrap() > 0, "{found} {rss:?}");
        assert!(!child_rss(Some(child.id())).0);
        let pid = child.id();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(TreeMemory::new(pid, None).sample(), None);
    }
}
