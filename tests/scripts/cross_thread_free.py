"""Producer threads allocate, a consumer thread frees: with address reuse across
threads, the recording must still end with (almost) nothing live from the loop."""
import queue
import threading

Q = queue.Queue(maxsize=1000)
N = 20000


def produce():
    for i in range(N):
        item = bytearray(1000 + i % 50)  # PRODUCE_LINE
        Q.put(item)


def consume():
    for _ in range(2 * N):
        Q.get()


ps = [threading.Thread(target=produce, name=f"producer-{i}") for i in range(2)]
c = threading.Thread(target=consume, name="consumer")
for t in ps + [c]:
    t.start()
for t in ps + [c]:
    t.join()
