"""Two sites big enough for `memlens run --sample 512KiB` to estimate within 10%
(collector/tests/sample_e2e.rs states their relative standard errors).

- records(): 400,000 objects of 1,033 bytes (413 MB), kept to exit: the leak site, and half
  of the peak. Small blocks: each is sampled with probability p = 1 - exp(-1033 / 524288).
  The loop allocates nothing else (a `range` would make an int per object: 400,000 more
  allocations of the site, whose sampled count is far noisier than the records').
- arrays(): 16 arrays of 3 MiB (48 MiB), alive at the peak and freed before exit.

`--free-all` frees everything before exit: then nothing of either site is left.
"""

import itertools
import sys


def records():
    return [bytes(1000) for _ in itertools.repeat(None, 400_000)]  # RECORDS


def arrays():
    return [bytearray(3 << 20) for _ in range(16)]  # ARRAYS


def main():
    kept = records()
    peak = arrays()
    del peak
    if "--free-all" in sys.argv:
        del kept
        return None
    return kept


leaked = main()
