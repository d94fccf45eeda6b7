"""A program with profilers of its own: sys.setprofile and its removal, a trace function,
cProfile (a C profile function on 3.9-3.11), threading.setprofile. Under memlens's profile
stack mode each allocation must still be charged to its function's line, and the program's
profile function must get the events it gets without memlens."""
import cProfile
import sys
import threading

calls = []


def prof(frame, event, arg):
    if event == "call":
        calls.append(frame.f_code.co_name)


def tracer(frame, event, arg):
    return tracer


def alloc_a():
    out = []
    for _ in range(20000):
        out.append(bytearray(500))  # ALLOC_A
    return out


def alloc_b():
    out = []
    for i in range(40000):
        out.append(str(i) * 50)  # ALLOC_B
    return out


def alloc_c():
    out = []
    for _ in range(20000):
        out.append(bytearray(300))  # ALLOC_C
    return out


def alloc_d():
    out = []
    for _ in range(20000):
        out.append(bytearray(400))  # ALLOC_D
    return out


sys.setprofile(prof)
seen = [sys.getprofile() is prof]
a = alloc_a()
sys.setprofile(None)
seen.append(sys.getprofile() is None)
sys.settrace(tracer)
b = alloc_b()
sys.settrace(None)
profiler = cProfile.Profile()
profiler.enable()
c = alloc_c()
profiler.disable()
c += alloc_c()
threading.setprofile(prof)
d = []
worker = threading.Thread(target=lambda: d.append(alloc_d()), name="worker")
worker.start()
worker.join()
threading.setprofile(None)
seen.append(sys.getprofile() is None)
print(len(calls), calls.count("alloc_d"), seen, len(a), len(b), len(c), len(d[0]))
