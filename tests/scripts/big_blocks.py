"""Big blocks C code mallocs (ctypes calls libc's malloc and calloc): their untouched pages
are reserved address space, not heap; their touched pages are heap at the line that
allocated them, also for a block touched and freed between two of the tracer's looks."""
import ctypes
import time

import memlens

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.calloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
MIB = 1 << 20

block = libc.malloc(64 * MIB)  # MALLOC_LINE
zeroed = libc.calloc(1, 32 * MIB)  # CALLOC_LINE
memlens.mark("allocated")
ctypes.memset(block, 1, 16 * MIB)
time.sleep(0.2)  # the tracer looks at residency about every 50 ms
memlens.mark("touched")
libc.free(block)
libc.free(zeroed)
time.sleep(0.1)
memlens.mark("freed")
brief = libc.malloc(48 * MIB)  # BRIEF_LINE
ctypes.memset(brief, 1, 48 * MIB)
libc.free(brief)
