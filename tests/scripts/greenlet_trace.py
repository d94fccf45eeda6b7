"""greenlet with a trace function of the program's own (set before and after the switches
start: memlens's must not drop it, nor be dropped by it), and greenlets in a thread of
their own: c_side keeps 1,000 x 2 KB, its thread's main greenlet 1,000 x 4 KB."""
import threading

import greenlet

seen = []


def mine(event, args):
    seen.append(event)


assert greenlet.gettrace() is None, greenlet.gettrace()
assert greenlet.settrace(mine) is None
assert greenlet.gettrace() is mine


def a_side(n):
    keep = []
    for i in range(n):
        keep.append(bytearray(1000))  # A_LINE
        gb.switch()
    return keep


def b_side(n=2000):
    keep = []
    while True:
        keep.append(bytearray(3000))  # B_LINE
        if len(keep) >= n:
            return keep
        ga.switch()


ga = greenlet.greenlet(a_side)
gb = greenlet.greenlet(b_side)
ga.switch(1000)
assert len(seen) >= 2000, len(seen)
# Set again mid-run, as gevent's monitor does: the program's replaces the program's.
assert greenlet.settrace(mine) is mine
gb.switch()
assert greenlet.settrace(None) is mine
assert greenlet.gettrace() is None
KEPT = []


def in_thread():
    def c_side():
        keep = []
        for i in range(1000):
            keep.append(bytearray(2000))  # C_LINE
            main.switch()
        KEPT.append(keep)

    main = greenlet.getcurrent()
    gc_ = greenlet.greenlet(c_side)
    out = []
    for i in range(1000):
        gc_.switch()
        out.append(bytearray(4000))  # THREAD_LINE
    gc_.switch()
    KEPT.append(out)


t = threading.Thread(target=in_thread)
t.start()
t.join()
print("done", len(seen))
