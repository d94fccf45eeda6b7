"""Run by exec_self.py in its place (os.execv): allocates 20 MB in build(), exits with 7."""
import sys


def build():
    return [bytearray(2000) for _ in range(10000)]  # EXEC_AFTER_LINE


b = build()
print("ex2", sys.argv[1:], len(b))
sys.exit(7)
