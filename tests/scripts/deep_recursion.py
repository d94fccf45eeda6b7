"""Recurses DEPTH deep and keeps 1 MiB allocated at the bottom: under memlens it must go as
deep as without (as far as the thread's C stack allows), and past that raise RecursionError.

Usage: deep_recursion.py DEPTH [--default-limit] [--thread-stack BYTES] [--greenlet]
       deep_recursion.py deepcopy
       deep_recursion.py yield-from DEPTH
       deep_recursion.py nested-repr DEPTH

--greenlet imports greenlet first (under memlens, the recursion then stays on the thread's
own stack).
"""
import copy
import sys
import threading

KEPT = []


def rec(k):
    if k == 0:
        KEPT.append(bytearray(1024 * 1024))  # DEEP_LINE
        return
    rec(k - 1)


def rec_then(k, f):
    """f() under `k` more frames."""
    if k == 0:
        return f()
    return rec_then(k - 1, f)


def chain(k):
    """A chain of `k` generators, each delegating to the next (`yield from`), the last
    raising ValueError after its first item."""
    if k == 0:
        yield 1
        raise ValueError("bottom")
    yield from chain(k - 1)


def in_thread(depth, stack_size):
    """rec(depth) in a thread with a stack of `stack_size` bytes; its exception re-raised."""
    threading.stack_size(stack_size)
    failed = []

    def run():
        try:
            rec(depth)
        except RecursionError as e:
            failed.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if failed:
        raise failed[0]


def main(args):
    if args[0] == "deepcopy":
        nested = []
        for _ in range(400):
            nested = [nested]
        copy.deepcopy(nested)
        print("ok deepcopy")
        return
    if args[0] == "nested-repr":
        # C code recursing at the bottom of a deep recursion: repr of a list nested far
        # deeper than any C stack allows.
        sys.setrecursionlimit(1_000_000)
        nested = []
        for _ in range(300_000):
            nested = [nested]

        def bottom():
            try:
                repr(nested)
            except RecursionError:
                return "RecursionError"
            return "no error"

        print("nested-repr", rec_then(int(args[1]), bottom))
        return
    if args[0] == "yield-from":
        depth = int(args[1])
        sys.setrecursionlimit(depth + 100)
        try:
            for _ in chain(depth):
                pass
        except ValueError as e:
            print("ok yield-from", depth, e)
        return
    depth = int(args[0])
    if "--greenlet" in args:
        import greenlet  # noqa: F401
    if "--default-limit" not in args:
        sys.setrecursionlimit(depth + 100)
    if "--thread-stack" in args:
        in_thread(depth, int(args[args.index("--thread-stack") + 1]))
    else:
        rec(depth)
    print("ok", depth)


main(sys.argv[1:])
