"""Says on stderr which standard streams it has: started with stdin and stdout closed (`<&-
>&-`), Python has none for them, under memlens as without it."""
import os
import sys

kept = [bytearray(1000) for _ in range(1000)]  # CLOSED_STDIO_LINE
os.write(2, ("stdin %r, stdout %r\n" % (sys.stdin, sys.stdout)).encode())
