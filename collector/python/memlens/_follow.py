"""Following the descendants of a program run by ``memlens run`` (unless ``--no-follow``).

``memlens run`` puts ``MEMLENS_FOLLOW`` (a directory with the recorder's ``ctrl`` and
``records`` sockets) and ``MEMLENS_FOLLOW_OPTIONS`` in the program's environment, which its
children inherit along with the preloaded tracer and the ``memlens`` package on PYTHONPATH:

- a Python started by exec (multiprocessing's spawn, ``subprocess.run([sys.executable,
  ...])``) runs the ``sitecustomize`` next to this package at start-up, which calls
  :func:`start` before the program's own code;
- a forked child (multiprocessing's fork and forkserver, ``os.fork``) runs :func:`after_fork`
  (registered with ``os.register_at_fork``): the tracer stopped in the child at the fork
  (the parent's pipe is not the child's), and starts again on sockets of its own.

Each connects its ``ctrl`` socket first (how the process ends, as for the program itself),
then ``records``; the recorder pairs them by the connecting pid. A child whose recorder is
gone (it outlived the program) simply runs untraced. A process that will not be traced is
still a process of the recording, its memory sampled, and says why: a ``python -E``/``-I``/
``-S`` (which skip ``sitecustomize``) is announced by the preloaded tracer
(collector/tracer/src/follow.rs), one started with an environment without ``MEMLENS_FOLLOW``
(``subprocess.run(..., env={})``) is found by the recorder (collector/src/follow.rs).
"""

import os
import sys

from memlens import _protocol as p

_registered = False


def _options():
    opts = dict(kv.partition("=")[::2] for kv in os.environ.get(p.ENV_FOLLOW_OPTIONS, "").split(";") if kv)
    return {
        "native": opts.get("native", "1") == "1",
        "census": opts.get("census", "1") == "1",
        "census_interval": float(opts.get("census_interval") or 0),
        "census_max_objects": int(opts.get("census_max_objects") or 0),
        "sample_bytes": int(opts.get("sample_bytes") or 0),
        "native_stacks": opts.get("native_stacks") == "1",
    }


def following():
    """Whether this process's descendants are to be followed."""
    return bool(os.environ.get(p.ENV_FOLLOW))


def register():
    """Follows the children this process forks (once per process: forked children inherit
    the registration)."""
    global _registered
    if not _registered and following():
        os.register_at_fork(after_in_child=after_fork)
        _registered = True


def start(at_exit=True, frame=None):
    """Traces this process into the recording of the program that started it, the calling
    thread's stack starting at `frame` (and its callers; None: empty, as in a new Python).
    Does nothing if the recorder cannot be reached."""
    import socket

    import memlens

    directory = os.environ.get(p.ENV_FOLLOW)
    tracer = os.environ.get(p.ENV_TRACER)
    if not directory or not tracer:
        return
    # Said first, as soon as connected (a pool may terminate an idle worker at once): the
    # interpreter, as platform.python_version() and python_implementation() give it, and
    # the command line (a forked child may exec another program before the recorder looks).
    implementation = {"cpython": "CPython", "pypy": "PyPy"}.get(sys.implementation.name,
                                                                sys.implementation.name)
    try:
        with open("/proc/self/cmdline", "rb") as f:
            command = f.read(p.MAX_COMMAND_LINE)
    except OSError:
        command = b""
    line = p.child_line(sys.version.split()[0], implementation, os.getppid(), command)
    socks = []
    try:
        for name, kind in (("ctrl", socket.SOCK_SEQPACKET), ("records", socket.SOCK_STREAM)):
            s = socket.socket(socket.AF_UNIX, kind)
            socks.append(s)
            s.connect(os.path.join(directory, name))
        socks[1].sendall(line.encode("ascii", "replace"))
    except OSError:
        for s in socks:
            s.close()
        return
    ctrl, records = (s.detach() for s in socks)
    o = _options()
    memlens._watch_end(tracer, ctrl)
    memlens._start(tracer, records, o["native"], o["census"], o["census_interval"],
                   o["census_max_objects"], o["sample_bytes"], at_exit=at_exit, frame=frame,
                   start_census=False, native_stacks=o["native_stacks"])


def after_fork():
    """In a forked child of a traced process: start again, as a process of its own."""
    import memlens

    if memlens._lib is None:
        return
    memlens._forget_session()
    import sys

    # The parent's atexit registration came along with the fork. The child goes on in the
    # frame that called os.fork (this hook runs inside that call).
    start(at_exit=False, frame=sys._getframe(1))
