"""Closes every file descriptor it did not open, as daemons do, then opens files (which get
the lowest free numbers), and puts a file on each number up to 19 with dup2: memlens's own
descriptors must neither be closed under the tracer nor written into the program's files.
Argument: a directory for the files."""
import os
import sys

directory = sys.argv[1]
before = [bytearray(1000) for _ in range(5000)]  # CLOSES_BEFORE_LINE
os.closerange(3, 4096)
logs = [open(os.path.join(directory, f"log{i}.txt"), "w") for i in range(4)]
after = [bytearray(1000) for _ in range(30000)]  # CLOSES_AFTER_LINE
for f in logs:
    f.write("hello\n")
    f.close()
target = os.open(os.path.join(directory, "dup.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
for n in range(3, 20):
    if n != target:
        os.dup2(target, n)
os.write(19, b"x")
for n in range(3, 20):
    os.close(n)
later = [bytearray(1000) for _ in range(10000)]  # CLOSES_LATER_LINE
print("ok")
