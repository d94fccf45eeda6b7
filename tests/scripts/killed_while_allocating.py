"""Allocates without a pause until a signal kills it, for the signal tests: each round
builds a list of fresh objects (the tracer's hooks run nearly all the time, so the signal
likely lands in the middle of one) and a marker block at a known line, then says which
round it finished. Every marker of a round it said it finished must be in the recording."""
import os
import sys

print(f"started {os.getpid()}", flush=True)
rounds = 0
while True:
    churn = [object() for _ in range(2000)]
    marker = bytearray(100_000)  # KILLED_MARKER_LINE
    rounds += 1
    print(rounds, flush=True)
