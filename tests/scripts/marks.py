"""Timeline markers around a few forced garbage collections (the viewer's timeline test):
markers "loading" and "collected", and gc runs between them in a span "collecting"."""
import contextlib
import gc
import time

try:
    import memlens
except ImportError:  # run without memlens: the program still works, with no markers
    memlens = None


def mark(label):
    if memlens is not None:
        memlens.mark(label)


def span(name):
    return memlens.span(name) if memlens is not None else contextlib.nullcontext()


mark("loading")
KEEP = []
with span("collecting"):
    for i in range(3):
        cycle = []
        cycle.append(cycle)
        KEEP.append(bytearray(2 * 1024 * 1024))
        gc.collect()
        time.sleep(0.01)
mark("collected")
time.sleep(0.01)
