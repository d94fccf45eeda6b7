"""memlens: the Python side of the memlens memory profiler.

Run a program under the profiler with the ``memlens run script.py`` command. From inside
a traced program:

- ``memlens.mark(label)`` puts a labelled marker on the recording's timeline and takes an
  object census there (a no-op when the program is not being traced, so it can stay in
  production code).
- ``with memlens.span(name):`` marks a block (``begin: NAME`` / ``end: NAME`` markers);
  ``memlens spans FILE`` then lists the memory each block used.
- ``memlens.is_tracing()`` tells whether this process is being traced.

Also in this package: a pytest plugin (``pytest --memlens``, module ``memlens.pytest_plugin``)
and an IPython extension (``%load_ext memlens``, then the ``%%memlens`` cell magic).

The tracer itself is ``libmemlens_tracer.so``, preloaded by ``memlens run`` and driven here
through ``ctypes.PyDLL`` (which keeps the GIL held during calls, as the tracer requires).
"""

import atexit
import ctypes
import gc
import os
import threading
import time

__all__ = ["mark", "span", "is_tracing", "record"]

_lib = None
_gc_start_ns = 0
# Object censuses (see _census.py): on unless MEMLENS_CENSUS=0; an interval thread when
# MEMLENS_CENSUS_INTERVAL (seconds) is set.
_census_on = False
_census_thread = None


def _load(path):
    global _lib
    if _lib is None:
        lib = ctypes.PyDLL(path)
        lib.memlens_start.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.memlens_start.restype = ctypes.c_int
        lib.memlens_last_error.restype = ctypes.c_char_p
        lib.memlens_stop.restype = None
        lib.memlens_thread_start.argtypes = [ctypes.py_object, ctypes.c_char_p]
        lib.memlens_thread_start.restype = None
        lib.memlens_mark.argtypes = [ctypes.c_char_p]
        lib.memlens_mark.restype = None
        lib.memlens_gc.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64]
        lib.memlens_gc.restype = None
        lib.memlens_active.restype = ctypes.c_int
        lib.memlens_pause.argtypes = [ctypes.c_int]
        lib.memlens_pause.restype = None
        lib.memlens_census_begin.argtypes = [ctypes.c_int, ctypes.c_char_p]
        lib.memlens_census_begin.restype = None
        u64, cp, size = ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t
        lib.memlens_census_type.argtypes = [u64, u64, u64, u64, u64, cp, cp, cp, size, cp, size]
        lib.memlens_census_type.restype = None
        lib.memlens_census_cache.argtypes = [u64, ctypes.c_int64, u64, u64, u64, cp, cp]
        lib.memlens_census_cache.restype = None
        lib.memlens_census_end.argtypes = [u64, u64, ctypes.c_uint32]
        lib.memlens_census_end.restype = None
        _lib = lib
    return _lib


def _thread_profile(frame, event, arg):
    # Runs once per new `threading` thread, as its first profile event: hands the
    # thread over to the C profiler, seeding its shadow stack from `frame`.
    lib = _lib
    if lib is not None:
        name = threading.current_thread().name.encode("utf-8", "replace")
        lib.memlens_thread_start(frame, name)


def _gc_callback(phase, info):
    global _gc_start_ns
    if phase == "start":
        _gc_start_ns = time.monotonic_ns()
    elif _lib is not None:
        _lib.memlens_gc(
            info.get("generation", 0),
            max(0, time.monotonic_ns() - _gc_start_ns),
            info.get("collected", 0),
            info.get("uncollectable", 0),
        )


def _take_census(trigger, label=""):
    if _census_on and _lib is not None and _lib.memlens_active():
        from memlens import _census as c

        try:
            c.census(_lib, trigger, label)
        except Exception:  # noqa: BLE001 - a census must never break the program
            pass


def _start(tracer_path, fd, native, census=True, census_interval=0.0):
    """Starts tracing into the parent's pipe `fd` (called by the bootstrap)."""
    global _census_on, _census_thread
    lib = _load(tracer_path)
    if lib.memlens_start(fd, 1 if native else 0) != 0:
        raise RuntimeError("memlens: " + lib.memlens_last_error().decode("utf-8", "replace"))
    threading.setprofile(_thread_profile)
    gc.callbacks.append(_gc_callback)
    atexit.register(_stop)
    _census_on = census
    if census:
        # Imported untraced: the census module is memlens's memory, not the program's.
        lib.memlens_pause(1)
        try:
            from memlens import _census as c
        finally:
            lib.memlens_pause(0)

        _take_census(c.START)
        if census_interval > 0:
            _census_thread = c.IntervalThread(lib, census_interval)
            _census_thread.start()


def _stop():
    global _census_on
    if _lib is not None:
        if _census_thread is not None:
            _census_thread.stop()
        from memlens import _census as c

        _take_census(c.EXIT)
        _census_on = False
        _lib.memlens_stop()
        try:
            gc.callbacks.remove(_gc_callback)
        except ValueError:
            pass


def is_tracing():
    """True when this process is being traced by memlens."""
    return _lib is not None and bool(_lib.memlens_active())


def mark(label):
    """Puts a marker named `label` on the recording's timeline (no-op when not tracing)."""
    if _lib is not None:
        _lib.memlens_mark(str(label).encode("utf-8", "replace"))
        from memlens import _census as c

        _take_census(c.MARK, label)


def _delimiter(label):
    """A bare marker: spans' begin/end delimit memory, so they skip anything else `mark`
    may do at a marker."""
    if _lib is not None:
        _lib.memlens_mark(str(label).encode("utf-8", "replace"))


class span:
    """``with memlens.span("load"):`` -- the block's memory, listed by ``memlens spans FILE``.

    Writes the markers ``begin: NAME`` and ``end: NAME`` (no-ops when not tracing). Spans
    should not overlap: a span that starts inside another one ends the outer one's figures.
    """

    def __init__(self, name):
        self.name = str(name)

    def __enter__(self):
        _delimiter("begin: " + self.name)
        return self

    def __exit__(self, *exc):
        _delimiter("end: " + self.name)
        return False


def load_ipython_extension(ipython):
    """``%load_ext memlens``: registers the ``%%memlens`` cell magic."""
    from memlens.ipython import load_ipython_extension as load

    load(ipython)


class record:
    """``with memlens.record("out.memlens"): ...`` -- in-process tracing (not yet available)."""

    def __init__(self, path, native=False):
        raise NotImplementedError(
            "memlens.record() is not implemented yet; run the program under "
            "`memlens run script.py` instead"
        )
