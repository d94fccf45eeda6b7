"""The object census: live gc-tracked objects by type, sent to the parent through the tracer.

A census runs at start, at each ``memlens.mark()``, at exit and every ``--census-interval``
seconds. For every type it sends the number of live objects, the sum of their shallow sizes
and the allocation address of each (``_layout.alloc_offset``), which the recorder matches
against live traced allocations to find where they were made. For classes without
``__slots__`` it samples a few instances: how many attributes they have and where their
attribute storage is, so the recorder can say what ``__slots__`` would save. It also
reports every live ``functools.lru_cache`` wrapper. The per-object work (grouping by
type, sizes, addresses) is the tracer's (``memlens_census_objects``,
``collector/tracer/src/census.rs``), which asks this module about each type once.

A census runs no code of the program: sizes come from the type's layout, or from CPython's
own ``__sizeof__`` for its containers, never from a class's ``__sizeof__`` (pandas computes
deep memory usage there: a census of a pandas program spent 20 µs per object in it); types
are grouped by identity and their names read through ``type``'s descriptors
(``_layout.size_method``, ``_layout.type_names``), so no ``__hash__``, ``__eq__`` or
metaclass attribute hook runs either.

The census's own allocations and frees are not recorded (``memlens_pause``), the garbage
collector is held off while it runs, and its big temporaries are dropped after recording
resumes (their frees are of blocks the recording never saw, so they change nothing).
"""

# Neither functools nor threading (with collections, 3-4 ms of every traced process's
# start, for a program that would not import them): their C parts, and threading only for
# an interval thread.
import _functools
import _thread
import gc
import sys
import time

from memlens import _layout


# Why a census is taken: the numbers of the Rust side's ``memlens_format::CensusTrigger``
# (collector/tests/contracts.rs checks that they agree). Plain ints: importing enum would
# cost every traced process about 1.4 ms.
TRIGGERS = {"start": 0, "mark": 1, "interval": 2, "exit": 3}
START, MARK, INTERVAL, EXIT = (TRIGGERS[t] for t in ("start", "mark", "interval", "exit"))

# Instances of a class without __slots__ sampled for their attribute storage, and how
# many instances a class needs before it is sampled at all.
_DICT_SAMPLE = 200
_DICT_MIN_COUNT = 100

# A census of more live objects than this looks at a sample of about this many (one object
# in every k, evenly spread), so that it holds the program no longer than a census of this
# many would (70-250 ns each, bench/census_cost.py): counts, sizes and sites are then
# estimates, and a marker on the timeline says so. `memlens run --census-max-objects`.
# (`memlens_wire::handshake::CENSUS_MAX_OBJECTS`, which `memlens run` uses: the contracts test
# checks that they agree.)
MAX_OBJECTS = 1_000_000
# The same in a sampled recording, whose figures are estimates anyway
# (`handshake::SAMPLED_CENSUS_MAX_OBJECTS`).
SAMPLED_MAX_OBJECTS = 10_000
max_objects = MAX_OBJECTS

_lock = _thread.allocate_lock()
_lru_type = getattr(_functools, "_lru_cache_wrapper", None)
_function = type(lambda: None)


def _text(s):
    return s.encode("utf-8", "replace") if isinstance(s, str) else b"?"


# The sizer of each type met during one census (by identity, see the module doc); cleared
# at the end, since a type's id can be reused once it is gone.
_sizers = {}


def _size(o):
    t = type(o)
    found = _sizers.get(id(t))
    if found is None:
        found = _sizers[id(t)] = _layout.sizer(t)
    return found[0](o) + found[1]


def _cache_bytes(wrapper, unbounded):
    """Shallow size of the cache's table, keys and results (and, for a bounded cache, its
    list links), found through the wrapper's gc traversal: an unbounded cache's traversal
    reaches only its dict (key -> result); a bounded one's reaches every key and result,
    and its dict maps keys to the links."""
    skip = {id(type(wrapper)), id(getattr(wrapper, "__wrapped__", None))}
    d = getattr(wrapper, "__dict__", None)
    if d is not None:
        skip.add(id(d))
    total = 0
    for r in gc.get_referents(wrapper):
        if id(r) in skip or isinstance(r, type):
            continue
        total += _size(r)
        if type(r) is dict:
            # dict.values()/keys() iterate the table: no code of the keys runs.
            total += sum(map(_size, r.values()))
            if unbounded:
                total += sum(map(_size, r.keys()))
    return total


