"""Replaces itself (os.execv, as re-launchers do) with another Python script,
exec_self_next.py, which exits with status 7: memlens traces both into one recording."""
import os
import sys

a = [bytearray(1000) for _ in range(5000)]  # EXEC_BEFORE_LINE
print("before exec", flush=True)
next_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exec_self_next.py")
os.execv(sys.executable, [sys.executable, next_script, "arg1"])
