//! Descendants of a followed program started without memlens's environment (exec'd by a
//! program the tracer is not loaded in, such as a static binary, or by the execve system call
//! itself; a child given an environment of the program's choosing, or whose parent emptied its
//! own, as `env -i` does, gets memlens's variables added by the tracer's exec hooks, unless it
//! has an `LD_PRELOAD` of its own): nothing in them connects to the recorder, so it looks for them itself, and
//! records each as a process of the recording whose memory is sampled and whose recording says
//! why it is not traced ([`memlens_analysis::NOT_FOLLOWED_MARKER`]).
//!
//! A process is one of them when its environment (`/proc/PID/environ`, as it was at its exec)
//! has neither [`ENV_FOLLOW`] nor [`ENV_FOLLOW_PENDING`] and, if its parent is followed,
//! differs from its parent's: a forked child shares its parent's (a `memlens.record()` block's
//! program was started without them, and its forked children are followed from the fork), an
//! exec'd one has its own. A stray's children inherit the stray's: they are strays too.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use memlens_wire::handshake::{
    child_line, CHILD_NOT_FOLLOWED, CHILD_UNTRACED, ENV_FOLLOW, ENV_FOLLOW_PENDING,
};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use rustc_hash::FxHashSet as HashSet;

use crate::child_memory::children_of;

/// At most this many processes are looked at in one look (a fork bomb must not stall it).
const MAX_LOOKED_AT: usize = 10_000;

/// The descendants already seen, between looks.
#[derive(Default)]
pub struct Strays {
    /// Found in the last look, not yet reported: reported if still there at the next one, so
    /// that programs that live a moment (a shell command) are left out, as the preloaded tracer
    /// leaves out programs that are not Python and live under 100 ms.
    seen: HashSet<u32>,
    /// Reported, or found to be followed.
    settled: HashSet<u32>,
}

impl Strays {
    /// Looks at the descendants of `roots` (the followed processes, the program first) that
    /// `known` does not know: returns (pid, parent pid) of each started without memlens's
    /// environment that was there at the last look already. A process returned is not
    /// returned again.
    pub fn look(&mut self, roots: &[u32], known: impl Fn(u32) -> bool) -> Vec<(u32, u32)> {
        let me = std::process::id();
        // (pid, its parent, whether that is a followed process).
        let mut queue: Vec<(u32, u32, bool)> = roots.iter().map(|&r| (r, 0, false)).collect();
        let mut next = 0;
        let (mut found, mut seen) = (Vec::new(), HashSet::default());
        while next < queue.len() && queue.len() <= MAX_LOOKED_AT {
            let (pid, parent, followed_parent) = queue[next];
            let root = next < roots.len();
            next += 1;
            // Not this recorder's descendants (`memlens sink` is the program's child).
            if pid == me {
                continue;
            }
            // A followed process found under its parent is looked at from its own entry
            // among the roots (one still connecting, once it is one): not twice, and not as
            // the child of an unfollowed parent.
            if !root && known(pid) {
                continue;
            }
            if !root && !self.settled.contains(&pid) {
                // A forked child shares its parent's environment: only a followed process's
                // children are compared with it.
                match without_memlens(pid, followed_parent.then_some(parent)) {
                    Some(true) if self.seen.contains(&pid) => {
                        self.settled.insert(pid);
                        found.push((pid, parent));
                    }
                    Some(true) => {
                        seen.insert(pid);
                    }
                    Some(false) => {
                        self.settled.insert(pid);
                        continue;
                    }
                    None => continue,
                }
            }
            // A stray's children inherit its environment: they are looked at too.
            queue.extend(children_of(pid).into_iter().map(|c| (c, pid, root)));
        }
        self.seen = seen;
        found
    }
}

/// Whether `pid` was started without memlens's environment (see the module doc): neither
/// variable in it, and, if `parent` is given, not the environment of that parent. `None` if
/// that cannot be read (it is gone, or not ours to read).
fn without_memlens(pid: u32, parent: Option<u32>) -> Option<bool> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    if has_memlens(&environ) {
        return Some(false);
    }
    match parent {
        Some(parent) => Some(std::fs::read(format!("/proc/{parent}/environ")).ok()? != environ),
        None => Some(true),
    }
}

/// Whether `pid` was started with memlens's environment (it or its parent at its exec had
/// either variable): a process that is followed. `None` if that cannot be read.
pub fn follows(pid: u32) -> Option<bool> {
    std::fs::read(format!("/proc/{pid}/environ")).ok().map(|e| has_memlens(&e))
}

/// Whether `pid` was started with the environment of the run whose follow directory is
/// `dir` ([`ENV_FOLLOW`] or [`ENV_FOLLOW_PENDING`] naming it). `None` if that cannot be read.
pub fn follows_dir(pid: u32, dir: &std::path::Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let dir = dir.as_os_str().as_bytes();
    let named = follow_dirs(&environ).any(|d| d == dir);
    Some(named)
}

/// Whether `environ` (`/proc/PID/environ`) has [`ENV_FOLLOW`] or [`ENV_FOLLOW_PENDING`].
fn has_memlens(environ: &[u8]) -> bool {
    follow_dirs(environ).next().is_some()
}

/// The values of [`ENV_FOLLOW`] and [`ENV_FOLLOW_PENDING`] in `environ`.
fn follow_dirs(environ: &[u8]) -> impl Iterator<Item = &[u8]> {
    environ.split(|&b| b == 0).filter_map(|kv| {
        [ENV_FOLLOW, ENV_FOLLOW_PENDING]
            .iter()
            .find_map(|name| kv.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
    })
}

/// The two connections a stray's recording is read from, as if it had connected them: a
/// `records` stream holding only its child line ([`CHILD_NOT_FOLLOWED`], parent `ppid`), and
/// a `ctrl` socket that stays silent (its end is read from /proc). The other ends must be
/// kept open while it is recorded: their closing would say it exec'd or told its end.
pub fn connection(ppid: u32) -> Result<(OwnedFd, OwnedFd, [OwnedFd; 2])> {
    let pair = |kind| {
        socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC)
            .context("cannot make a socket pair")
    };
    let ((records, records_peer), (ctrl, ctrl_peer)) =
        (pair(SockType::Stream)?, pair(SockType::SeqPacket)?);
    let line = child_line(CHILD_UNTRACED, CHILD_NOT_FOLLOWED, ppid, b"") + "\n";
    nix::unistd::write(&records_peer, line.as_bytes()).context("cannot write a child line")?;
    Ok((records, ctrl, [records_peer, ctrl_peer]))
}
