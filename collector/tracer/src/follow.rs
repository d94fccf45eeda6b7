//! A program that is not Python, started by a traced program's descendants tree
//! (`memlens run` follows every descendant): the preloaded tracer connects it to the
//! recorder's sockets from its constructor and says it runs no Python, so the recorder
//! samples its memory (RSS) as a process of the recording; nothing in it is traced. The
//! sockets stay open until the process exits or execs (close-on-exec): their closing tells
//! the recorder, which reads how it ended from /proc. Pythons are followed by the `memlens`
//! package instead (see collector/python/memlens/_follow.py).

use std::ffi::CStr;

use libc::c_int;

/// The descriptors are moved at least this high, out of the way of programs that expect
/// the lowest free numbers to be theirs.
const HIGH_FD: c_int = 900;

/// The start of the line that tells the recorder this process runs no Python
/// (`memlens_wire`'s `child_line` with `-` for the version and implementation), before the
/// parent's pid.
const NO_PYTHON: &[u8] = b"child - - ";

/// Connects this (non-Python) process to the recorder whose directory `MEMLENS_FOLLOW`
/// names, if it is set. Any failure leaves the process as it was.
///
/// # Safety
/// Called from the library's constructor, before `main`, on one thread.
pub unsafe fn announce_native_child() {
    // SAFETY: per the function contract, nothing changes the environment meanwhile.
    let dir = unsafe { libc::getenv(c"MEMLENS_FOLLOW".as_ptr()) };
    if dir.is_null() {
        return;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    let dir = unsafe { CStr::from_ptr(dir) }.to_bytes();
    let Some(ctrl) = connect(dir, b"ctrl", libc::SOCK_SEQPACKET) else { return };
    let Some(records) = connect(dir, b"records", libc::SOCK_STREAM) else {
        // SAFETY: closing the descriptor we opened.
        unsafe { libc::close(ctrl) };
        return;
    };
    let mut line = [0u8; 32];
    line[..NO_PYTHON.len()].copy_from_slice(NO_PYTHON);
    // SAFETY: getppid has no preconditions.
    let len =
        NO_PYTHON.len() + decimal(unsafe { libc::getppid() } as u32, &mut line[NO_PYTHON.len()..]);
    line[len] = b'\n';
    // SAFETY: writing a stack buffer to our socket; MSG_NOSIGNAL: a recorder that is gone
    // gives EPIPE, never SIGPIPE.
    let sent = unsafe { libc::send(records, line.as_ptr().cast(), len + 1, libc::MSG_NOSIGNAL) };
    if sent != (len + 1) as isize {
        // SAFETY: closing the descriptors we opened.
        unsafe {
            libc::close(ctrl);
            libc::close(records);
        }
    }
}

/// Writes `n` in decimal at the start of `out` (at least 10 bytes); returns its length.
/// (No formatting machinery: this runs in a library constructor, before `main`.)
fn decimal(mut n: u32, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        out[i] = *d;
    }
    len
}

/// A close-on-exec socket of `kind` connected to `dir/name`, moved to [`HIGH_FD`] or above.
fn connect(dir: &[u8], name: &[u8], kind: c_int) -> Option<c_int> {
    // SAFETY: sockaddr_un is plain data; zeroed is its empty value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path_len = dir.len() + 1 + name.len();
    if path_len >= addr.sun_path.len() {
        return None;
    }
    let path = dir.iter().chain(b"/").chain(name);
    for (slot, &b) in addr.sun_path.iter_mut().zip(path) {
        *slot = b as libc::c_char;
    }
    // SAFETY: plain socket calls on a descriptor we own; the address is initialized above.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        if libc::connect(fd, (&raw const addr).cast(), len) != 0 {
            libc::close(fd);
            return None;
        }
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD);
        libc::close(fd);
        (high >= 0).then_some(high)
    }
}
