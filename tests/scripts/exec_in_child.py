"""A forked child that replaces itself with another Python (os.execv), which exits with 5;
the program waits for it."""
import os
import sys


def child():
    held = bytearray(2 * 1024 * 1024)  # EXEC_CHILD_LINE
    code = "x = bytearray(4 * 1024 * 1024); import sys; sys.exit(5)"
    os.execv(sys.executable, [sys.executable, "-c", code])
    return held


pid = os.fork()
if pid == 0:
    child()
_, status = os.waitpid(pid, 0)
print("child exited with", os.waitstatus_to_exitcode(status))
