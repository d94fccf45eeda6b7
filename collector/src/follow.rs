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
//!
//! When the program ends, descendants are still accepted for a while: a child forked just
//! before the program's exit connects just after it, and a daemon's second fork comes later
//! still. The recorder waits for the descendants it knows to exist (those that are to connect,
//! found in /proc) up to [`CONNECT_GRACE`], and says how many it could not record.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use memlens_analysis::{
    execed_label, EXECED_MARKER, NOT_FOLLOWED_MARKER, PYTHON_WITHOUT_SITE_MARKER,
    STILL_RUNNING_MARKER, UNTRACED_MARKER,
};
use memlens_format::{CaptureOptions, Meta, RecordingWriter, ThreadId, WriterOptions};
use memlens_wire::handshake::{
    parse_child_line, ChildLine, CHILD_LINE_MAX, CHILD_NOT_FOLLOWED, CHILD_PYTHON_WITHOUT_SITE,
    CHILD_UNTRACED,
};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept, bind, getsockopt, listen, recv, socket, sockopt::PeerCredentials, AddressFamily,
    Backlog, MsgFlags, SockFlag, SockType, UnixAddr,
};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::child_memory::{children_of, TreeMemory};
use crate::host::monotonic_ns;
use crate::process_watch::{EndWatch, Ending};
use crate::python_env::BOOTSTRAP;
use crate::record_loop::{record_loop, PipeReader, StreamEnd};
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

/// How long, at most, the program's end waits for descendants that exist but have not
/// connected yet: a child forked as the program exits runs its first lines (the `memlens`
/// package's `after_fork`, ~5 ms) while the program is ending, on a busy machine later.
const CONNECT_GRACE: Duration = Duration::from_secs(1);

/// How long a process that made one of its two connections when the acceptor stops is
/// waited for to make the other (it makes them one after the other).
const LAST_PAIRING_WAIT: Duration = Duration::from_millis(50);

/// `Shared::expected` before the acceptor has looked for descendants yet to connect.
const NOT_LOOKED: usize = usize::MAX;

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
    /// Set once the process said it is a traced Python: a child it forks connects too.
    python: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The descendants followed so far, and the thread that accepts new ones.
pub struct Followers {
    shared: Arc<Shared>,
    /// Written to once `ending`, then `closed`, is set, so that the acceptor sees it at once
    /// instead of at its next look (up to 50 ms later, which the program's exit waited for).
    wake: OwnedFd,
    /// Returns how many descendants could not be recorded (see [`Finished::not_recorded`]).
    acceptor: Option<JoinHandle<usize>>,
    dir: PathBuf,
}

/// What [`Followers::finish`] found.
pub struct Finished {
    /// How many processes the recording lists besides the program.
    pub listed: usize,
    /// How many of them are programs the program ran in its place (an exec: its pid).
    pub execed: usize,
    /// How many descendants that started as the program ended are not in the recording: they
    /// did not connect within [`CONNECT_GRACE`], or made only one of their two connections.
    pub not_recorded: usize,
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
        let shared = Arc::new(Shared {
            streams: Mutex::new(Vec::new()),
            cut: AtomicBool::new(false),
            ending: AtomicBool::new(false),
            expected: AtomicUsize::new(NOT_LOOKED),
            looks: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let path = dir.dir.clone();
        let (woken, wake) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .context("cannot start following the program's children")?;
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("follow".into())
                .spawn(move || accept_loop(&dir, &job, &shared, &woken))
                .context("cannot start following the program's children")?
        };
        Ok(Followers { shared, wake, acceptor: Some(acceptor), dir: path })
    }

    /// Carries what the descendants' recordings wrote since the last call into the file.
    /// The list of streams is not held meanwhile: writing the file can wait on the disk, and
    /// the acceptor needs the list to take a new child (which waits until it is taken).
    pub fn carry<W: Write>(&self, writer: &mut RecordingWriter<W>) -> Result<()> {
        let pending: Vec<(u32, Arc<Mutex<Vec<u8>>>)> = {
            let streams = self.shared.streams.lock().expect("streams");
            streams.iter().map(|s| (s.number, s.pending.clone())).collect()
        };
        for (number, pending) in pending {
            let bytes = std::mem::take(&mut *pending.lock().expect("stream buffer"));
            if !bytes.is_empty() {
                writer.substream(number, &bytes)?;
            }
        }
        Ok(())
    }

