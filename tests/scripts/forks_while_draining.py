"""Forks 40 children while other threads allocate without pause, so that forks come while
the tracer's drain thread is writing (and holds its locks), and while a thread that
allocates without the GIL (native code, through ctypes here) is in the middle of a record:
each child, which has only the forking thread, must trace on and end."""
import ctypes
import os
import threading

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
forking = True


def churn():
    for _ in range(150):
        [bytearray(100) for _ in range(2000)]


def native_churn():
    # Each call releases the GIL around malloc and free.
    while forking:
        libc.free(libc.malloc(100))


threads = [threading.Thread(target=f) for f in (churn, native_churn)]
for t in threads:
    t.start()
children = []
for _ in range(40):
    made = [bytearray(100) for _ in range(3000)]
    pid = os.fork()
    if pid == 0:
        kept = [bytearray(100) for _ in range(1000)]  # FORKED_CHILD_LINE
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
forking = False
for t in threads:
    t.join()
print("ok")
