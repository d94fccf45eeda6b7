"""Children that make following hard: one closes every file descriptor (and opens files on
their numbers), one is given an empty environment, one is run by `env -i` (which empties its
own environment before its exec), one after the program emptied its own (the three traced
all the same), one starts a session of its own, one is a Python run with -I (which skips the
start-up that traces it), one is run by a Python run with -I through the execve system call
with an empty environment (which no exec function of libc sees), one execs a program that is
not Python. None may hang the program or break its recording, which says what it could not
trace; one outlives the program. A program that is not Python and runs a while (`sleep 0.4`)
has its memory sampled, as do the Pythons run with -I or by the system call."""
import os
import subprocess
import sys
import time


def forked(body):
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def close_everything():
    os.closerange(3, 4096)
    # Goes on for a while after: a service that closed what it did not open, and opens its
    # own files, whose numbers must not be memlens's.
    with open(os.devnull, "wb") as sink, open(os.devnull, "wb"):
        for _ in range(10):
            sink.write(bytearray(1024 * 1024))  # HOSTILE_CLOSED_LINE
            time.sleep(0.03)


# Forks, and the child becomes `python -c UNFOLLOWED` through the execve system call itself,
# with an empty environment: what no exec function of libc sees.
BY_SYSTEM_CALL = """
import ctypes, os, sys
pid = os.fork()
if pid == 0:
    argv = [sys.executable.encode(), b"-c", sys.argv[1].encode(), None]
    ctypes.CDLL(None).syscall(59, argv[0], (ctypes.c_char_p * 4)(*argv), (ctypes.c_char_p * 1)())
    os._exit(127)
os.waitpid(pid, 0)
"""


def own_session():
    os.setsid()
    kept = bytearray(3 * 1024 * 1024)  # HOSTILE_SETSID_LINE
    return kept


if __name__ == "__main__":
    # Outlives the program: recorded up to the program's end.
    outliving = "import time; x = bytearray(4 << 20); time.sleep(5)"
    subprocess.Popen([sys.executable, "-c", outliving], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    forked(close_everything)
    forked(own_session)
    given = "import time; x = bytearray(3 * 10**7); time.sleep(0.1)"
    subprocess.run([sys.executable, "-c", given], env={}, check=True)
    emptied = "import time; x = bytearray(2 * 10**7); time.sleep(0.1)"
    subprocess.run(["env", "-i", sys.executable, "-c", emptied], check=True)
    unfollowed = "import time; x = bytearray(25 * 10**6); time.sleep(0.4)"
    subprocess.run([sys.executable, "-I", "-c", BY_SYSTEM_CALL, unfollowed], check=True)
    isolated = "import time; x = bytearray(10**7); time.sleep(0.3)"
    subprocess.run([sys.executable, "-I", "-c", isolated], check=True)
    subprocess.run(["sh", "-c", "echo not python"], check=True)
    subprocess.run(["sleep", "0.4"], check=True)
    KEPT = bytearray(2 * 1024 * 1024)  # HOSTILE_PARENT_LINE
    environ = dict(os.environ)
    os.environ.clear()
    cleared = "import time; x = bytearray(15 * 10**6); time.sleep(0.1)"
    subprocess.run([sys.executable, "-c", cleared], check=True)
    os.environ.update(environ)
    print("done")
