"""Reference-cycle churn: pairs of objects that point at each other, dropped at once, so
only the cycle collector can free them."""
import gc


class Node:
    def __init__(self):
        self.other = None


made = 0
for i in range(200_000):
    a, b = Node(), Node()
    a.other, b.other = b, a
    made += 2
print(made, gc.get_count())
