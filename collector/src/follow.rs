//! Following the traced program's descendants (`memlens run`, unless `--no-follow`).
//!
//! Every Python the program starts, by fork (multiprocessing's fork and forkserver start
//! methods, `os.fork`) or by exec (spawn, `subprocess.run([sys.executable, ...])`), finds
//! [`ENV_FOLLOW`] in its environment and the tracer preloaded: the `memlens` package starts
//! tracing it ([`FollowDir`]'s sockets: `records` for the tracer's stream, `ctrl` for how the
//! process ends, as for the program itself). The recorder accepts them here, records each
//! process with a [`Recorder`] of its own on a thread of its own, into a buffer, and the
//! recorder's main loop carries what the buffers hold into the file as the process's
//! stream ([`memlens_format::RecordingWriter::substream`], FORMAT.md "Processes") at each
//! flush. A child that ends, crashes or is killed ends only its own stream.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use memlens_analysis::{
    EXECED_MARKER, NOT_FOLLOWED_MARKER, PYTHON_WITHOUT_SITE_MARKER, STILL_RUNNING_MARKER,
    UNTRACED_MARKER,
};
use memlens_format::{CaptureOptions, Meta, RecordingWriter, ThreadId, WriterOptions};
use memlens_wire::handshake::{
    parse_child_line, CHILD_LINE_MAX, CHILD_NOT_FOLLOWED, CHILD_PYTHON_WITHOUT_SITE, CHILD_UNTRACED,
};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept, bind, getsockopt, listen, socket, sockopt::PeerCredentials, AddressFamily, Backlog,
    SockFlag, SockType, UnixAddr,
};
use rustc_hash::FxHashMap as HashMap;

use crate::child_memory::TreeMemory;
use crate::host::monotonic_ns;
use crate::process_watch::{EndWatch, Ending};
use crate::python_env::BOOTSTRAP;
use crate::record_loop::{record_loop, PipeReader};
use crate::recorder::Recorder;
use crate::strays::{self, Strays};

/// How often the program's descendants are looked through for processes started without
/// memlens's environment ([`crate::strays`]).
const STRAY_LOOK: Duration = Duration::from_millis(100);

/// How long one of a process's two connections waits for the other.
const PAIRING_WAIT: Duration = Duration::from_secs(5);

/// At most this many processes are followed (a fork bomb is not recorded past it); the
/// others run untraced.
const MAX_PROCESSES: usize = 4096;

/// How long descendants still running when the program has ended are waited for before
/// their streams are ended where they are. The program waits for its recording to be
/// complete before it exits, so this is a delay of its exit; and helpers that live as long
/// as the program (multiprocessing's resource tracker and forkserver) only end after it.
/// Enough for pool workers terminated at the program's exit to say how they ended.
const GRACE: Duration = Duration::from_millis(200);

/// The two sockets descendants connect to, in a directory of their own: `records`, a
/// stream socket for the tracer's records, and `ctrl`, a packet socket for how the process
/// ends (like the program's own pipe and control socket).
pub struct FollowDir {
    dir: PathBuf,
    records: OwnedFd,
    ctrl: OwnedFd,
}

impl FollowDir {
    /// Creates the directory `base/follow` and listens on its sockets (close-on-exec: the
    /// program must not hold them; non-blocking: they are polled).
    pub fn create(base: &Path) -> Result<FollowDir> {
        let dir = base.join("follow");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let listen = |name: &str, kind: SockType| {
            let path = dir.join(name);
            let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
            let fd = socket(AddressFamily::Unix, kind, flags, None)?;
            bind(fd.as_raw_fd(), &UnixAddr::new(&path)?)
                .and_then(|()| listen(&fd, Backlog::new(128)?))
                .with_context(|| format!("cannot listen on {}", path.display()))?;
            Ok::<_, anyhow::Error>(fd)
        };
        Ok(FollowDir {
            records: listen("records", SockType::Stream)?,
            ctrl: listen("ctrl", SockType::SeqPacket)?,
            dir,
        })
    }

