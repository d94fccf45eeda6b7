"""Objects whose classes would run code if a census touched them the wrong way: a Python
`__sizeof__` (pandas computes deep memory usage there), a metaclass with `__hash__`,
`__eq__` and `__getattribute__`, an lru_cache whose keys and results have such a
`__sizeof__`. Each hook notes that it ran; the script prints what ran after two censuses
(a mark and the exit one prints nothing more: the exit census follows the print)."""
import functools
import sys

import memlens

ran = []


class Meta(type):
    def __hash__(cls):
        ran.append("metaclass __hash__")
        return 1

    def __eq__(cls, other):
        ran.append("metaclass __eq__")
        return cls is other

    def __getattribute__(cls, name):
        if name not in ("__name__", "__init__", "__new__", "__call__", "__dict__", "__mro__"):
            ran.append(f"metaclass __getattribute__({name})")
        return super().__getattribute__(name)


class Frame(metaclass=Meta):
    def __init__(self, i):
        self.values = list(range(i % 50))

    def __sizeof__(self):
        ran.append("__sizeof__")
        return 10**9


class Row(list):
    def __sizeof__(self):
        ran.append("list subclass __sizeof__")
        return 10**9


@functools.lru_cache(maxsize=None)
def frame_for(i):
    return Frame(i)


frames = [Frame(i) for i in range(20_000)]  # FRAMES_LINE
rows = [Row([i]) for i in range(5_000)]
cached = [frame_for(i) for i in range(300)]


def counter(n):
    yield from range(n)


# Generators: their type has an item size but no ob_size; the layout formula misreads them.
generators = [counter(i) for i in range(100)]
ran.clear()
memlens.mark("objects built")
print("ran:", sorted(set(ran)), file=sys.stderr)
