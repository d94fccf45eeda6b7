"""A long-running "service" for `memlens attach`: prints one line per tick, keeps a little
of each tick's work (a leak) and drops the rest, and exits with code 7 after TICKS ticks
(first argument, default 40) or, with "idle" as second argument, first waits without running
Python code or allocating (blocked in one call) for that many seconds (then, given a third
argument, runs that many ticks). A second thread loops
in one function, calling no Python function, for as long as the ticks last. The last line
says whether CPython's allocators and frame-evaluation function, and the number of threads,
are those it started with (after the spinning thread started)."""
import ctypes
import os
import sys
import threading
import time


class Allocator(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("ctx", "malloc", "calloc", "realloc", "free")]


def hooks():
    """The raw, mem and object allocators, the interpreter's frame-evaluation function, and
    the process's threads."""
    found = [len(os.listdir("/proc/self/task"))]
    for domain in range(3):
        a = Allocator()
        ctypes.pythonapi.PyMem_GetAllocator(domain, ctypes.byref(a))
        found.append((a.ctx, a.malloc, a.free))
    api = ctypes.pythonapi
    api.PyInterpreterState_Get.restype = ctypes.c_void_p
    api._PyInterpreterState_GetEvalFrameFunc.restype = ctypes.c_void_p
    api._PyInterpreterState_GetEvalFrameFunc.argtypes = [ctypes.c_void_p]
    found.append(api._PyInterpreterState_GetEvalFrameFunc(api.PyInterpreterState_Get()))
    return found


stopping = False


def spin():
    held = []
    while not stopping:
        held.append(bytearray(1000))  # THREAD
        if len(held) > 100:
            held.clear()
        time.sleep(0.005)


TICKS = int(sys.argv[1]) if len(sys.argv) > 1 else 40
if len(sys.argv) > 2 and sys.argv[2] == "idle":
    at_start = hooks()
    print("waiting", flush=True)
    threading.Event().wait(TICKS)
    print("woke", flush=True)
    if len(sys.argv) <= 3:
        print("hooks", "as at start" if hooks() == at_start else "changed", flush=True)
        sys.exit(7)
    # Then as many ticks as the third argument says.
    TICKS = int(sys.argv[3])

spinner = threading.Thread(target=spin, name="spinner")
spinner.start()
at_start = hooks()
kept = []


def handle(n):
    scratch = [bytearray(4096) for _ in range(64)]  # SCRATCH
    kept.append(bytearray(16384))  # KEEP
    return len(scratch)


for n in range(1, TICKS + 1):
    handle(n)
    print("tick", n, flush=True)
    time.sleep(0.05)
print("hooks", "as at start" if hooks() == at_start else "changed", flush=True)
stopping = True
spinner.join()
sys.exit(7)
