"""Two forked children that hold MIB MiB each at the same moment (they wait for each
other), whatever the machine's load: the heap of all processes together is the parent's
plus 2 x MIB. Usage: family_total.py MIB"""
import multiprocessing as mp
import sys


def hold(mib, ready, go):
    block = bytearray(mib * 1024 * 1024)  # TOTAL_HOLD_LINE
    ready.put(len(block))
    go.wait()


if __name__ == "__main__":
    mib = int(sys.argv[1])
    ctx = mp.get_context("fork")
    ready, go = ctx.Queue(), ctx.Event()
    children = [ctx.Process(target=hold, args=(mib, ready, go)) for _ in range(2)]
    for c in children:
        c.start()
    for _ in children:
        ready.get()
    go.set()
    for c in children:
        c.join()
