"""Allocates 50 MiB, waits for the tracer to drain, then SIGKILLs itself."""
import os
import time

KEPT = bytearray(50 * 1024 * 1024)  # KILL_ALLOC_LINE
time.sleep(0.2)
os.kill(os.getpid(), 9)