    /// Once the program has ended: waits up to [`GRACE`] for the descendants still running,
    /// and up to [`CONNECT_GRACE`] for those that exist but have not connected yet (still
    /// accepting new ones meanwhile), ends the recordings of those that are not done, carries
    /// everything into the file.
    /// `program` is the program's pid.
    pub fn finish<W: Write>(
        mut self,
        writer: &mut RecordingWriter<W>,
        program: u32,
    ) -> Result<Finished> {
        self.shared.ending.store(true, Ordering::Release);
        // The acceptor looks for descendants yet to connect at once, not at its next look.
        let _ = nix::unistd::write(&self.wake, &[1]);
        let start = Instant::now();
        // The looks made when nothing was left to wait for, if so (see below).
        let mut settled_at = None;
        loop {
            self.carry(writer)?;
            let (running, none) = {
                let streams = self.shared.streams.lock().expect("streams");
                let running =
                    streams.iter().any(|s| s.thread.as_ref().is_some_and(|t| !t.is_finished()));
                (running, streams.is_empty())
            };
            let waited = start.elapsed();
            let looks = self.shared.looks.load(Ordering::Acquire);
            let expected = self.shared.expected.load(Ordering::Acquire);
            let done = match expected {
                _ if waited >= CONNECT_GRACE => true,
                NOT_LOOKED => false,
                0 if !running || waited >= GRACE => {
                    // A descendant that ended since the last look may have forked one that
                    // look did not see (a daemon's second fork, whose parent exits at once):
                    // done after two more looks, one of which began after now. At once
                    // where no descendant ever connected.
                    none || looks >= *settled_at.get_or_insert(looks) + 2
                }
                _ => {
                    settled_at = None;
                    false
                }
            };
            if done {
                break;
            }
            // (The acceptor's first look, woken above, comes within a millisecond or so.)
            let pause = if expected == NOT_LOOKED { 1 } else { 5 };
            std::thread::sleep(Duration::from_millis(pause));
        }
        self.shared.closed.store(true, Ordering::Release);
        let _ = nix::unistd::write(&self.wake, &[1]);
        let not_recorded = self.acceptor.take().map_or(0, |a| a.join().unwrap_or(0));
        self.shared.cut.store(true, Ordering::Release);
        let threads: Vec<JoinHandle<()>> = {
            let mut streams = self.shared.streams.lock().expect("streams");
            streams.iter_mut().filter_map(|s| s.thread.take()).collect()
        };
        for t in threads {
            let _ = t.join();
        }
        self.carry(writer)?;
        let streams = self.shared.streams.lock().expect("streams");
        let listed: Vec<&Stream> =
            streams.iter().filter(|s| s.listed.load(Ordering::Acquire)).collect();
        let execed = listed.iter().filter(|s| s.pid == program).count();
        Ok(Finished { listed: listed.len(), execed, not_recorded })
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.cut.store(true, Ordering::Release);
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

/// What [`Followers`], the acceptor thread and each child's thread share.
struct Shared {
    streams: Mutex<Vec<Stream>>,
    /// Set when the program has ended and the grace period is over: every child's
    /// recording still going on stops following it.
    cut: AtomicBool,
    /// Set when the program has ended: the acceptor counts the descendants yet to connect
    /// (`expected`).
    ending: AtomicBool,
    /// How many descendants known to exist have not connected yet, since `ending` was set
    /// ([`NOT_LOOKED`] until the acceptor has looked).
    expected: AtomicUsize,
    /// How many looks the acceptor has made since `ending` was set.
    looks: AtomicUsize,
    /// Set when the grace after the program's end is over: no new descendants are accepted.
    closed: AtomicBool,
}

/// Accepts descendants until `closed`, then takes the connections still pending; returns
/// how many descendants known to exist could not be recorded.
fn accept_loop(dir: &FollowDir, job: &ChildJob, shared: &Arc<Shared>, woken: &OwnedFd) -> usize {
    let streams = &shared.streams;
    // Each process's two connections, by pid, until both are there: a child connects its
    // control socket first, but both can arrive between the two accept loops below, and
    // then its record stream is accepted first.
    let mut ctrls: HashMap<u32, (OwnedFd, Instant)> = HashMap::default();
    let mut waiting: HashMap<u32, (OwnedFd, Instant)> = HashMap::default();
    let accept_all = |ctrls: &mut HashMap<u32, (OwnedFd, Instant)>,
                      waiting: &mut HashMap<u32, (OwnedFd, Instant)>| {
        let accept_ctrls = |ctrls: &mut HashMap<u32, (OwnedFd, Instant)>| {
            while let Some(fd) = accepted(&dir.ctrl) {
                if let Some(pid) = peer_pid(&fd) {
                    ctrls.insert(pid, (fd, Instant::now()));
                }
            }
        };
        accept_ctrls(ctrls);
        while let Some(records) = accepted(&dir.records) {
            if let Some(pid) = peer_pid(&records) {
                waiting.insert(pid, (records, Instant::now()));
            }
        }
        accept_ctrls(ctrls);
    };
    let pair = |ctrls: &mut HashMap<u32, (OwnedFd, Instant)>,
                waiting: &mut HashMap<u32, (OwnedFd, Instant)>| {
        let paired: Vec<u32> =
            waiting.keys().filter(|pid| ctrls.contains_key(pid)).copied().collect();
        for pid in paired {
            let (Some((records, _)), Some((ctrl, _))) = (waiting.remove(&pid), ctrls.remove(&pid))
            else {
                continue;
            };
            // (The program's own pid too: a program the program exec'd in its place, which
            // reports the end on the program's control socket and has a stream of its own.)
            follow(pid, records, ctrl, Vec::new(), job, shared);
        }
    };
    let mut strays = Strays::default();
    let mut next_look = Instant::now() + STRAY_LOOK;
    // The descendants found yet to connect once the program ended: still awaited once their
    // parent has exited (a daemon's first child), when /proc no longer shows them under it.
    let mut awaited = HashSet::default();
    while !shared.closed.load(Ordering::Acquire) {
        let mut fds = [
            PollFd::new(dir.ctrl.as_fd(), PollFlags::POLLIN),
            PollFd::new(dir.records.as_fd(), PollFlags::POLLIN),
            PollFd::new(woken.as_fd(), PollFlags::POLLIN),
        ];
        // Once the program has ended, the finish waits on `expected`: looked at often.
        let wait = if shared.ending.load(Ordering::Acquire) { 5u16 } else { 50 };
        if poll(&mut fds, PollTimeout::from(wait)).unwrap_or(0) > 0 {
            if fds[2].any().unwrap_or(false) {
                // Woken (the program ended, or the sockets close): taken, so that the next
                // poll waits again.
                while nix::unistd::read(woken.as_raw_fd(), &mut [0u8; 16]).unwrap_or(0) > 0 {}
            }
            accept_all(&mut ctrls, &mut waiting);
        }
        let ending = shared.ending.load(Ordering::Acquire);
        // A half that found no other within this long belongs to a process that died
        // between its two connections (and its pid may come again).
        ctrls.retain(|_, (_, at)| at.elapsed() < PAIRING_WAIT);
        waiting.retain(|_, (_, at)| at.elapsed() < PAIRING_WAIT);
        pair(&mut ctrls, &mut waiting);
        if ending {
            let halves = ctrls.keys().chain(waiting.keys()).copied();
            look_for_awaited(&mut awaited, job.meta.pid, &dir.dir, streams, halves);
            shared.expected.store(awaited.len(), Ordering::Release);
            shared.looks.fetch_add(1, Ordering::AcqRel);
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
                    follow(pid, records, ctrl, peers.into(), job, shared);
                }
            }
        }
    }
    // The connections made before the sockets close are taken (a process between its two
    // connections gets a moment for the other); whoever has not connected is counted.
    let last = Instant::now();
    loop {
        accept_all(&mut ctrls, &mut waiting);
        pair(&mut ctrls, &mut waiting);
        ctrls.retain(|pid, _| crate::process_watch::running(*pid));
        waiting.retain(|pid, _| crate::process_watch::running(*pid));
        if (ctrls.is_empty() && waiting.is_empty()) || last.elapsed() >= LAST_PAIRING_WAIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let halves = ctrls.keys().chain(waiting.keys()).copied();
    look_for_awaited(&mut awaited, job.meta.pid, &dir.dir, streams, halves);
    awaited.len()
}

/// Updates `awaited`, the descendants yet to connect: those [`yet_to_connect`] finds join
/// it, those that connected or are gone leave it.
fn look_for_awaited(
    awaited: &mut HashSet<u32>,
    program: u32,
    dir: &Path,
    streams: &Mutex<Vec<Stream>>,
    connecting: impl Iterator<Item = u32>,
) {
    awaited.extend(yet_to_connect(program, streams, connecting));
    awaited.extend(orphans_yet_to_connect(program, dir, awaited));
    let streams = streams.lock().expect("streams");
    awaited
        .retain(|&pid| !streams.iter().any(|s| s.pid == pid) && crate::process_watch::running(pid));
}

/// The descendants of the program (`program`) and of the followed processes that are to
/// connect and have not (or are in the middle of it: `connecting`): a process with memlens's
/// environment ([`strays::follows`]) that a traced Python forked (its `after_fork` connects
/// it), or that runs a program of its own (an exec: the preloaded tracer connects it). A
/// process that is not Python forks children that do not connect (a shell's subshell).
fn yet_to_connect(
    program: u32,
    streams: &Mutex<Vec<Stream>>,
    connecting: impl Iterator<Item = u32>,
) -> HashSet<u32> {
    let me = std::process::id();
    let mut missing: HashSet<u32> = connecting.collect();
    // (pid, whether its forked children connect); the program is a traced Python.
    let mut queue: Vec<(u32, bool)> = vec![(program, true)];
    let mut known: HashSet<u32> = HashSet::default();
    known.insert(program);
    for s in streams.lock().expect("streams").iter() {
        known.insert(s.pid);
        if s.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            queue.push((s.pid, s.python.load(Ordering::Acquire)));
        }
    }
    let mut next = 0;
    while next < queue.len() && queue.len() <= MAX_PROCESSES {
        let (pid, forks_connect) = queue[next];
        next += 1;
        let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        for child in children_of(pid) {
            if child == me || known.contains(&child) || missing.contains(&child) {
                continue;
            }
            if strays::follows(child) != Some(true) {
                continue;
            }
            let execed =
                || std::fs::read(format!("/proc/{child}/cmdline")).is_ok_and(|c| c != command);
            if forks_connect || execed() {
                missing.insert(child);
            } else {
                // A fork of a program that is not Python: its own children may exec.
                queue.push((child, false));
            }
        }
    }
    missing
}

