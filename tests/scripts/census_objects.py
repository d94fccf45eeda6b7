"""Many instances of one class, an unbounded lru_cache, then a mark (census) and exit.

`census_objects.py slots` defines the same class with __slots__, to check the __slots__
saving memlens estimates from a run without them; `census_objects.py linger` sleeps 0.3 s
before exit, so that a census every 0.05 s comes however fast the rest ran.
"""
import functools
import sys
import time

import memlens

N = 100_000

if "slots" in sys.argv:

    class Point:
        __slots__ = ("x", "y", "label")

        def __init__(self, x, y):
            self.x = x
            self.y = y
            self.label = None

else:

    class Point:
        def __init__(self, x, y):
            self.x = x
            self.y = y
            self.label = None


@functools.lru_cache(maxsize=None)
def square_row(n):
    return [n * n] * 8


def build():
    return [Point(i, -i) for i in range(N)]  # POINTS


points = build()
for i in range(5000):
    square_row(i)
memlens.mark("built")
print(len(points))
if "linger" in sys.argv:
    time.sleep(0.3)
