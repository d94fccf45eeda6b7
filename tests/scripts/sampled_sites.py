"""Two sites big enough for `memlens run --sample 512KiB` to estimate within 10%
(collector/tests/sample_e2e.rs states their relative standard errors).

- records(): 400,000 objects of 1,033 bytes (413 MB), kept to exit: the leak site, and half
  of the peak. Small blocks: each is sampled with probability p = 1 - exp(-1033 / 524288).
- arrays(): 16 arrays of 3 MiB (48 MiB), alive at the peak and freed before exit.

`--free-all` frees everything before exit: then nothing of either site is left.
"""

import sys


def records():
    return [bytes(1000) for _ in range(400_000)]  # RECORDS


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