/// The Pythons of this run (their environment names `dir`) that are no longer under the
/// program or a followed process and have not connected: a process a followed Python forked
/// and that its parent left behind before [`yet_to_connect`] saw it under it (a daemon's second
/// fork, whose parent exits at once). Looked for among the processes started after the program
/// (a higher pid), whose program is a Python (a shell's subshell, which never connects, is not;
/// nor is memlens). Those connected already are left out by [`look_for_awaited`].
fn orphans_yet_to_connect(program: u32, dir: &Path, awaited: &HashSet<u32>) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let runs_python = |pid: u32| {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
            exe.file_name().is_some_and(|n| n.to_string_lossy().contains("python"))
        })
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid > program && !awaited.contains(&pid))
        .filter(|&pid| runs_python(pid) && strays::follows_dir(pid, dir) == Some(true))
        .collect()
}

/// Records process `pid` from its two connections on a thread of its own, as the next
/// stream of the file; `keep` is held open as long (see [`strays::connection`]).
fn follow(
    pid: u32,
    records: OwnedFd,
    ctrl: OwnedFd,
    keep: Vec<OwnedFd>,
    job: &ChildJob,
    shared: &Arc<Shared>,
) {
    // Read before taking the list of streams, which the program's recorder needs too: /proc
    // can be slow to answer about a process in the middle of a fork or an exit.
    let about = ProcAbout::read(pid);
    let mut streams = shared.streams.lock().expect("streams");
    if streams.len() >= MAX_PROCESSES {
        return;
    }
    let number = streams.len() as u32 + 1;
    let pending = Arc::new(Mutex::new(Vec::new()));
    let listed = Arc::new(AtomicBool::new(false));
    let python = Arc::new(AtomicBool::new(false));
    let meta = child_meta(pid, about, number, &job.meta);
    let child = Child {
        pid,
        job: job.clone(),
        meta,
        pending: pending.clone(),
        listed: listed.clone(),
        python: python.clone(),
    };
    let shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("follow-{pid}"))
        .spawn(move || {
            child.record(records, ctrl, &shared.cut);
            drop(keep);
        })
        .ok();
    streams.push(Stream { number, pid, pending, listed, python, thread });
}

