"""An object re-created from a free list: `rows` builds 2,000 short-lived row tuples,
which die together into CPython's tuple free list (it keeps up to 2,000 of each size);
`build_cache` then builds 2,000 tuples of the same size, made in those very blocks without
an allocation, and keeps them. They are the cache's memory, not the rows'. (The items are
all one empty list: nothing else is allocated on those lines but the lists holding the
tuples, and the tuples are tracked by the garbage collector, so the census sees them;
3.14 does not track a tuple of `None`s.)"""
import memlens

SHARED = []
ITEMS = [SHARED] * 2000


def rows():
    table = [(x, x, x) for x in ITEMS]  # ROWS
    return len(table)


def build_cache():
    return [(x, x, x) for x in ITEMS]  # CACHE


rows()
cache = build_cache()
memlens.mark("built")
print(len(cache))
