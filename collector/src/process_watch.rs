//! How `memlens run`'s recorder learns that the traced program ended, and how, without
//! being its parent.
//!
//! The program runs in the process `memlens run` was started as (so it keeps its PID and
//! its signals); the recorder is a helper process beside it. The tracer tells it how the
//! process ends on a control socket ([`memlens_wire::EndReport`]: an exit status, or a
//! signal it is about to die of) and waits until the recorder closes the socket. What the
//! tracer cannot see (a SIGKILL from outside, the OOM killer, a crash before tracing
//! started) the recorder reads from `/proc/PID/stat`: its `exit_code` field holds the wait
//! status from the moment the process starts exiting (the `PF_EXITING` flag) until its
//! parent reaps it. The watch looks every 10 ms, which catches a big process (the OOM
//! killer's victim) while its memory is being freed, and again the moment the socket
//! closes (as the process's files are released, just before it can be reaped); a small
//! process's parent can still be faster (a shell reaps at once), and the end is then
//! [`Ending::Unknown`].
//!
//! A process that replaces itself (an exec) announces it with the new command line first
//! ([`memlens_wire::encode_exec`]), and keeps the socket across the exec: the new program
//! reports the end. The watch keeps the announcements ([`EndWatch::exec`]) and goes on
//! watching.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use memlens_wire::{decode_exec, EndReport, END_REPORT_LEN, EXEC_REPORT_MAX};

use crate::host::monotonic_ns;

/// How the traced process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// It ended without saying how, and was reaped before /proc could tell (probably a
    /// SIGKILL from outside: `kill -9`, the OOM killer).
    Unknown,
}

impl Ending {
    /// (exit code, signal) as recordings store them.
    pub fn code_and_signal(self) -> (Option<i32>, Option<i32>) {
        match self {
            Ending::Exited(c) => (Some(c), None),
            Ending::Signaled(s) => (None, Some(s)),
            Ending::Unknown => (None, None),
        }
    }
}

/// What the watch found: when (CLOCK_MONOTONIC ns) and how the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub at_ns: u64,
    pub ending: Ending,
    /// `memlens run` could not start the program (nothing to record).
    pub aborted: bool,
}

/// Watches one process's end from a thread of its own (see the module doc).
pub struct EndWatch {
    ended: Arc<(Mutex<Option<Ended>>, Condvar)>,
    execs: Execs,
    thread: Option<JoinHandle<OwnedFd>>,
}

/// The execs announced and not said to have failed: when (CLOCK_MONOTONIC ns) and the new
/// command line, the first first.
type Execs = Arc<Mutex<Vec<(u64, String)>>>;

/// How often the watch looks at /proc meanwhile (and, without a pidfd, whether the
/// process is gone).
const LOOK_PERIOD_MS: i32 = 10;

/// `PF_EXITING` in `/proc/PID/stat`'s flags (include/linux/sched.h).
const PF_EXITING: u64 = 0x4;

/// The wait status in `/proc/PID/stat` if the process is exiting (or a zombie).
fn status_from_stat(stat: &mut File) -> Option<Ending> {
    let mut text = String::new();
    stat.seek(SeekFrom::Start(0)).ok()?;
    stat.read_to_string(&mut text).ok()?;
    // "pid (comm) state ..." with any characters in comm: fields start after the last ')'.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 1..)?.split_whitespace().collect();
    // Field numbers of proc(5), from 3 (state) on.
    let field = |n: usize| fields.get(n - 3).copied();
    let state = field(3)?;
    let flags: u64 = field(9)?.parse().ok()?;
    if flags & PF_EXITING == 0 && !matches!(state, "Z" | "X") {
        return None;
    }
    let status: i32 = field(52)?.parse().ok()?;
    Some(if status & 0x7f == 0 {
        Ending::Exited((status >> 8) & 0xff)
    } else {
        Ending::Signaled(status & 0x7f)
    })
}

/// Whether `pid` exists and is not exiting: a process whose tracer's connection closes then
/// closed it itself (a crash or a kill closes it while the process exits).
pub fn running(pid: u32) -> bool {
    File::open(format!("/proc/{pid}/stat"))
        .is_ok_and(|mut stat| status_from_stat(&mut stat).is_none())
}

