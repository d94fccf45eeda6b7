"""A program that spreads its memory over processes, each child building a known amount at a
known line: a fork pool, a spawn pool, a forkserver pool, a ProcessPoolExecutor, a
`python -c` child, and a forked child killed by SIGKILL while it holds its memory.

Usage: family.py [METHOD ...] (default: all of fork spawn forkserver executor exec killed)."""
import concurrent.futures
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time


def build(mib):
    block = bytearray(mib * 1024 * 1024)  # FAMILY_CHILD_LINE
    # Long enough for each worker of a pool of two to take one of the two tasks.
    time.sleep(0.2)
    return len(block)


def pool(method):
    with mp.get_context(method).Pool(2) as p:
        return sum(p.map(build, [4, 4], chunksize=1))


def executor():
    ctx = mp.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        return sum(ex.map(build, [4, 4], chunksize=1))


def exec_child():
    code = "x = bytearray(6 * 1024 * 1024)  # FAMILY_EXEC_LINE\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def killed():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        held = bytearray(5 * 1024 * 1024)  # FAMILY_KILLED_LINE
        os.write(w, b"x")
        time.sleep(60)
        os._exit(len(held))
    os.close(w)
    os.read(r, 1)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


if __name__ == "__main__":
    methods = sys.argv[1:] or ["fork", "spawn", "forkserver", "executor", "exec", "killed"]
    PARENT = bytearray(2 * 1024 * 1024)  # FAMILY_PARENT_LINE
    for m in methods:
        if m in ("fork", "spawn", "forkserver"):
            pool(m)
        elif m == "executor":
            executor()
        elif m == "exec":
            exec_child()
        elif m == "killed":
            killed()
    print("done", methods)
