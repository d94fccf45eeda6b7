//! The tracer's own file descriptors: the pipe (or socket) its records go to, and the
//! control socket on which the process's end is told.
//!
//! Layer: foundations; imports nothing of the tracer.
//!
//! A program may close descriptors it did not open (`os.closerange(3, 4096)` before
//! daemonizing, as python-daemon and service shims do). Closed, these numbers would go to
//! the program's next files, and the drain would write its records into them. So the
//! hooks of `close`, `close_range`, `closefrom`, `dup2` and `dup3`
//! ([`crate::native_hooks`]) ask here: a close of one of ours is answered as done and not
//! done, a range is closed around ours, and a `dup2` onto one of ours first moves ours to
//! another number. Writers hold [`Writing`] while they use a number, so a move cannot
//! happen between reading it and writing to it. The tracer closes its own with
//! [`close_own`], which goes past the hooks. As a last guard, the drain checks before
//! each batch that its number still names the file it was given ([`Writing::still_ours`]):
//! a raw `close_range` system call, which no hook sees, then ends tracing instead of
//! writing into the program's file.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// The drain's pipe (or a followed child's socket); -1: none.
pub static PIPE: AtomicI32 = AtomicI32::new(-1);
/// The control socket (`memlens run`'s end watch); -1: none.
pub static CTRL: AtomicI32 = AtomicI32::new(-1);

/// The file behind [`PIPE`] when it was adopted (device, inode).
static PIPE_ID: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Held by whoever uses or moves one of the numbers.
static LOCK: AtomicBool = AtomicBool::new(false);

/// The tracer's descriptors are moved at least this high (a followed child's sockets at
/// once, ours when a program `dup2`s onto them), out of the way of programs that expect the
/// lowest free numbers to be theirs.
pub const HIGH_FD: i32 = 900;

fn slots() -> [&'static AtomicI32; 2] {
    [&PIPE, &CTRL]
}

/// Whether `fd` is one of the tracer's.
#[inline]
pub fn is_own(fd: i32) -> bool {
    fd >= 0 && slots().iter().any(|s| s.load(Ordering::Acquire) == fd)
}

/// The tracer's numbers, ascending (at most two).
pub fn own_sorted() -> ([i32; 2], usize) {
    let mut own = [PIPE.load(Ordering::Acquire), CTRL.load(Ordering::Acquire)];
    own.sort_unstable();
    let n = own.iter().filter(|&&fd| fd >= 0).count();
    own.rotate_left(2 - n);
    (own, n)
}

/// `fd`'s (device, inode), or None when it is not open.
fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: fstat fills the zeroed struct or fails.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// Makes `fd` the pipe; returns the number it replaces (-1 if none), for the caller to close.
pub fn adopt_pipe(fd: i32) -> i32 {
    let _w = Writing::lock();
    let (dev, ino) = identity(fd).unwrap_or((0, 0));
    PIPE_ID[0].store(dev, Ordering::Relaxed);
    PIPE_ID[1].store(ino, Ordering::Relaxed);
    PIPE.swap(fd, Ordering::AcqRel)
}

/// The close system call, past the hooks (`close_hook` is one of them).
pub fn sys_close(fd: i32) -> i32 {
    // SAFETY: the close system call with a plain integer argument.
    unsafe { libc::syscall(libc::SYS_close, fd as libc::c_long) as i32 }
}

/// Closes one of the tracer's numbers (or any the tracer opened itself), past the hooks.
pub fn close_own(fd: i32) {
    if fd >= 0 {
        sys_close(fd);
    }
}

/// Called by the `dup2`/`dup3` hooks before `newfd` is replaced: if it is one of ours, ours
/// moves to another number (the same open file), and `newfd` is closed for the call.
pub fn make_room(newfd: i32) {
    if !is_own(newfd) {
        return;
    }
    let _w = Writing::lock();
    for slot in slots() {
        if slot.load(Ordering::Acquire) != newfd {
            continue;
        }
        // SAFETY: duplicating a number we own, close-on-exec like the original.
        let moved = unsafe { libc::fcntl(newfd, libc::F_DUPFD_CLOEXEC, HIGH_FD) };
        if moved < 0 {
            return;
        }
        slot.store(moved, Ordering::Release);
        close_own(newfd);
    }
}

/// In a forked child: the fork may have come while another thread held [`Writing`], and
/// only the forking thread lives on.
pub fn after_fork_in_child() {
    LOCK.store(false, Ordering::Relaxed);
}

/// Use of the numbers: while held, none of them moves.
pub struct Writing;

impl Writing {
    pub fn lock() -> Writing {
        while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            std::hint::spin_loop();
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        Writing
    }

    /// Whether [`PIPE`] still names the file it was given (not a program's file that took
    /// its number after a close no hook saw).
    pub fn still_ours(&self, fd: i32) -> bool {
        let want = (PIPE_ID[0].load(Ordering::Relaxed), PIPE_ID[1].load(Ordering::Relaxed));
        want == (0, 0) || identity(fd) == Some(want)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_numbers_come_sorted_and_packed() {
        PIPE.store(12, Ordering::Release);
        CTRL.store(7, Ordering::Release);
        assert_eq!(own_sorted(), ([7, 12], 2));
        CTRL.store(-1, Ordering::Release);
        assert_eq!(own_sorted().1, 1);
        assert_eq!(own_sorted().0[0], 12);
        assert!(is_own(12) && !is_own(7) && !is_own(-1));
        PIPE.store(-1, Ordering::Release);
        assert_eq!(own_sorted().1, 0);
    }
}
