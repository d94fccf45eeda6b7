"""Children that make following hard: one closes every file descriptor (and opens files on
their numbers), one is given an empty environment (traced all the same), one is run by
`env -i` (which empties its own environment before its exec), one starts a session of its
own, one is a Python run with -I (which skips the start-up that traces it), one execs a
program that is not Python. None may hang the program or break its recording, which says
what it could not trace; one outlives the program. A program that is not Python and runs a
while (`sleep 0.4`) has its memory sampled, as do the Pythons run by `env -i` or with -I."""
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
    unfollowed = "import time; x = bytearray(2 * 10**7); time.sleep(0.4)"
    subprocess.run(["env", "-i", sys.executable, "-c", unfollowed], check=True)
    isolated = "import time; x = bytearray(10**7); time.sleep(0.3)"
    subprocess.run([sys.executable, "-I", "-c", isolated], check=True)
    subprocess.run(["sh", "-c", "echo not python"], check=True)
    subprocess.run(["sleep", "0.4"], check=True)
    KEPT = bytearray(2 * 1024 * 1024)  # HOSTILE_PARENT_LINE
    print("done")
