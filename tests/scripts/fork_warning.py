"""Forks once with only its main thread (no warning on 3.12+), then once with a thread of its
own running (CPython 3.12+ warns that the process is multi-threaded, at the line of the call,
FORK_WARNED_LINE): under memlens as without it."""
import os
import threading


def wait(pid):
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


wait(os.fork())
release = threading.Event()
thread = threading.Thread(target=release.wait)
thread.start()
wait(os.fork())  # FORK_WARNED_LINE
release.set()
thread.join()
print("done")