    /// The directory, for [`ENV_FOLLOW`].
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// What every descendant's recording shares with the program's.
#[derive(Clone)]
pub struct ChildJob {
    /// The program's metadata: each child's copies it, with its own process's facts.
    pub meta: Meta,
    /// The program's start (CLOCK_MONOTONIC ns): every stream is on the program's clock.
    pub t0: u64,
    pub interval: Duration,
    pub options: WriterOptions,
}

/// A process being followed: its number, and the bytes of its recording not yet carried
/// into the file.
struct Stream {
    number: u32,
    pid: u32,
    pending: Arc<Mutex<Vec<u8>>>,
    /// Set once the process has a recording (a short program that is not Python has none).
    listed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The descendants followed so far, and the thread that accepts new ones.
pub struct Followers {
    streams: Arc<Mutex<Vec<Stream>>>,
    /// Set when the program has ended and the grace period is over: every child's
    /// recording ends where it is.
    cut: Arc<AtomicBool>,
    /// Set when the program has ended: no new descendants are accepted.
    closed: Arc<AtomicBool>,
    /// Written to once `closed` is set, so that the acceptor sees it at once instead of at
    /// its next look (up to 50 ms later, which the program's exit waited for).
    wake: OwnedFd,
    acceptor: Option<JoinHandle<()>>,
    dir: PathBuf,
}

/// A buffer a child's [`RecordingWriter`] writes to.
struct StreamBuf(Arc<Mutex<Vec<u8>>>);

impl Write for StreamBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("stream buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Followers {
    /// Starts accepting descendants on `dir`'s sockets.
    pub fn start(dir: FollowDir, job: ChildJob) -> Result<Followers> {
        let streams = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let path = dir.dir.clone();
        let (woken, wake) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .context("cannot start following the program's children")?;
        let acceptor = {
            let (streams, cut, closed) = (streams.clone(), cut.clone(), closed.clone());
            std::thread::Builder::new()
                .name("follow".into())
                .spawn(move || accept_loop(&dir, &job, &streams, &cut, &closed, &woken))
                .context("cannot start following the program's children")?
        };
        Ok(Followers { streams, cut, closed, wake, acceptor: Some(acceptor), dir: path })
    }

    /// Carries what the descendants' recordings wrote since the last call into the file.
    pub fn carry<W: Write>(&self, writer: &mut RecordingWriter<W>) -> Result<()> {
        let streams = self.streams.lock().expect("streams");
        for s in streams.iter() {
            let bytes = std::mem::take(&mut *s.pending.lock().expect("stream buffer"));
            if !bytes.is_empty() {
                writer.substream(s.number, &bytes)?;
            }
        }
        Ok(())
    }

    /// Once the program has ended: waits up to [`GRACE`] for the descendants still running,
    /// ends the recordings of those that are not done, carries everything into the file.
    /// Returns how many processes the recording lists besides the program.
    pub fn finish<W: Write>(mut self, writer: &mut RecordingWriter<W>) -> Result<usize> {
        self.closed.store(true, Ordering::Release);
        let _ = nix::unistd::write(&self.wake, &[1]);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let deadline = Instant::now() + GRACE;
        let threads: Vec<JoinHandle<()>> = {
            let mut streams = self.streams.lock().expect("streams");
            streams.iter_mut().filter_map(|s| s.thread.take()).collect()
        };
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            self.carry(writer)?;
            std::thread::sleep(Duration::from_millis(5));
        }
        self.cut.store(true, Ordering::Release);
        for t in threads {
            let _ = t.join();
        }
        self.carry(writer)?;
        let streams = self.streams.lock().expect("streams");
        Ok(streams.iter().filter(|s| s.listed.load(Ordering::Acquire)).count())
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.cut.store(true, Ordering::Release);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A connection waiting on `listener` (blocking, close-on-exec), if there is one.
fn accepted(listener: &OwnedFd) -> Option<OwnedFd> {
    let fd = accept(listener.as_raw_fd()).ok()?;
    // SAFETY: `accept` returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(fd)
}

/// The pid of the process at the other end of `fd`.
fn peer_pid(fd: &OwnedFd) -> Option<u32> {
    getsockopt(fd, PeerCredentials).ok().and_then(|c| u32::try_from(c.pid()).ok())
}

fn accept_loop(
    dir: &FollowDir,
    job: &ChildJob,
    streams: &Mutex<Vec<Stream>>,
    cut: &Arc<AtomicBool>,
    closed: &AtomicBool,
    woken: &OwnedFd,
) {
    // Each process's two connections, by pid, until both are there: a child connects its
    // control socket first, but both can arrive between the two accept loops below, and
    // then its record stream is accepted first.
    let mut ctrls: HashMap<u32, (OwnedFd, Instant)> = HashMap::default();
    let mut waiting: HashMap<u32, (OwnedFd, Instant)> = HashMap::default();
    let accept_ctrls = |ctrls: &mut HashMap<u32, (OwnedFd, Instant)>| {
        while let Some(fd) = accepted(&dir.ctrl) {
            if let Some(pid) = peer_pid(&fd) {
                ctrls.insert(pid, (fd, Instant::now()));
            }
        }
    };
    let mut strays = Strays::default();
    let mut next_look = Instant::now() + STRAY_LOOK;
    while !closed.load(Ordering::Acquire) {
        let mut fds = [
            PollFd::new(dir.ctrl.as_fd(), PollFlags::POLLIN),
            PollFd::new(dir.records.as_fd(), PollFlags::POLLIN),
            PollFd::new(woken.as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) > 0 {
            accept_ctrls(&mut ctrls);
            while let Some(records) = accepted(&dir.records) {
                if let Some(pid) = peer_pid(&records) {
                    waiting.insert(pid, (records, Instant::now()));
                }
            }
            accept_ctrls(&mut ctrls);
        }
        // A half that found no other within this long belongs to a process that died
        // between its two connections (and its pid may come again).
        ctrls.retain(|_, (_, at)| at.elapsed() < PAIRING_WAIT);
        waiting.retain(|_, (_, at)| at.elapsed() < PAIRING_WAIT);
        let paired: Vec<u32> =
            waiting.keys().filter(|pid| ctrls.contains_key(pid)).copied().collect();
        for pid in paired {
            let (Some((records, _)), Some((ctrl, _))) = (waiting.remove(&pid), ctrls.remove(&pid))
            else {
                continue;
            };
            // (The program's own pid too: a program the program exec'd in its place, which
            // reports the end on the program's control socket and has a stream of its own.)
            follow(pid, records, ctrl, Vec::new(), job, streams, cut);
        }
        if Instant::now() >= next_look {
            next_look = Instant::now() + STRAY_LOOK;
            // The processes being followed: one whose recording is over has no children to
            // look for (a long run's ended workers would otherwise be looked at every time).
            let live = |s: &&Stream| s.thread.as_ref().is_some_and(|t| !t.is_finished());
            let roots: Vec<u32> = std::iter::once(job.meta.pid)
                .chain(streams.lock().expect("streams").iter().filter(live).map(|s| s.pid))
                .collect();
            let connecting = |pid| ctrls.contains_key(&pid) || waiting.contains_key(&pid);
            for (pid, ppid) in strays.look(&roots, |pid| roots.contains(&pid) || connecting(pid)) {
                if let Ok((records, ctrl, peers)) = strays::connection(ppid) {
                    follow(pid, records, ctrl, peers.into(), job, streams, cut);
                }
            }
        }
    }
}

/// Records process `pid` from its two connections on a thread of its own, as the next
/// stream of the file; `keep` is held open as long (see [`strays::connection`]).
fn follow(
    pid: u32,
    records: OwnedFd,
    ctrl: OwnedFd,
    keep: Vec<OwnedFd>,
    job: &ChildJob,
    streams: &Mutex<Vec<Stream>>,
    cut: &Arc<AtomicBool>,
) {
    let mut streams = streams.lock().expect("streams");
    if streams.len() >= MAX_PROCESSES {
        return;
    }
    let number = streams.len() as u32 + 1;
    let pending = Arc::new(Mutex::new(Vec::new()));
    let listed = Arc::new(AtomicBool::new(false));
    let meta = child_meta(pid, number, &job.meta);
    let child =
        Child { pid, job: job.clone(), meta, pending: pending.clone(), listed: listed.clone() };
    let cut = cut.clone();
    let thread = std::thread::Builder::new()
        .name(format!("follow-{pid}"))
        .spawn(move || {
            child.record(records, ctrl, &cut);
            drop(keep);
        })
        .ok();
    streams.push(Stream { number, pid, pending, listed, thread });
}

/// The interpreter a descendant says it runs and its parent, from its first line on
/// `records` (read a byte at a time: what follows is the tracer's, for the recorder). Waits
/// at most a second.
fn read_child_line(records: &OwnedFd) -> Result<(String, String, u32)> {
    let mut line = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while line.len() < CHILD_LINE_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(records.as_fd(), PollFlags::POLLIN)];
        if ms == 0 || poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) == 0 {
            break;
        }
        let mut b = [0u8; 1];
        match nix::unistd::read(records.as_raw_fd(), &mut b) {
            Ok(1) if b[0] == b'\n' => {
                let text = String::from_utf8_lossy(&line);
                let (v, i, ppid) = parse_child_line(&text).context("not a memlens child's line")?;
                return Ok((v.to_owned(), i.to_owned(), ppid));
            }
            Ok(1) => line.push(b[0]),
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    anyhow::bail!("the child did not say which Python it runs")
}

/// How long a process whose records stopped while it goes on is looked at for an exec it
/// announced (which comes on its other connection).
const EXEC_SAID_WAIT: Duration = Duration::from_millis(50);

/// Programs that are not Python and end sooner than this are not listed.
const NATIVE_MIN_LIFE: Duration = Duration::from_millis(100);

/// Whether the other end of `records` (which sends nothing more) closes within `wait`: the
/// process exited or exec'd another program.
fn closed_within(records: &OwnedFd, wait: Duration) -> bool {
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(records.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) > 0
}

/// One followed process.
struct Child {
    pid: u32,
    job: ChildJob,
    /// Its metadata but its interpreter and parent (which it says itself), read from /proc
    /// as soon as it connects.
    meta: Meta,
    pending: Arc<Mutex<Vec<u8>>>,
    listed: Arc<AtomicBool>,
}

impl Child {
    /// Records the process until it ends (or the recording is cut). A failure ends its
    /// stream where it is: the reader says it was cut short.
    fn record(self, records: OwnedFd, ctrl: OwnedFd, cut: &AtomicBool) {
        let _ = self.try_record(records, ctrl, cut);
    }

    fn try_record(&self, records: OwnedFd, ctrl: OwnedFd, cut: &AtomicBool) -> Result<()> {
        // A child that ended before it was accepted (reaped already: nothing in /proc to
        // watch) is still recorded, from what it sent; how it ended is not known.
        let watch = EndWatch::spawn(self.pid, ctrl).ok();
        let (mut version, mut implementation, ppid) = read_child_line(&records)?;
        let ended =
            || watch.as_ref().is_none_or(|w| w.ended().is_some()) || cut.load(Ordering::Acquire);
        // A program that is not Python, or a Python that skips memlens's start-up (the
        // tracer's constructor said so): its memory is sampled. Short-lived programs (a shell
        // command, `git`) are left out: a build or a test suite runs thousands, and they
        // would only crowd the list. Such a Python is listed: its code is the user's.
        let native = version == CHILD_UNTRACED;
        let why = match implementation.as_str() {
            _ if !native => None,
            CHILD_PYTHON_WITHOUT_SITE => Some(PYTHON_WITHOUT_SITE_MARKER),
            // (One the recorder found, after it lived a while: see `Strays::look`.)
            CHILD_NOT_FOLLOWED => Some(NOT_FOLLOWED_MARKER),
            _ => None,
        };
        if native && why.is_none() && closed_within(&records, NATIVE_MIN_LIFE) {
            return Ok(());
        }
        self.listed.store(true, Ordering::Release);
        let mut meta = self.meta.clone();
        meta.extra.push((memlens_format::META_PPID.to_owned(), ppid.to_string()));
        if native {
            // No interpreter: the program's version and capture do not apply.
            let interval = meta.capture.sample_interval_us;
            meta.capture = CaptureOptions {
                rss_only: true,
                sample_interval_us: interval,
                ..Default::default()
            };
            (version, implementation) = (String::new(), String::new());
        }
        (meta.python_version, meta.python_implementation) = (version, implementation);
        let writer = RecordingWriter::with_options(
            StreamBuf(self.pending.clone()),
            &meta,
            self.job.options,
        )?;
        let sample_bytes = self.job.meta.sample_bytes().unwrap_or(0);
        let mut recorder = Recorder::new(writer, self.job.t0).sampled(sample_bytes);
        if let Some(why) = why {
            let at = recorder.rel(monotonic_ns());
            recorder.writer_mut().marker(at, ThreadId(0), why);
        }
        let mut memory = TreeMemory::alone(self.pid);
        let (mut recorder, _) = record_loop(
            recorder,
            PipeReader::new(File::from(records)),
            || memory.sample(),
            self.job.interval,
            ended,
            |_| Ok(()),
        )?;
        // (A process that said how it ends, and waits for its recording in its exit path,
        // is still running too; one whose recording was cut at the program's end did not
        // stop sending.)
        let went_on = !recorder.stopped()
            && !cut.load(Ordering::Acquire)
            && watch.as_ref().is_some_and(|w| w.ended().is_none())
            && crate::process_watch::running(self.pid);
        // (The announcement comes before the exec, on the other connection: looked for a
        // little while, should that one be read later.)
        let execed = match &watch {
            Some(w) if went_on => {
                let deadline = Instant::now() + EXEC_SAID_WAIT;
                loop {
                    match w.exec() {
                        None if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        found => break found,
                    }
                }
            }
            _ => None,
        };
        // When the process exec'd another program, if it did.
        let mut exec_at = None;
        if went_on {
            // The records stopped without a goodbye and the process goes on. It exec'd
            // another program (which it announced, or a program that is not Python's
            // connection closed at its exec: close-on-exec), which has a stream of its own if
            // it is followed; or a Python closed the connection (every file descriptor, say).
            // Said where it happened.
            let (at, what) = match &execed {
                Some((at, command)) => (*at, format!("{EXECED_MARKER}: {command}")),
                None if native => (monotonic_ns(), EXECED_MARKER.to_owned()),
                None => (monotonic_ns(), UNTRACED_MARKER.to_owned()),
            };
            exec_at = (native || execed.is_some()).then_some(at);
            let rel = recorder.rel(at);
            recorder.writer_mut().marker(rel, ThreadId(0), &what);
        }
        // A program that exec'd another is done (its stream ends there, how is not its to
        // say); any other waits for its end.
        while !(ended() || exec_at.is_some()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (at_ns, ending) = match (watch.as_ref().and_then(EndWatch::ended), exec_at) {
            (Some(e), _) => (e.at_ns, e.ending),
            (None, Some(at)) => (at, Ending::Unknown),
            (None, None) => {
                let now = monotonic_ns();
                let at = recorder.rel(now);
                recorder.writer_mut().marker(at, ThreadId(0), STILL_RUNNING_MARKER);
                (now, Ending::Unknown)
            }
        };
        let (code, signal) = ending.code_and_signal();
        recorder.finish(at_ns, code, signal)?;
        if let Some(w) = watch {
            w.release();
        }
        Ok(())
    }
}

/// The program's metadata with process `pid`'s command line, working directory, start time
/// and `number`.
fn child_meta(pid: u32, number: u32, program: &Meta) -> Meta {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let command_line: Vec<String> = std::fs::read(proc.join("cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    // A fork of the program, which memlens runs as `python -c BOOTSTRAP ...`: the program's
    // command line as the user gave it.
    let command_line = match command_line.get(1..3) {
        Some([c, code]) if c == "-c" && code == BOOTSTRAP => program.command_line.clone(),
        _ => command_line,
    };
    let cwd = std::fs::read_link(proc.join("cwd"))
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Not the program's "mode": a block's children are processes of their own.
    let mut extra: Vec<(String, String)> =
        program.extra.iter().filter(|(k, _)| k != "mode").cloned().collect();
    extra.push((memlens_format::META_PROCESS.to_owned(), number.to_string()));
    Meta { pid, command_line, cwd, start_unix_ms, extra, ..program.clone() }
}
