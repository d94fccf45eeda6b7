"""Known allocation sites for `memlens export` (collector/tests/export_e2e.rs): a thread named
"loader" keeps 12 MiB; after the marker "loaded" the main thread builds a 40 MiB index (the
peak: 52 MiB) and drops it; after "built" it churns 30 x 1 MiB and keeps an 8 MiB cache until
exit (leaks: 12 + 8 MiB)."""
import threading

import memlens

MiB = 1024 * 1024
KEPT = []


def load():
    KEPT.append(bytearray(12 * MiB))  # LOAD_LINE


def build_index():
    index = bytearray(40 * MiB)  # INDEX_LINE
    return len(index)


def churn():
    total = 0
    for _ in range(30):
        total += len(bytearray(MiB))  # CHURN_LINE
    return total


def remember():
    KEPT.append(bytearray(8 * MiB))  # CACHE_LINE


def main():
    loader = threading.Thread(target=load, name="loader")
    loader.start()
    loader.join()
    memlens.mark("loaded")
    build_index()  # BUILD_CALL
    memlens.mark("built")
    churn()
    remember()


main()  # MAIN_CALL
