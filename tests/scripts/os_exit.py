"""Allocates 30 MiB and immediately leaves with os._exit(3): no atexit handlers run."""
import os

KEPT = bytearray(30 * 1024 * 1024)  # EXIT_ALLOC_LINE
os._exit(3)
