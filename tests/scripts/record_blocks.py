"""`memlens.record()` blocks inside a plain Python program (no `memlens run`).

Usage: record_blocks.py OUT_DIR [numpy]. Writes OUT_DIR/first.memlens, second.memlens and
(with numpy) numpy.memlens; what happens between the blocks must not be recorded.
"""
import os
import sys
import threading

import memlens

out = sys.argv[1]
use_numpy = "numpy" in sys.argv[2:]
kept = []


def fill(n):
    return [str(i) * 4 for i in range(n)]  # FILL_LINE


def outside():
    return bytearray(30 * 1024 * 1024)  # OUTSIDE_LINE


def worker():
    kept.append(bytearray(6 * 1024 * 1024))  # WORKER_LINE


go = threading.Event()
done = threading.Event()


def early_work():
    kept.append(bytearray(3 * 1024 * 1024))  # EARLY_LINE


def early():
    # Started before any block: waits, then allocates inside the second one.
    go.wait()
    early_work()
    done.set()


early_thread = threading.Thread(target=early, name="early-bird")
early_thread.start()


with memlens.record(os.path.join(out, "first.memlens"), native=False):
    kept.append(fill(100_000))
    memlens.mark("filled")
    kept.append(bytearray(20 * 1024 * 1024))  # FIRST_BLOCK_LINE

between = outside()

with memlens.record(os.path.join(out, "second.memlens"), native=False):
    t = threading.Thread(target=worker, name="block-worker")
    t.start()
    t.join()
    go.set()
    done.wait()
    del between  # freed inside the block, allocated outside: not counted

if use_numpy:
    import numpy as np

    with memlens.record(os.path.join(out, "numpy.memlens")):
        arr = np.ones(10_000_000)  # NUMPY_BLOCK_LINE
print("done", memlens.is_tracing())