def _function_names(fn):
    """(module, qualname) of the function a cache wraps; of its type for other callables,
    whose attributes could be the program's code."""
    if type(fn) is _function:
        return _text(fn.__module__), _text(fn.__qualname__)
    return tuple(map(_text, _layout.type_names(type(fn))))


def _send_caches(lib, wrappers):
    for w in wrappers:
        try:
            info = w.cache_info()
            module, qualname = _function_names(getattr(w, "__wrapped__", w))
            lib.memlens_census_cache(
                info.currsize,
                -1 if info.maxsize is None else info.maxsize,
                info.hits,
                info.misses,
                _cache_bytes(w, info.maxsize is None),
                module,
                qualname,
            )
        except Exception:  # noqa: BLE001
            pass


def _describe(tp, count, first):
    """What the tracer needs to count `count` objects of type `tp`, `first` among them (its
    ``memlens_census_objects``): how to size one (a C ``__sizeof__`` and extra bytes), the
    offset from ``id(obj)`` to its allocation, the type's names, and in how many instances
    one is to be sampled for its attribute storage (0: none)."""
    size, extra = _layout.size_method(tp, first)
    module, qualname = map(_text, _layout.type_names(tp))
    step = 0
    if count >= _DICT_MIN_COUNT and _layout.has_managed_dict(tp):
        # Evenly spread: instances made early can differ (a class's shared key table is
        # sized by its first instances).
        step = max(1, count // _DICT_SAMPLE)
    return size, extra, _layout.alloc_offset(tp), module, qualname, step


def _attributes(lib):
    """The tracer's callback for the instances of a type sampled by `_describe`: how many,
    their attributes in all, the size one would take with ``__slots__``, and the allocation
    addresses of their attribute storage (u64 each)."""

    def attributes(tp, sample):
        attrs = slots = 0
        storage = []
        for o in sample:
            n = len(gc.get_referents(o)) - 1  # the traversal visits the type too
            attrs += n
            slots = max(slots, _layout.slots_instance_size(tp, n))
            _layout.attribute_storage(lib, o, storage)
        addresses = b"".join(a.to_bytes(8, sys.byteorder) for a in storage)
        return len(sample), attrs, slots, addresses

    return attributes


def census(lib, trigger, label=""):
    """Counts live objects by type and sends the result; returns its duration in ns. Above
    `max_objects` live objects it looks at one object in `every`, evenly spread, says so
    with a marker, and scales its figures up."""
    with _lock:
        t0 = time.monotonic_ns()
        gc_was_on = gc.isenabled()
        gc.disable()
        lib.memlens_pause(1)
        objs = caches = None
        try:
            objs = gc.get_objects()
            n = len(objs)
            every = -(-n // max_objects) if n > max_objects else 1
            if every > 1:
                note = f"memlens: census of 1 object in {every} ({n:,} live objects)"
                lib.memlens_mark(note.encode())
            lib.memlens_census_begin(trigger, str(label).encode("utf-8", "replace"), every)
            # Grouped by the type's identity (hashing a class could run its metaclass's
            # __hash__), in the tracer; it also finds every lru_cache wrapper, even in a
            # sampled census.
            caches = lib.memlens_census_objects(objs, every, _describe, _attributes(lib),
                                                _lru_type)
            _send_caches(lib, caches)
            duration = time.monotonic_ns() - t0
            lib.memlens_census_end(n, duration, sys.getrecursionlimit())
        finally:
            lib.memlens_pause(0)
            # Dropped while recording: see the module doc.
            objs = caches = None
            _sizers.clear()
            if gc_was_on:
                gc.enable()
    return duration


def interval_thread(lib, seconds):
    """A daemon thread, not started, that takes a census every `seconds` until its
    ``stop()``."""
    import threading

    stopped = threading.Event()

    def run():
        while not stopped.wait(seconds):
            try:
                census(lib, INTERVAL)
            except Exception:  # noqa: BLE001
                return

    thread = threading.Thread(target=run, name="memlens-census", daemon=True)
    thread.stop = stopped.set
    return thread
