"""Replaces memlens's profile function mid-call (as cProfile or sys.setprofile do):
the shadow stack goes stale but the program must run on unharmed."""
import gc
import sys


def inner():
    return bytearray(5 * 1024 * 1024)


def outer():
    sys.setprofile(None)
    return inner()


KEEP = [outer()]
for i in range(20000):
    KEEP.append(bytearray(100 + i % 100))
    if i % 1000 == 0:
        KEEP = KEEP[:10]
        gc.collect()
print("survived")
