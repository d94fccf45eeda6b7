"""Execs that fail leave the program as it was, traced on: one of no such program (which
memlens sees cannot run), one of an executable file that is no program (which it announces
to the recorder before the kernel refuses it), one looked up on PATH."""
import os
import stat
import tempfile

a = bytearray(3 * 1024 * 1024)  # EXEC_FAILS_BEFORE_LINE
try:
    os.execv("/nonexistent/program", ["/nonexistent/program"])
except OSError as e:
    print("exec failed:", e.errno, flush=True)
with tempfile.NamedTemporaryFile("wb", suffix=".bin", delete=False) as f:
    f.write(b"\0\1\2\3 not a program")
os.chmod(f.name, stat.S_IRWXU)
try:
    os.execv(f.name, [f.name, "arg"])
except OSError as e:
    print("exec of a non-program failed:", e.errno, flush=True)
finally:
    os.unlink(f.name)
try:
    os.execvp("memlens-no-such-program", ["memlens-no-such-program"])
except OSError as e:
    print("execvp failed:", e.errno, flush=True)
b = bytearray(5 * 1024 * 1024)  # EXEC_FAILS_AFTER_LINE
print("done", len(a) + len(b))
