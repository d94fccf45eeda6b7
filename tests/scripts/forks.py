"""Starts a subprocess and a forked multiprocessing worker: neither may disturb the
recording or keep memlens waiting."""
import multiprocessing as mp
import subprocess
import sys


def child(n):
    return len(bytearray(n))


if __name__ == "__main__":
    subprocess.run(["true"], check=True)
    subprocess.run([sys.executable, "-c", "x = bytearray(10**6)"], check=True)
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        print(sum(pool.map(child, [1000] * 8)))
    KEPT = bytearray(3 * 1024 * 1024)  # FORKS_KEEP_LINE
