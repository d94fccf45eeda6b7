"""Says its pid, allocates a marker block, then exits with code 7 once a line comes on stdin:
for tests that must act (stop the recorder) before the program ends."""
import os
import sys

print(f"started {os.getpid()}", flush=True)
marker = bytearray(100_000)  # EXITS_MARKER_LINE
sys.stdin.readline()
print("exiting", flush=True)
sys.exit(7)
