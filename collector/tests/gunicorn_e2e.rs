//! gunicorn as it is deployed, under `memlens run -m gunicorn`: a master and two sync
//! workers serving a WSGI app (tests/scripts/gunicorn_app.py) on 127.0.0.1, hit over
//! loopback by a bounded client, then stopped with SIGTERM as a supervisor stops it. The
//! one recording must hold the master and both workers (forked by the master), each
//! worker's requests at the app's line, and every process's recording complete.
//!
//! Needs gunicorn for the interpreter under test (`./dev setup` installs it from PyPI into
//! each CPython the suite runs on); skipped, saying so, without it, except under CI (`CI`
//! set), where that is a failure. Every wait is bounded: a server that does not come up,
//! answer or stop fails the test, and the whole process group is killed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use memlens_analysis::{call_sites, descendants, stack_totals, EventFilter, Snapshot};
use memlens_format::Recording;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use common::{line_of, memlens, python_has, script, TempDir};

const MIB: u64 = 1024 * 1024;
/// The longest any one step may take (start-up, a request, the shutdown): far more than
/// any of them takes on a loaded machine, and a bound on a server that hangs.
const STEP: Duration = Duration::from_secs(120);
/// Requests served by the worker that is free while the other holds a half-sent one.
const REQUESTS: u32 = 5;

/// gunicorn under `memlens run`, in a process group of its own that is killed if the test
/// ends before it does.
struct Server {
    child: Child,
    /// Lines of its stderr (gunicorn's log, then memlens's summary line).
    stderr: Receiver<String>,
    log: Vec<String>,
}

impl Server {
    fn start(dir: &TempDir) -> Server {
        let mut child = memlens()
            .args(["run", "-o"])
            .arg(dir.0.join("out.memlens"))
            .args(["-m", "gunicorn", "--workers", "2", "--worker-class", "sync"])
            .args(["--bind", "127.0.0.1:0", "--chdir"])
            .arg(script(""))
            // A worker holding a half-sent request does not report to the master: not
            // to be taken for a stuck one while the test runs.
            .args(["--timeout", "300", "gunicorn_app:app"])
            // gunicorn 25+ opens a control socket in $XDG_RUNTIME_DIR (else in ~/.gunicorn).
            .env("XDG_RUNTIME_DIR", &dir.0)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start memlens run -m gunicorn");
        let (tx, stderr) = channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server { child, stderr, log: Vec::new() }
    }

