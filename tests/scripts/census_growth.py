"""Objects made between two markers (the viewer's census and insights panels, `memlens census
--growth`): 1,000 `Order` instances exist at the marker "ready"; 20,000 more and an unbounded
lru_cache of 3,000 entries are made before the marker "loaded"."""
import functools

import memlens


class Order:
    def __init__(self, i):
        self.id = i
        self.items = None


@functools.lru_cache(maxsize=None)
def price(n):
    return [n] * 4  # PRICE


ORDERS = [Order(i) for i in range(1_000)]  # FIRST
memlens.mark("ready")
ORDERS += [Order(i) for i in range(20_000)]  # MORE
for i in range(3_000):
    price(i)
memlens.mark("loaded")
print(len(ORDERS))
