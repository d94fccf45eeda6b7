"""Objects of classes of every kind a census sizes differently, and what each class's
objects come to by the Python reference (`memlens._layout.sizer`, what the census computed
before its per-object work moved into the tracer), printed as JSON before a mark's census:
instances with a managed dict, __slots__, a Python __sizeof__ the census must not call (the
layout instead), and subclasses of list, dict, tuple and set, sized by CPython's own
__sizeof__ (which depends on each object's length or table)."""
import gc
import json
import sys

import memlens
from memlens import _layout


class Point:
    def __init__(self, i):
        self.x = i
        if i % 3 == 0:
            self.label = str(i)


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, i):
        self.a, self.b = i, [i]


class Lying:
    def __init__(self, i):
        self.items = list(range(i % 7))

    def __sizeof__(self):
        return 10**9


class Row(list):
    pass


class Bag(dict):
    pass


class Pair(tuple):
    pass


class Tags(set):
    pass


points = [Point(i) for i in range(3000)]
slotted = [Slotted(i) for i in range(2000)]
lying = [Lying(i) for i in range(1500)]
rows = [Row(range(i % 40)) for i in range(2500)]
bags = [Bag({str(k): k for k in range(i % 30)}) for i in range(1200)]
pairs = [Pair(range(i % 9)) for i in range(1000)]
tags = [Tags(range(i % 20)) for i in range(800)]
for r in rows[::5]:
    r.extend(range(13))  # over-allocated: list.__sizeof__ counts the capacity

kinds = (Point, Slotted, Lying, Row, Bag, Pair, Tags)
expected = {}
for o in gc.get_objects():
    t = type(o)
    if t in kinds:
        size, extra = _layout.sizer(t)
        count, total = expected.get(t.__qualname__, (0, 0))
        expected[t.__qualname__] = (count + 1, total + size(o) + extra)
print(json.dumps(expected))
sys.stdout.flush()
memlens.mark("sized")