    /// The next line of its stderr that `pick` accepts, waiting at most [`STEP`].
    fn wait_for<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let found = pick(&line);
                    self.log.push(line);
                    if let Some(v) = found {
                        return v;
                    }
                }
                Err(_) => panic!("no {what} from gunicorn; its stderr:\n{}", self.log.join("\n")),
            }
        }
    }

    /// The port gunicorn bound (it was given port 0: the kernel picks a free one).
    fn port(&mut self) -> u16 {
        self.wait_for("\"Listening at\"", |line| {
            let url = line.split("Listening at: http://127.0.0.1:").nth(1)?;
            url.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
    }

    /// Sends SIGTERM to the master (the process memlens runs the program in) and waits for
    /// it to exit and its stderr to close (the recorder has finished the file by then).
    fn terminate(&mut self) -> ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + STEP;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "gunicorn did not stop on SIGTERM:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.stderr.recv_timeout(STEP) {
            self.log.push(line);
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A connection to the server, with every read and write bounded by [`STEP`].
fn connect(port: u16) -> TcpStream {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, STEP).expect("connect to gunicorn");
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    stream
}

/// The rest of a request sent on `stream`: its answer, the serving worker's pid and how
/// many MiB it holds.
fn finish(mut stream: TcpStream, rest: &[u8]) -> (u32, u32) {
    stream.write_all(rest).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("gunicorn's answer");
    assert!(answer.starts_with("HTTP/1.") && answer.contains(" 200 "), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let mut words = body.split_whitespace().map(|w| w.parse::<u32>().expect(&answer));
    (words.next().expect(&answer), words.next().expect(&answer))
}

fn grow(port: u16) -> (u32, u32) {
    finish(connect(port), b"GET /grow HTTP/1.0\r\nHost: memlens\r\n\r\n")
}

/// Bytes `rec` held at exit that were allocated directly at `function`'s `line`.
fn held_at(rec: &Recording, function: &str, line: u32) -> u64 {
    let totals = stack_totals(rec, Snapshot::AtEnd, &EventFilter::default()).unwrap();
    call_sites(rec, &totals, false)
        .iter()
        .filter(|s| {
            rec.frame(s.frame).is_some_and(|f| rec.string(f.function) == function && f.line == line)
        })
        .map(|s| s.self_.bytes)
        .sum()
}

#[test]
fn gunicorn_master_and_workers_are_recorded_at_the_app_line() {
    if !python_has("gunicorn") {
        assert!(std::env::var_os("CI").is_none(), "gunicorn is not installed under CI");
        return;
    }
    let dir = TempDir::new("gunicorn");
    let mut server = Server::start(&dir);
    let port = server.port();

    // Both workers serve: the first connection's request is sent only in part, so the
    // worker that accepts it (the first accept takes the oldest connection) waits for the
    // rest, and the other worker serves the next REQUESTS.
    let mut held = connect(port);
    held.write_all(b"GET /grow HTTP/1.0\r\n").unwrap();
    let served: Vec<(u32, u32)> = (0..REQUESTS).map(|_| grow(port)).collect();
    let (first, first_held) = finish(held, b"Host: memlens\r\n\r\n");
    let second = served[0].0;
    assert!(served.iter().all(|&(pid, _)| pid == second), "{served:?}");
    assert_eq!(served.last().unwrap().1, REQUESTS, "{served:?}");
    assert_eq!(first_held, 1);
    assert_ne!(first, second);

    let master = server.child.id();
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "{}", server.log.join("\n"));
    let file = dir.0.join("out.memlens");
    let rec = Recording::from_vec(std::fs::read(&file).unwrap()).unwrap();

    // The master's recording is whole and says how it ended.
    assert_eq!(rec.meta().pid, master);
    assert!(rec.has_trailer() && rec.truncation().is_none(), "{:?}", rec.truncation());
    assert_eq!(rec.end().and_then(|e| e.exit_code), Some(0), "{:?}", rec.end());
    let line = line_of("gunicorn_app.py", "GUNICORN_GROW_LINE");
    assert_eq!(held_at(&rec, "app", line), 0, "the master serves no request");

    // Its two workers, forked by it, each with its requests' MiB held at the app's line.
    let workers = descendants(&rec);
    let pids: Vec<u32> = workers.iter().map(|p| p.rec.meta().pid).collect();
    assert_eq!(workers.len(), 2, "processes {pids:?}, workers {first} and {second}");
    for (pid, mib) in [(first, 1), (second, u64::from(REQUESTS))] {
        let w = workers.iter().find(|p| p.rec.meta().pid == pid).expect("a worker's recording");
        assert_eq!(w.ppid(), Some(master));
        assert!(w.rec.has_trailer() && w.rec.truncation().is_none(), "worker {pid}");
        assert_eq!(w.end().and_then(|e| e.exit_code), Some(0), "worker {pid}: {:?}", w.end());
        let bytes = held_at(&w.rec, "app", line);
        // Each bytearray is its MiB plus an object header; the list they are kept in is
        // allocated at the same line.
        assert!((mib * MIB..mib * MIB + MIB / 2).contains(&bytes), "worker {pid}: {bytes} bytes");
    }

    // `summary --json` lists the master first, then both workers.
    let out = memlens().arg("summary").arg("--json").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<u64> =
        v["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    assert_eq!(listed[0], u64::from(master));
    let mut listed_workers = listed[1..].to_vec();
    listed_workers.sort_unstable();
    let mut want = vec![u64::from(first), u64::from(second)];
    want.sort_unstable();
    assert_eq!(listed_workers, want);
    for p in &v["processes"].as_array().unwrap()[1..] {
        assert_eq!(p["ppid"], master);
        assert_eq!(p["complete"], true, "{p}");
    }
    assert!(
        v["all_processes"]["peak_heap_bytes"].as_u64().unwrap() >= u64::from(REQUESTS + 1) * MIB
    );
}
