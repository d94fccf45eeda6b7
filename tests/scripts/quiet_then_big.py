"""A big allocation after a quiet spell is stamped with its own time: a quiet start (the
tracer's drain settles to a pass every 5 ms), a marker, a 1 ms pause, then 8 MB."""
import time

import memlens

time.sleep(0.05)
memlens.mark("pause")
time.sleep(0.001)
kept = bytearray(8 * 1024 * 1024)
memlens.mark("allocated")