/// A pidfd for `pid` (readable once it exits), if the kernel has them (Linux 5.3+);
/// without one, the watch notices the end from /proc.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a fresh fd that we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl EndWatch {
    /// Starts watching `pid`, which reports on `ctrl`.
    pub fn spawn(pid: u32, ctrl: OwnedFd) -> std::io::Result<EndWatch> {
        let stat = File::open(format!("/proc/{pid}/stat"))?;
        let pidfd = pidfd(pid);
        let ended = Arc::new((Mutex::new(None), Condvar::new()));
        let execs = Execs::default();
        let thread = {
            let (ended, execs) = (ended.clone(), execs.clone());
            std::thread::Builder::new().name("memlens-end-watch".into()).spawn(move || {
                let found = watch(&ctrl, stat, pidfd, &execs);
                *ended.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(found);
                ended.1.notify_all();
                ctrl
            })?
        };
        Ok(EndWatch { ended, execs, thread: Some(thread) })
    }

    /// The first exec the process announced (and did not say failed), if any: when, and the
    /// new command line. Once its records stop, the process runs that program.
    pub fn exec(&self) -> Option<(u64, String)> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner()).first().cloned()
    }

    /// As [`EndWatch::wait_ended`], for at most `timeout`.
    pub fn wait_ended_for(&self, timeout: Duration) -> Option<Ended> {
        let (lock, cond) = &*self.ended;
        let ended = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (ended, _) = cond
            .wait_timeout_while(ended, timeout, |e| e.is_none())
            .unwrap_or_else(|e| e.into_inner());
        *ended
    }

    /// How the process ended, once known.
    pub fn ended(&self) -> Option<Ended> {
        *self.ended.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the end is known (the watch looks at /proc at least every
    /// [`LOOK_PERIOD_MS`], so this returns once the process is gone).
    pub fn wait_ended(&self) -> Ended {
        let (lock, cond) = &*self.ended;
        let mut ended = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(e) = *ended {
                return e;
            }
            // A timeout too, should the watch thread have died without saying.
            ended = cond
                .wait_timeout(ended, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Closes the control socket: a process waiting in its exit path goes on ending.
    /// Call once the recording is complete on disk.
    pub fn release(mut self) {
        if let Some(t) = self.thread.take() {
            if self.ended().is_some() {
                drop(t.join());
            }
            // Otherwise the thread still waits; the socket closes when this process exits.
        }
    }
}

/// Waits for the report, the socket's end or the process's; see the module doc.
fn watch(
    ctrl: &OwnedFd,
    mut stat: File,
    pidfd: Option<OwnedFd>,
    execs: &Mutex<Vec<(u64, String)>>,
) -> Ended {
    let mut ctrl_open = true;
    let ended = |ending, aborted| Ended { at_ns: monotonic_ns(), ending, aborted };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: if ctrl_open { ctrl.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_ref().map_or(-1, |p| p.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: polling two pollfds on the stack (negative fds are ignored).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, LOOK_PERIOD_MS) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return ended(status_from_stat(&mut stat).unwrap_or(Ending::Unknown), false);
        }
        if n == 0 {
            // A process killed from outside has its status in /proc from the start of its
            // exit, before its memory is freed (which takes a while for a big one, such as
            // the OOM killer's victim) and its files closed.
            if let Some(ending) = status_from_stat(&mut stat) {
                return ended(ending, false);
            }
            if pidfd.is_none() && stat_gone(&mut stat) {
                return ended(Ending::Unknown, false);
            }
            continue;
        }
        if ctrl_open && fds[0].revents != 0 {
            let mut buf = [0u8; EXEC_REPORT_MAX];
            // SAFETY: receiving into a stack buffer from our socket.
            let got = unsafe {
                libc::recv(ctrl.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
            };
            let execs = || execs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(command) = usize::try_from(got).ok().and_then(|n| decode_exec(&buf[..n])) {
                execs().push((monotonic_ns(), command));
            } else if got == END_REPORT_LEN as isize {
                match EndReport::decode(&buf[..END_REPORT_LEN]) {
                    Some(EndReport::Exited(c)) => return ended(Ending::Exited(c), false),
                    Some(EndReport::Signaled(s)) => return ended(Ending::Signaled(s), false),
                    Some(EndReport::Aborted) => return ended(Ending::Unknown, true),
                    Some(EndReport::ExecFailed) => {
                        execs().pop();
                    }
                    None => {}
                }
            } else if got <= 0 && !(got < 0 && would_block()) {
                // Closed: the process is exiting (read its status right away, before it
                // can be reaped), or it closed the socket and goes on.
                ctrl_open = false;
                if let Some(ending) = status_from_stat(&mut stat) {
                    return ended(ending, false);
                }
            }
        }
        if pidfd.is_some() && fds[1].revents != 0 {
            return ended(status_from_stat(&mut stat).unwrap_or(Ending::Unknown), false);
        }
    }
}

fn would_block() -> bool {
    std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

/// True once the process was reaped (its /proc entry no longer reads).
fn stat_gone(stat: &mut File) -> bool {
    let mut b = [0u8; 1];
    stat.seek(SeekFrom::Start(0)).is_err() || stat.read(&mut b).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A child of this test: its status is readable while it is a zombie.
    #[test]
    fn reads_a_zombies_status_from_proc() {
        for (script, want) in
            [("exit 3", Ending::Exited(3)), ("kill -TERM $$", Ending::Signaled(15))]
        {
            let mut child = Command::new("sh").args(["-c", script]).spawn().unwrap();
            let mut stat = File::open(format!("/proc/{}/stat", child.id())).unwrap();
            // Not reaped yet: wait until it is a zombie.
            let mut found = None;
            for _ in 0..500 {
                found = status_from_stat(&mut stat);
                if found.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            assert_eq!(found, Some(want), "{script}");
            child.wait().unwrap();
            assert!(stat_gone(&mut stat));
        }
    }

    #[test]
    fn a_live_process_has_no_status() {
        let mut stat = File::open("/proc/self/stat").unwrap();
        assert_eq!(status_from_stat(&mut stat), None);
    }
}
