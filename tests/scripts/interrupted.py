"""A program with KeyboardInterrupt cleanup, for the signal tests: prints its pid, holds
memory, and on the first SIGINT runs a cleanup that takes a while and exits 3. Further
SIGINTs during the cleanup are counted instead of cutting it short, and the count is
printed last, so a test sees how many times the signal was delivered."""
import os
import signal
import sys
import time

received = 0


def on_sigint(signum, frame):
    global received
    received += 1
    if received == 1:
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, on_sigint)
KEPT = bytearray(12 * 1024 * 1024)  # INTERRUPTED_ALLOC_LINE
try:
    # Let the tracer send the allocation out before anyone signals us.
    time.sleep(0.05)
    print(f"started {os.getpid()}", flush=True)
    time.sleep(30)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print("cleanup begins", flush=True)
    time.sleep(0.4)
    print("cleanup done", flush=True)
    print(f"SIGINT received {received} time(s)", flush=True)
    sys.exit(3)
