"""Replaces itself with a program that is not Python (os.execvp of sh), which exits with
status 4 a while later: `memlens run` returns 4 once the recording is complete."""
import os

x = bytearray(10**7)  # EXEC_SHELL_LINE
os.execvp("sh", ["sh", "-c", "sleep 0.3; exit 4"])
