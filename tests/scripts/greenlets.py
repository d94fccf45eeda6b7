"""Two greenlets switch back and forth, each keeping what it allocates (a_side 5,000 x 1 KB,
b_side 5,000 x 3 KB); then, after they stopped, a 10 MB block 51 frames down from
<module>. Every switch swaps the thread's frames without returning through memlens's
hooks: each block must be charged to the stack of the greenlet that made it, and the
stack must be right again once they stopped."""
import greenlet


def a_side(n):
    keep = []
    for i in range(n):
        keep.append(bytearray(1000))  # A_LINE
        gb.switch()
    return keep


def b_side(n=5000):
    keep = []
    while True:
        keep.append(bytearray(3000))  # B_LINE
        if len(keep) >= n:
            return keep
        ga.switch()


ga = greenlet.greenlet(a_side)
gb = greenlet.greenlet(b_side)
ra = ga.switch(5000)
print(type(ra).__name__)


def deep(k):
    if k == 0:
        return bytearray(10**7)  # DEEP_LINE
    return deep(k - 1)


x = deep(50)  # CALL_LINE
print("done")
