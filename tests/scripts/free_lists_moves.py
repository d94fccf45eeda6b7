"""Blocks that change hands through CPython's tuple free list: each round drops the last
round's 2,000 tuples (into the free list) and builds 2,000 more in those blocks, by `make`,
then `other`, then `make` twice, all called from one line. The tuples left are `make`'s:
on 3.13 its second round re-creates them in blocks charged to `other`, which must move
them back, and its third in blocks already charged to it, which changes nothing."""
SHARED = []
ITEMS = [SHARED] * 2000


def make():
    return [(x, x, x) for x in ITEMS]  # MAKE


def other():
    return [(x, x, x) for x in ITEMS]  # OTHER


kept = None
for build in (make, other, make, make):
    kept = None
    kept = build()
print(len(kept))
