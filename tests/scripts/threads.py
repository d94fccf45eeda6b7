"""Four named threads each allocate and keep a distinct amount: (i + 1) * 4 MiB."""
import threading

KEPT = {}


def work(i):
    KEPT[i] = bytearray((i + 1) * 4 * 1024 * 1024)  # THREAD_ALLOC_LINE


threads = [threading.Thread(target=work, args=(i,), name=f"worker-{i}") for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
