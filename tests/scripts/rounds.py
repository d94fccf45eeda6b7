"""Allocates without a pause, for the signal tests: each round builds a list of fresh objects
(the tracer's hooks run nearly all the time, so a signal likely lands in the middle of one)
and a marker block at a known line, then says which round it finished. Runs ROUNDS rounds
and says "done", or until it is killed.

Usage: rounds.py [ROUNDS]"""
import os
import sys

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else None
print(f"started {os.getpid()}", flush=True)
done = 0
while rounds is None or done < rounds:
    churn = [object() for _ in range(2000)]
    marker = bytearray(100_000)  # ROUNDS_MARKER_LINE
    done += 1
    print(done, flush=True)
print("done", flush=True)
