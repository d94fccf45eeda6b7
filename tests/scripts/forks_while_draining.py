"""Forks 40 children while another thread allocates without pause, so that forks come while
the tracer's drain thread is writing (and holds its locks): each child, which has only the
forking thread, must trace on and end."""
import os
import threading


def churn():
    for _ in range(150):
        [bytearray(100) for _ in range(2000)]


t = threading.Thread(target=churn)
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
t.join()
print("ok")
