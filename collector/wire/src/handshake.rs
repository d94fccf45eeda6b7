//! What the `memlens` command and the `memlens` Python package say to each other outside the
//! record stream: the environment `memlens run` gives the program it runs (read by
//! `memlens/_bootstrap.py`), and the lines `memlens sink` prints for `memlens.record()`
//! (read by `memlens/__init__.py` through `memlens/_protocol.py`, which mirrors this module;
//! `collector/tests/contracts.rs` checks that both sides agree).

/// How the program is given: `script`, `module` or `code`.
pub const ENV_MODE: &str = "MEMLENS_MODE";
/// The write end of the pipe to the recorder, for a traced Python program.
pub const ENV_FD: &str = "MEMLENS_FD";
/// The same for a program traced without the bootstrap (native allocations only).
pub const ENV_NATIVE_FD: &str = "MEMLENS_NATIVE_FD";
/// The socket on which the tracer tells the recorder how the process ends.
pub const ENV_CTRL_FD: &str = "MEMLENS_CTRL_FD";
/// The path of the tracer library (`libmemlens_tracer.so`).
pub const ENV_TRACER: &str = "MEMLENS_TRACER";
/// `1` when native allocations are traced, `0` when not.
pub const ENV_NATIVE: &str = "MEMLENS_NATIVE";
/// `1` when object censuses are taken, `0` when not.
pub const ENV_CENSUS: &str = "MEMLENS_CENSUS";
/// Seconds between interval censuses (`0`: none).
pub const ENV_CENSUS_INTERVAL: &str = "MEMLENS_CENSUS_INTERVAL";
/// At most this many objects a census looks at (`0`: the default).
pub const ENV_CENSUS_MAX_OBJECTS: &str = "MEMLENS_CENSUS_MAX_OBJECTS";
/// How many live objects a census looks at, at most, by default (`--census-max-objects`):
/// in an exact recording, and in a sampled one (whose figures are estimates anyway, and
/// whose censuses should hold a service no more than its sampling does: about 10 ms).
/// `_census.MAX_OBJECTS` and `_census.SAMPLED_MAX_OBJECTS` on the Python side, which
/// `memlens.record()` uses (collector/tests/contracts.rs checks that they agree).
pub const CENSUS_MAX_OBJECTS: u64 = 1_000_000;
pub const SAMPLED_CENSUS_MAX_OBJECTS: u64 = 10_000;
/// Sample allocations, one every this many bytes on average (`0`: record every one).
pub const ENV_SAMPLE_BYTES: &str = "MEMLENS_SAMPLE_BYTES";
/// `1` when each allocation's native stack is recorded (`memlens run --native-stacks`).
pub const ENV_NATIVE_STACKS: &str = "MEMLENS_NATIVE_STACKS";
/// `memlens run`, following the program's descendants: the directory of the recorder's
/// `ctrl` and `records` sockets. Unlike the others, left in the environment for children.
pub const ENV_FOLLOW: &str = "MEMLENS_FOLLOW";
/// `memlens run`: [`ENV_FOLLOW`] as the bootstrap is to set it once the program is Python,
/// so that what runs before (a wrapper such as pyenv's shim, and what it runs) is not
/// followed. Removed by the bootstrap.
pub const ENV_FOLLOW_PENDING: &str = "MEMLENS_FOLLOW_PENDING";
/// What a followed descendant traces: `native=1;census=1;census_interval=S;
/// census_max_objects=N;sample_bytes=N;native_stacks=1` (absent keys: the defaults).
pub const ENV_FOLLOW_OPTIONS: &str = "MEMLENS_FOLLOW_OPTIONS";
/// Following: the directory of the `memlens` package, which a followed Python needs on
/// `PYTHONPATH` to be traced. The preloaded tracer puts it back there in a Python whose
/// `PYTHONPATH` lost it (collector/tracer/src/follow.rs).
pub const ENV_PACKAGE: &str = "MEMLENS_PACKAGE";
/// Set by the tracer in the environment of a program a traced process execs in its place:
/// `FD:PID`, the control socket it leaves open across the exec and the process's pid (the
/// program's own, which its children do not have). The new program's tracer reports the
/// process's end on it (collector/tracer/src/process_end.rs).
pub const ENV_EXEC_CTRL: &str = "MEMLENS_EXEC_CTRL";

