"""Two versions of one program for `memlens diff`: VARIANT=head builds a bigger index
(60 MiB instead of 40 MiB at its peak) and keeps an 8 MiB cache alive until exit."""
import os

HEAD = os.environ.get("VARIANT") == "head"
CACHE = []


def build_index():
    index = bytearray((60 if HEAD else 40) * 1024 * 1024)  # INDEX_LINE
    return len(index)


def remember_results():
    if HEAD:
        CACHE.append(bytearray(8 * 1024 * 1024))  # CACHE_LINE


def main():
    build_index()
    remember_results()


main()
