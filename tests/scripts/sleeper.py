"""Allocates, then waits until a signal ends it (or its stdin closes, so that a
harness running every script with no input does not hang)."""
import sys
import time

KEPT = bytearray(20 * 1024 * 1024)  # SLEEP_ALLOC_LINE
# The tracer sends records out within a few ms; a kill sooner after an allocation may lose it.
time.sleep(0.05)
print("ready", flush=True)
sys.stdin.read()
