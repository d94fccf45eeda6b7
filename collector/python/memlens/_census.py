"""The object census: live gc-tracked objects by type, sent to the parent through the tracer.

A census runs at start, at each ``memlens.mark()``, at exit and every ``--census-interval``
seconds. For every type it sends the number of live objects, the sum of their
``sys.getsizeof`` and the allocation address of each (``_layout.alloc_offset``), which the
parent matches against live traced allocations to find where they were made. For classes
without ``__slots__`` it samples a few instances: how many attributes they have and where
their attribute storage is, so the parent can say what ``__slots__`` would save. It also
reports every live ``functools.lru_cache`` wrapper.

The census's own allocations and frees are not recorded (``memlens_pause``), the garbage
collector is held off while it runs, and its big temporaries are dropped after recording
resumes (their frees are of blocks the recording never saw, so they change nothing).
"""

import functools
import gc
import sys
import threading
import time
from array import array

from memlens import _layout

START, MARK, INTERVAL, EXIT = 0, 1, 2, 3

# Addresses per tracer call: the wire record carries at most 512 KiB of them.
_BATCH = 65536 - 8
# Instances of a class without __slots__ sampled for their attribute storage, and how
# many instances a class needs before it is sampled at all.
_DICT_SAMPLE = 200
_DICT_MIN_COUNT = 100

_lock = threading.Lock()
_lru_type = getattr(functools, "_lru_cache_wrapper", None)


def _name(tp, attr):
    try:
        return str(getattr(tp, attr, "")).encode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - a census must never break the program
        return b"?"


def _sizes(members):
    getsizeof = sys.getsizeof
    try:
        return sum(map(getsizeof, members))
    except Exception:  # noqa: BLE001 - a __sizeof__ that raises
        total = 0
        for o in members:
            try:
                total += getsizeof(o)
            except Exception:  # noqa: BLE001
                pass
        return total


def _cache_bytes(wrapper, unbounded):
    """Shallow size of the cache's table, keys and results (and, for a bounded cache, its
    list links), found through the wrapper's gc traversal: an unbounded cache's traversal
    reaches only its dict (key -> result); a bounded one's reaches every key and result,
    and its dict maps keys to the links."""
    getsizeof = sys.getsizeof
    skip = {id(type(wrapper)), id(getattr(wrapper, "__wrapped__", None))}
    d = getattr(wrapper, "__dict__", None)
    if d is not None:
        skip.add(id(d))
    total = 0
    for r in gc.get_referents(wrapper):
        if id(r) in skip or isinstance(r, type):
            continue
        total += getsizeof(r)
        if type(r) is dict:
            total += sum(map(getsizeof, r.values()))
            if unbounded:
                total += sum(map(getsizeof, r.keys()))
    return total


def _send_caches(lib, wrappers):
    for w in wrappers:
        try:
            info = w.cache_info()
            fn = getattr(w, "__wrapped__", w)
            lib.memlens_census_cache(
                info.currsize,
                -1 if info.maxsize is None else info.maxsize,
                info.hits,
                info.misses,
                _cache_bytes(w, info.maxsize is None),
                _name(fn, "__module__"),
                _name(fn, "__qualname__"),
            )
        except Exception:  # noqa: BLE001
            pass


def _send_type(lib, tp, members):
    offset = _layout.alloc_offset(tp)
    module = _name(tp, "__module__")
    qualname = _name(tp, "__qualname__")
    sampled = attrs = slots = 0
    storage = array("Q")
    if len(members) >= _DICT_MIN_COUNT and _layout.has_managed_dict(tp):
        # Evenly spread: instances made early can differ (a class's shared key table is
        # sized by its first instances).
        for o in members[:: max(1, len(members) // _DICT_SAMPLE)]:
            n = len(gc.get_referents(o)) - 1  # the traversal visits the type too
            sampled += 1
            attrs += n
            slots = max(slots, _layout.slots_instance_size(tp, n))
            _layout.attribute_storage(o, storage)
    total = len(members)
    for start in range(0, max(total, 1), _BATCH):
        part = members[start : start + _BATCH]
        addrs = array("Q", [id(o) - offset for o in part]).tobytes()
        first = start == 0
        st = storage.tobytes() if first else b""
        lib.memlens_census_type(
            len(part),
            _sizes(part),
            sampled if first else 0,
            attrs if first else 0,
            slots if first else 0,
            module,
            qualname,
            addrs,
            len(addrs),
            st,
            len(st),
        )


def census(lib, trigger, label=""):
    """Counts live objects by type and sends the result; returns its duration in ns."""
    with _lock:
        t0 = time.monotonic_ns()
        gc_was_on = gc.isenabled()
        gc.disable()
        lib.memlens_pause(1)
        objs = groups = None
        try:
            lib.memlens_census_begin(trigger, str(label).encode("utf-8", "replace"))
            objs = gc.get_objects()
            groups = {}
            for o in objs:
                t = type(o)
                g = groups.get(t)
                if g is None:
                    groups[t] = [o]
                else:
                    g.append(o)
            for tp, members in groups.items():
                _send_type(lib, tp, members)
            if _lru_type is not None:
                _send_caches(lib, groups.get(_lru_type, ()))
            n = len(objs)
            duration = time.monotonic_ns() - t0
            lib.memlens_census_end(n, duration, sys.getrecursionlimit())
        finally:
            lib.memlens_pause(0)
            # Dropped while recording: see the module doc.
            objs = groups = None
            if gc_was_on:
                gc.enable()
    return duration


class IntervalThread(threading.Thread):
    """Takes a census every `seconds` until `stop()`."""

    def __init__(self, lib, seconds):
        super().__init__(name="memlens-census", daemon=True)
        self._lib = lib
        self._seconds = seconds
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.wait(self._seconds):
            try:
                census(self._lib, INTERVAL)
            except Exception:  # noqa: BLE001
                return

    def stop(self):
        self._stop_event.set()