/// Every variable of the environment handshake.
pub const ENV: [&str; 16] = [
    ENV_MODE,
    ENV_FD,
    ENV_NATIVE_FD,
    ENV_CTRL_FD,
    ENV_TRACER,
    ENV_NATIVE,
    ENV_CENSUS,
    ENV_CENSUS_INTERVAL,
    ENV_CENSUS_MAX_OBJECTS,
    ENV_SAMPLE_BYTES,
    ENV_NATIVE_STACKS,
    ENV_FOLLOW,
    ENV_FOLLOW_PENDING,
    ENV_FOLLOW_OPTIONS,
    ENV_PACKAGE,
    ENV_EXEC_CTRL,
];

/// `memlens sink`'s first line: the recording exists, and the tracer library to load is at
/// `tracer`.
pub fn ready_line(tracer: &str) -> String {
    format!("ready {tracer}")
}

/// `memlens sink`'s line before `ready` when it samples: the rate, for the tracer, which
/// Python starts next.
pub fn sample_line(bytes: u64) -> String {
    format!("sample {bytes}")
}

/// `memlens sink --follow`'s line before `ready`: the directory of the sockets the Pythons
/// the block starts connect to (`ENV_FOLLOW`); its parent holds the `sitecustomize` that
/// starts them (for PYTHONPATH).
pub fn follow_line(dir: &str) -> String {
    format!("follow {dir}")
}

/// `memlens sink`'s last line: the block's peak heap and what it left allocated, in bytes
/// (estimates when `sampled` gives the rate), and with `total` the peak of the heap of the
/// block's process and the processes it started together, when it started any.
pub fn done_line(peak: u64, left: u64, sampled: Option<u64>, total: Option<u64>) -> String {
    let mut line = format!("done peak={peak} left={left}");
    if let Some(b) = sampled {
        line += &format!(" sampled={b}");
    }
    if let Some(t) = total {
        line += &format!(" total={t}");
    }
    line
}

/// `memlens sink`'s line before it fails: the OS error number, for Python's `OSError`.
pub fn error_line(errno: i32) -> String {
    format!("error errno={errno}")
}

/// The line a followed descendant writes on its `records` socket before the tracer's
/// records: its interpreter (`platform.python_version()`, `platform.python_implementation()`),
/// which may not be the program's (`subprocess.run(["python3.12", ...])`; `-` for both in a
/// program that is not Python), its parent's pid (which /proc may no longer tell by the
/// time the recorder looks: a parent that exited), and its command line as
/// `/proc/self/cmdline` gives it (arguments ended by NULs; [`write_command_word`]), which
/// /proc may no longer tell either: a forked child that execs another program before the
/// recorder looks.
pub fn child_line(version: &str, implementation: &str, ppid: u32, command: &[u8]) -> String {
    let mut line = format!("child {version} {implementation} {ppid}");
    if !command.is_empty() {
        let mut word = vec![0; 1 + 3 * command.len().min(MAX_COMMAND_LINE)];
        word[0] = b' ';
        let len = write_command_word(command, &mut word[1..]);
        line += std::str::from_utf8(&word[..1 + len]).expect("ASCII");
    }
    line
}

/// The longest command line a [`child_line`] carries (longer ones are cut).
pub const MAX_COMMAND_LINE: usize = 4096;

/// Writes `command` (its first [`MAX_COMMAND_LINE`] bytes) as one word of printable ASCII at
/// the start of `out` (`3 * command.len()` bytes at most): a byte that is not printable
/// ASCII, a space or `%` as `%` and two hex digits. Returns its length. No allocation: the
/// preloaded tracer writes it before `main`.
pub fn write_command_word(command: &[u8], out: &mut [u8]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut len = 0;
    for &b in &command[..command.len().min(MAX_COMMAND_LINE)] {
        if b.is_ascii_graphic() && b != b'%' {
            out[len] = b;
            len += 1;
        } else {
            out[len..len + 3].copy_from_slice(&[
                b'%',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
            len += 3;
        }
    }
    len
}

/// The command line a [`write_command_word`] word stands for; `None` if it is not one.
fn read_command_word(word: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(word.len());
    let mut bytes = word.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            _ if b.is_ascii_graphic() => b,
            _ => return None,
        });
    }
    Some(out)
}

