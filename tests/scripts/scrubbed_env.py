"""Children started with an environment of the program's choosing, without memlens's
variables: `subprocess.run(env=...)`, `os.posix_spawn(..., env)` and a fork that calls
`os.execve(..., env)`. Each builds 6 MiB at line 1 of its code and prints the variable the
program gave it (collector/tests/follow_e2e.rs)."""
import os
import subprocess
import sys

CODE = "block = bytearray(6 << 20); import os; print('{how}', os.environ['ONLY'], len(block))"


def child(how):
    return [sys.executable, "-c", CODE.format(how=how)]


subprocess.run(child("subprocess"), env={"ONLY": "1"}, check=True)
pid = os.posix_spawn(sys.executable, child("posix_spawn"), {"ONLY": "2"})
os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    os.execve(sys.executable, child("execve"), {"ONLY": "3"})
os.waitpid(pid, 0)
