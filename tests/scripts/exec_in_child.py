"""A forked child that replaces itself with another Python (os.execv), which exits with 5;
the program waits for it. The recorder is held stopped (SIGSTOP) from before the fork until
the child has exec'd, so that it takes the forked child's connection only after the exec,
when /proc already names the new program."""
import os
import signal
import sys
import time


def recorder():
    """The pid of the process listening on the recorder's `records` socket."""
    path = os.path.join(os.environ["MEMLENS_FOLLOW"], "records")
    with open("/proc/net/unix") as f:
        inode = next(line.split()[6] for line in f if line.split()[7:] == [path])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in fds):
                return int(pid)
        except OSError:
            pass
    raise SystemExit("no recorder")


def child():
    held = bytearray(2 * 1024 * 1024)  # EXEC_CHILD_LINE
    code = "x = bytearray(4 * 1024 * 1024); import sys; sys.exit(5)"
    os.execv(sys.executable, [sys.executable, "-c", code])
    return held


stopped = recorder()
os.kill(stopped, signal.SIGSTOP)
try:
    pid = os.fork()
    if pid == 0:
        child()
    command = open(f"/proc/{pid}/cmdline", "rb").read()
    deadline = time.monotonic() + 10
    while b"4 * 1024" not in command and time.monotonic() < deadline:
        time.sleep(0.01)
        command = open(f"/proc/{pid}/cmdline", "rb").read()
finally:
    os.kill(stopped, signal.SIGCONT)
_, status = os.waitpid(pid, 0)
print("child exited with", os.waitstatus_to_exitcode(status))
