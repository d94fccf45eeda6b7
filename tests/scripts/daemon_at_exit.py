"""A double-fork daemon whose first fork comes as the program exits: the program forks and
exits at once; its child starts a session of its own, forks the daemon and exits; the daemon
allocates 10 MiB and outlives the program. Run by collector/tests/follow_e2e.rs."""
import os
import sys
import time


def daemon():
    keep = bytearray(10 * 1024 * 1024)  # DAEMON_LINE
    time.sleep(1.0)
    return keep


if os.fork() > 0:
    print("parent exits")
    sys.stdout.flush()
    sys.exit(0)
os.setsid()
if os.fork() > 0:
    os._exit(0)
daemon()
