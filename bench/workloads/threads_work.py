"""Four threads churning objects at once."""
import threading


def work(n):
    out = []
    for i in range(300_000):
        out.append({"i": i, "s": str(i)})
        if len(out) > 1000:
            out.clear()


threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
