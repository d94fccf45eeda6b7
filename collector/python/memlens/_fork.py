"""``os.fork`` without CPython 3.12+'s warning about memlens's own thread.

From 3.12, ``os.fork()`` (and ``os.forkpty()``) warns ``DeprecationWarning: This process
(pid=N) is multi-threaded, use of fork() may lead to deadlocks in the child`` when the process
has more than one thread, counting every thread /proc knows. A traced process has one more:
the tracer's drain thread (``memlens-drain``), and with interval censuses the census thread.
So a single-threaded program that forks, or pytest running its tests, would warn under
memlens and not without it. :func:`install` wraps both functions: the warning is kept (and
said at the caller's line, as CPython says it) when the program's own threads are more than
one, and dropped when only memlens's made the count.
"""
import os

_DRAIN_THREAD = b"memlens-drain"


def install():
    """Wraps ``os.fork`` and ``os.forkpty``, once per process (on 3.12 and later)."""
    if getattr(os.fork, "_memlens", False):
        return
    os.fork = _quiet(os.fork)
    if hasattr(os, "forkpty"):
        os.forkpty = _quiet(os.forkpty)


def _quiet(real):
    def fork():
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            # Caught wherever the filters would send it: said again below at the caller's
            # line, where the program's filters decide as they would without memlens.
            warnings.simplefilter("always", DeprecationWarning)
            result = real()
        for w in caught:
            if _about_threads(w) and _program_threads() <= 1:
                continue
            warnings.warn(w.message, stacklevel=2)
        return result

    fork.__name__, fork.__qualname__, fork.__doc__ = real.__name__, real.__qualname__, real.__doc__
    fork._memlens = True
    return fork


def _about_threads(w):
    return w.category is DeprecationWarning and "is multi-threaded, use of" in str(w.message)


def _program_threads():
    """The process's threads as CPython counts them, less memlens's own."""
    import memlens

    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 2  # Not known: the warning stays.
    n = 0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/comm", "rb") as f:
                n += f.read().strip() != _DRAIN_THREAD
        except OSError:
            pass
    census = memlens._census_thread
    return n - (census is not None and census.is_alive())