/// Writes `n` in decimal at the start of `out` (at least 10 bytes); returns its length. No
/// allocation: the preloaded tracer writes [`child_line`] and [`ENV_EXEC_CTRL`] values with
/// it before `main` and before an exec.
pub fn write_decimal(mut n: u32, out: &mut [u8]) -> usize {
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

/// The version word of a [`child_line`] from a process the tracer's constructor announces,
/// which is not traced: its memory is sampled.
pub const CHILD_UNTRACED: &str = "-";

/// The implementation word after [`CHILD_UNTRACED`] for a program that is not Python.
pub const CHILD_NOT_PYTHON: &str = "-";

/// The implementation word after [`CHILD_UNTRACED`] for a Python run with `-E`, `-I` or `-S`,
/// which skips the start-up (`sitecustomize` on PYTHONPATH) that would trace it.
pub const CHILD_PYTHON_WITHOUT_SITE: &str = "python-without-site";

/// The implementation word after [`CHILD_UNTRACED`] for a process started without memlens's
/// environment, which the recorder found itself (it never connects).
pub const CHILD_NOT_FOLLOWED: &str = "not-followed";

/// What a [`child_line`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildLine {
    pub version: String,
    pub implementation: String,
    pub ppid: u32,
    /// Its command line (arguments ended by NULs), if the line has it.
    pub command: Option<Vec<u8>>,
}

/// What a [`child_line`] (without its newline) says; `None` if it is not one.
pub fn parse_child_line(line: &str) -> Option<ChildLine> {
    let mut words = line.strip_prefix("child ")?.split(' ');
    let version = words.next().filter(|v| !v.is_empty())?.to_owned();
    let implementation = words.next().filter(|i| !i.is_empty())?.to_owned();
    let ppid = words.next()?.parse().ok()?;
    let command = match words.next() {
        Some(word) => Some(read_command_word(word).filter(|c| !c.is_empty())?),
        None => None,
    };
    words.next().is_none().then_some(ChildLine { version, implementation, ppid, command })
}

/// The longest [`child_line`] a reader accepts, newline included.
pub const CHILD_LINE_MAX: usize = 128 + 3 * MAX_COMMAND_LINE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_words_python_splits() {
        assert_eq!(ready_line("/x/libmemlens_tracer.so"), "ready /x/libmemlens_tracer.so");
        assert_eq!(done_line(10, 2, None, None), "done peak=10 left=2");
        assert_eq!(done_line(10, 2, Some(512), None), "done peak=10 left=2 sampled=512");
        assert_eq!(done_line(10, 2, None, Some(30)), "done peak=10 left=2 total=30");
        let line = |command: Option<&[u8]>| ChildLine {
            version: "3.12.1".into(),
            implementation: "CPython".into(),
            ppid: 42,
            command: command.map(<[u8]>::to_vec),
        };
        assert_eq!(parse_child_line(&child_line("3.12.1", "CPython", 42, b"")), Some(line(None)));
        let command = b"python3\0-c\0print('a b%c\xc3\xa9')\0";
        let said = child_line("3.12.1", "CPython", 42, command);
        assert_eq!(said, "child 3.12.1 CPython 42 python3%00-c%00print('a%20b%25c%c3%a9')%00");
        assert_eq!(parse_child_line(&said), Some(line(Some(command))));
        let long = child_line("3.12.1", "CPython", 42, &[b'x'; 2 * MAX_COMMAND_LINE]);
        assert_eq!(parse_child_line(&long), Some(line(Some(&[b'x'; MAX_COMMAND_LINE]))));
        let most = child_line("3.12.1", "CPython", 42, &[b' '; 2 * MAX_COMMAND_LINE]);
        assert!(most.len() < CHILD_LINE_MAX);
        for bad in [
            "child",
            "child 3.12 C",
            "child  CPython 1",
            "child 3 C x",
            "child 3 C 1 a b",
            "child 3 C 1 a%2",
            "child 3 C 1 a%zz",
            "child 3 C 1 ",
        ] {
            assert_eq!(parse_child_line(bad), None, "{bad}");
        }
        assert_eq!(sample_line(512), "sample 512");
        assert_eq!(error_line(28), "error errno=28");
        assert!(ENV.iter().all(|v| v.starts_with("MEMLENS_")));
    }

    #[test]
    fn decimals_are_written_as_format_writes_them() {
        for n in [0, 7, 10, 4_194_304, u32::MAX] {
            let mut out = [0u8; 12];
            let len = write_decimal(n, &mut out);
            assert_eq!(&out[..len], n.to_string().as_bytes());
        }
    }
}
