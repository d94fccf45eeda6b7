"""Allocates, then waits until a signal ends it (or its stdin closes, so that a
harness running every script with no input does not hang)."""
import sys

KEPT = bytearray(20 * 1024 * 1024)  # SLEEP_ALLOC_LINE
print("ready", flush=True)
sys.stdin.read()
