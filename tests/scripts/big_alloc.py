"""Allocates a known 100 MB at a known line (ALLOC_LINE), keeps 10 MB until exit."""
import sys

KEEP = []


def allocate_big():
    data = bytearray(100 * 1024 * 1024)  # ALLOC_LINE
    return len(data)


def keep_some():
    KEEP.append(bytearray(10 * 1024 * 1024))  # KEEP_LINE


def main():
    allocate_big()
    keep_some()
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
