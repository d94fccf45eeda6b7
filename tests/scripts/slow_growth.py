"""Grows slowly, for following a recording as it is written: 12 steps of half a second,
each keeping 4 MiB more (48 MiB at exit) and churning small objects, with a marker per step.
STEPS and the pause can be set by the first two arguments."""
import sys
import time

import memlens

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
PAUSE = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5

kept = []
for step in range(STEPS):
    kept.append(bytearray(4 * 1024 * 1024))
    scratch = [str(i) * 3 for i in range(20_000)]
    memlens.mark(f"step {step}")
    time.sleep(PAUSE)
print(len(kept), len(scratch))
