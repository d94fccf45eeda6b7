"""Allocates 8 MiB at the bottom of a 600-deep recursion and keeps it."""
import sys

sys.setrecursionlimit(5000)
KEPT = []


def down(n):
    if n == 0:
        KEPT.append(bytearray(8 * 1024 * 1024))  # DEEP_LINE
        return
    down(n - 1)


down(600)
