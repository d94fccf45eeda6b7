//! A process of a traced program's descendants tree (`memlens run` follows every
//! descendant) that the `memlens` package will not trace: a program that is not Python, or a
//! Python run with `-E`, `-I` or `-S` (which skip the `sitecustomize` on PYTHONPATH that starts
//! tracing, see collector/python/memlens/_follow.py). The preloaded tracer connects it to the
//! recorder's sockets from its constructor and says what it is, so the recorder samples its
//! memory (RSS) as a process of the recording and says why it is not traced. The sockets stay
//! open until the process exits or execs (close-on-exec): their closing tells the recorder,
//! which reads how it ended from /proc (or hears it, from a program an exec ran in a traced
//! process, which reports on this connection too: see crate::process_end).
//!
//! Layer: beside the layers, called only from the library's constructor (lib.rs);
//! imports nothing of the tracer but the foundations' [`crate::fds::HIGH_FD`].

use std::ffi::CStr;

use libc::c_int;
use memlens_wire::handshake::{
    write_command_word, write_decimal, CHILD_LINE_MAX, CHILD_NOT_PYTHON, CHILD_PYTHON_WITHOUT_SITE,
    CHILD_UNTRACED, MAX_COMMAND_LINE,
};

use crate::fds::HIGH_FD;

/// Connects this process to the recorder whose directory `MEMLENS_FOLLOW` names, if it is
/// set, as a program that is not Python; returns its control connection. Any failure leaves
/// the process as it was.
///
/// # Safety
/// Called from the library's constructor, before `main`, on one thread.
pub unsafe fn announce_native_child() -> Option<c_int> {
    // SAFETY: per the function contract.
    if unsafe { libc::getenv(c"MEMLENS_FOLLOW".as_ptr()) }.is_null() {
        return None;
    }
    let mut buf = [0; MAX_COMMAND_LINE];
    // SAFETY: per the function contract.
    unsafe { announce(CHILD_NOT_PYTHON, own_command_line(&mut buf)) }
}

/// As [`announce_native_child`], for a Python whose command line makes it skip `site` (and
/// so memlens's start-up); returns whether it did (and its control connection, if it could
/// connect). Any other Python is left alone.
///
/// # Safety
/// As [`announce_native_child`].
pub unsafe fn announce_python_without_site() -> Option<Option<c_int>> {
    // SAFETY: per the function contract.
    if unsafe { libc::getenv(c"MEMLENS_FOLLOW".as_ptr()) }.is_null() {
        return None;
    }
    let mut buf = [0; MAX_COMMAND_LINE];
    let command = own_command_line(&mut buf);
    if !skips_site(command) {
        return None;
    }
    // SAFETY: per the function contract.
    Some(unsafe { announce(CHILD_PYTHON_WITHOUT_SITE, command) })
}

/// Sends the child line `child - IMPLEMENTATION PPID COMMAND` ([`CHILD_UNTRACED`]), `command`
/// being this process's command line ([`own_command_line`]); returns the control connection
/// (close-on-exec, as the other, which stays open unnamed).
///
/// # Safety
/// As [`announce_native_child`].
unsafe fn announce(implementation: &str, command: &[u8]) -> Option<c_int> {
    // SAFETY: per the function contract, nothing changes the environment meanwhile.
    let dir = unsafe { libc::getenv(c"MEMLENS_FOLLOW".as_ptr()) };
    if dir.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    let dir = unsafe { CStr::from_ptr(dir) }.to_bytes();
    let ctrl = connect(dir, b"ctrl", libc::SOCK_SEQPACKET)?;
    let Some(records) = connect(dir, b"records", libc::SOCK_STREAM) else {
        // SAFETY: closing the descriptor we opened.
        unsafe { libc::close(ctrl) };
        return None;
    };
    // (No formatting machinery: this runs in a library constructor, before `main`.)
    let mut line = [0u8; CHILD_LINE_MAX];
    let mut len = 0;
    for word in [b"child ", CHILD_UNTRACED.as_bytes(), b" ", implementation.as_bytes(), b" "] {
        line[len..len + word.len()].copy_from_slice(word);
        len += word.len();
    }
    // SAFETY: getppid has no preconditions.
    len += write_decimal(unsafe { libc::getppid() } as u32, &mut line[len..]);
    if !command.is_empty() {
        line[len] = b' ';
        len += 1 + write_command_word(command, &mut line[len + 1..]);
    }
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
        return None;
    }
    Some(ctrl)
}

