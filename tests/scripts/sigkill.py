"""Allocates 50 MiB, waits for the tracer to drain, then SIGKILLs itself, inside a span
"doomed" (which never ends: the viewer draws it open, `memlens spans` says so)."""
import contextlib
import os
import time

try:
    import memlens
except ImportError:  # run without memlens: the program still works, with no span
    memlens = None

with memlens.span("doomed") if memlens is not None else contextlib.nullcontext():
    KEPT = bytearray(50 * 1024 * 1024)  # KILL_ALLOC_LINE
    time.sleep(0.2)
    os.kill(os.getpid(), 9)
