"""An anonymous mapping of 64 MiB of which 16 MiB get touched, then unmapped, and one of
48 MiB written whole and unmapped at once: reserved address space is not heap; its resident
pages are, at the line that mapped it."""
import mmap
import time

import memlens

m = mmap.mmap(-1, 64 << 20)  # MAP_LINE
memlens.mark("mapped")
m.write(b"x" * (16 << 20))
time.sleep(0.2)  # the tracer looks at residency about every 50 ms
memlens.mark("touched")
m.close()
time.sleep(0.1)
memlens.mark("closed")
brief = mmap.mmap(-1, 48 << 20)  # BRIEF_LINE
for _ in range(48):
    brief.write(b"x" * (1 << 20))
brief.close()