/// In a Python of a followed tree that runs `site`: puts the `memlens` package back in front
/// of `PYTHONPATH` ([`ENV_PACKAGE`]) if it is not there, so that the package's
/// `sitecustomize` traces this Python as any other child. A program may have dropped or
/// replaced `PYTHONPATH` for its children (venv runs `ensurepip` so, pip its build
/// backends), which would leave them out of the recording. A `PYTHONPATH` longer than 16 KiB
/// is left as it is.
///
/// # Safety
/// As [`announce_native_child`] (it changes the environment).
pub unsafe fn keep_package_on_path() {
    // SAFETY: per the function contract, nothing changes the environment meanwhile.
    let (following, package, path) = unsafe {
        (
            !libc::getenv(c"MEMLENS_FOLLOW".as_ptr()).is_null(),
            libc::getenv(c"MEMLENS_PACKAGE".as_ptr()),
            libc::getenv(c"PYTHONPATH".as_ptr()),
        )
    };
    if !following || package.is_null() {
        return;
    }
    // SAFETY: getenv returned NUL-terminated strings (or null).
    let (package, path) = unsafe {
        let path = if path.is_null() { &b""[..] } else { CStr::from_ptr(path).to_bytes() };
        (CStr::from_ptr(package).to_bytes(), path)
    };
    if package.is_empty() || path.split(|&b| b == b':').any(|entry| entry == package) {
        return;
    }
    // (No allocation machinery: this runs in a library constructor, before `main`.)
    let mut value = [0u8; 16 << 10];
    let len = package.len() + usize::from(!path.is_empty()) + path.len();
    if len >= value.len() {
        return;
    }
    value[..package.len()].copy_from_slice(package);
    if !path.is_empty() {
        value[package.len()] = b':';
        value[package.len() + 1..len].copy_from_slice(path);
    }
    // SAFETY: NUL-terminated name and value (the buffer is zeroed past `len`).
    unsafe { libc::setenv(c"PYTHONPATH".as_ptr(), value.as_ptr().cast(), 1) };
}

/// This process's command line as /proc gives it (arguments ended by NULs), in `buf`;
/// empty if it cannot be read. Read with plain system calls: no allocation before `main`.
fn own_command_line(buf: &mut [u8]) -> &[u8] {
    // SAFETY: open/read/close on a descriptor we own, into a buffer we own.
    let len = unsafe {
        let fd = libc::open(c"/proc/self/cmdline".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return &[];
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    &buf[..usize::try_from(len).unwrap_or(0)]
}

/// Whether a Python command line (`python [options] ...`, arguments ended by NULs) has `-E`,
/// `-I` or `-S` among the interpreter's options, before the script, `-c` or `-m`.
fn skips_site(command_line: &[u8]) -> bool {
    let mut args = command_line.split(|&b| b == 0).skip(1);
    while let Some(arg) = args.next() {
        let Some(flags) = arg.strip_prefix(b"-").filter(|f| !f.is_empty()) else {
            return false; // the script, or `-` (standard input)
        };
        if flags.starts_with(b"-") {
            // `--`, or a long option; the one that takes a value has it next.
            if flags == b"-" {
                return false;
            }
            if flags == b"-check-hash-based-pycs" {
                args.next();
            }
            continue;
        }
        for (i, f) in flags.iter().enumerate() {
            match f {
                b'E' | b'I' | b'S' => return true,
                b'c' | b'm' => return false,
                // An option with a value: the rest of the word, or the next argument.
                b'W' | b'X' => {
                    if i + 1 == flags.len() {
                        args.next();
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    false
}

/// A close-on-exec socket of `kind` connected to `dir/name`, moved to [`crate::fds::HIGH_FD`] or above.
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

#[cfg(test)]
mod tests {
    use super::skips_site;

    #[test]
    fn options_that_skip_site_are_found_before_the_program_only() {
        let line = |args: &[&str]| {
            let mut b = Vec::new();
            for a in std::iter::once("python3").chain(args.iter().copied()) {
                b.extend_from_slice(a.as_bytes());
                b.push(0);
            }
            b
        };
        for yes in
            [&["-I", "-c", "x"][..], &["-E", "s.py"], &["-S"], &["-uIc", "x"], &["-bS", "s.py"]]
        {
            assert!(skips_site(&line(yes)), "{yes:?}");
        }
        for no in [
            &["s.py", "-I"][..],
            &["-c", "-I"],
            &["-cI"],
            &["-m", "x", "-E"],
            &["-", "-S"],
            &["--", "-S"],
            &["-WE"],
            &["-W", "-E", "s.py"],
            &["-X", "-I"],
            &["--check-hash-based-pycs", "-I"],
            &["-u", "-s", "s.py"],
            &[],
        ] {
            assert!(!skips_site(&line(no)), "{no:?}");
        }
    }
}
