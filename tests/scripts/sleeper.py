"""Allocates, then sleeps until a signal ends it."""
import time

KEPT = bytearray(20 * 1024 * 1024)  # SLEEP_ALLOC_LINE
print("ready", flush=True)
time.sleep(60)