/// What a descendant says of itself on its first line on `records` ([`ChildLine`]), read
/// without taking any of what follows (the tracer's, for the recorder). Waits at most a
/// second.
fn read_child_line(records: &OwnedFd) -> Result<ChildLine> {
    let mut line = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while line.len() < CHILD_LINE_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(records.as_fd(), PollFlags::POLLIN)];
        if ms == 0 || poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) == 0 {
            break;
        }
        // Looked at first, then taken up to the newline.
        let mut buf = [0u8; 4096];
        let want = buf.len().min(CHILD_LINE_MAX - line.len());
        let seen = match recv(records.as_raw_fd(), &mut buf[..want], MsgFlags::MSG_PEEK) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let end = buf[..seen].iter().position(|&b| b == b'\n');
        let take = end.map_or(seen, |e| e + 1);
        let taken = nix::unistd::read(records.as_raw_fd(), &mut buf[..take])?;
        line.extend_from_slice(&buf[..taken]);
        if line.last() == Some(&b'\n') {
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            return parse_child_line(&text).context("not a memlens child's line");
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
    /// Its metadata but its interpreter, parent and (where it says it) command line, which it
    /// says itself: read from /proc as soon as it connects.
    meta: Meta,
    pending: Arc<Mutex<Vec<u8>>>,
    listed: Arc<AtomicBool>,
    python: Arc<AtomicBool>,
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
        let ChildLine { mut version, mut implementation, ppid, command } =
            read_child_line(&records)?;
        let end = || match watch.as_ref().map(EndWatch::ended) {
            Some(None) if !cut.load(Ordering::Acquire) => None,
            Some(None) => Some(StreamEnd::Cut),
            _ => Some(StreamEnd::Ended),
        };
        let ended = || end().is_some();
        // A program that is not Python, or a Python that skips memlens's start-up (the
        // tracer's constructor said so): its memory is sampled. Short-lived programs (a shell
        // command, `git`) are left out: a build or a test suite runs thousands, and they
        // would only crowd the list. Such a Python is listed: its code is the user's.
        let native = version == CHILD_UNTRACED;
        self.python.store(!native, Ordering::Release);
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
        if let Some(command) = command {
            // As the process said it when it connected: /proc may have the program it has
            // exec'd since.
            meta.command_line = command_line(&command, &self.job.meta);
        }
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
            end,
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
                Some((at, command)) => (*at, execed_label(command)),
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

/// The arguments of a command line as /proc gives it (ended by NULs); a fork of the program
/// (`program`), which memlens runs as `python -c BOOTSTRAP ...`, has the program's command
/// line as the user gave it.
fn command_line(raw: &[u8], program: &Meta) -> Vec<String> {
    let args: Vec<String> = raw
        .split(|&c| c == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    match args.get(1..3) {
        Some([c, code]) if c == "-c" && code == BOOTSTRAP => program.command_line.clone(),
        _ => args,
    }
}

/// What /proc says of a process: its command line (NUL-separated) and working directory.
struct ProcAbout {
    cmdline: Vec<u8>,
    cwd: String,
}

impl ProcAbout {
    fn read(pid: u32) -> ProcAbout {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(proc.join("cwd"))
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        ProcAbout { cmdline, cwd }
    }
}

/// The program's metadata with process `pid`'s command line and working directory (`about`),
/// start time and `number`.
fn child_meta(pid: u32, about: ProcAbout, number: u32, program: &Meta) -> Meta {
    let ProcAbout { cmdline, cwd } = about;
    let command_line = command_line(&cmdline, program);
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Not the program's "mode": a block's children are processes of their own.
    let mut extra: Vec<(String, String)> =
        program.extra.iter().filter(|(k, _)| k != "mode").cloned().collect();
    extra.push((memlens_format::META_PROCESS.to_owned(), number.to_string()));
    Meta { pid, command_line, cwd, start_unix_ms, extra, ..program.clone() }
}
