"""CPython object layout facts the census needs, in one place.

Everything here depends on the interpreter version; the census (``_census.py``) only calls
these functions. Tested on CPython 3.11 (x86_64), where each answer was checked against the
allocation addresses and sizes memlens records (``collector/tests/run_e2e.rs``).

- A gc-tracked object's allocation starts before ``id(obj)``: first the pre-header, then the
  GC header (``PyGC_Head``, two pointers). The pre-header is two pointers (managed ``__dict__``
  and inline values) when the type has ``Py_TPFLAGS_MANAGED_DICT`` (3.11), or either of
  ``Py_TPFLAGS_MANAGED_DICT``/``Py_TPFLAGS_MANAGED_WEAKREF`` (3.12, 3.13); none before 3.11.
  (``_PyType_PreHeaderSize`` in ``Include/internal/pycore_object.h``.)
- ``sys.getsizeof(obj)`` is ``obj.__sizeof__()`` plus the GC header and the pre-header, that
  is ``alloc_offset(type(obj))`` for a gc-tracked object (``_PySys_GetSizeOf``); the default
  ``object.__sizeof__`` is the type's layout, ``tp_basicsize + ob_size * tp_itemsize``.
- In 3.11 an instance of a class without ``__slots__`` keeps its attributes in a values
  array (``PyMem_Malloc``'d by ``new_values`` in ``Objects/dictobject.c``) pointed to from the
  pre-header's first word, or, once ``__dict__`` was asked for, in a dict pointed to from
  the second word (which then shares the same values array). The values pointer sits ``prefix`` bytes into its allocation, and the
  byte just before it holds ``prefix``.
"""

import sys

# The C modules behind collections (what its deque and OrderedDict are): collections itself
# is not imported at start by a plain Python, nor array, a shared library (see
# `_cpython_sizeof`).
import _collections

PTR = 8 if sys.maxsize > 2**32 else 4
GC_HEAD = 2 * PTR

# Include/object.h
_MANAGED_WEAKREF = 1 << 3  # 3.12+
_MANAGED_DICT = 1 << 4  # 3.11+

_MINOR = sys.version_info[:2]
if _MINOR >= (3, 12):
    _PREHEADER_FLAGS = _MANAGED_DICT | _MANAGED_WEAKREF
elif _MINOR == (3, 11):
    _PREHEADER_FLAGS = _MANAGED_DICT
else:
    _PREHEADER_FLAGS = 0


# A type's facts are read through `type`'s own descriptors, not as `tp.attr`: a metaclass
# can intercept attribute access on its classes, and the census runs no code of the program.
_flags = type.__dict__["__flags__"].__get__
_basicsize = type.__dict__["__basicsize__"].__get__
_weakrefoffset = type.__dict__["__weakrefoffset__"].__get__
_mro = type.__dict__["__mro__"].__get__
_type_dict = type.__dict__["__dict__"].__get__
_module = type.__dict__["__module__"].__get__
_qualname = type.__dict__["__qualname__"].__get__


def type_names(tp):
    """(``__module__``, ``__qualname__``) of ``tp``, as str (see above)."""
    return _module(tp), _qualname(tp)


def alloc_offset(tp):
    """Bytes from the start of a gc-tracked ``tp`` instance's allocation to ``id(obj)``."""
    if _flags(tp) & _PREHEADER_FLAGS:
        return GC_HEAD + 2 * PTR
    return GC_HEAD


# A generator, a coroutine and an async generator function, for their objects' types
# (without importing `types`, which a plain start does not).
def _generator():
    yield


async def _coroutine():
    pass


async def _async_generator():
    yield


_coro = _coroutine()
# CPython's own C implementations of __sizeof__: besides the layout they count the storage
# these objects allocate apart (a list's item array, a dict's table, a set's), in constant
# time, and run no code of the program. Generators, coroutines, frames and code objects must
# be among them: their types have an item size but no ob_size (3.11+), so the layout formula
# reads a pointer as a count (a generator of "1017 TiB").
_CPYTHON_SIZEOF = [
    d
    for d in (
        _type_dict(t).get("__sizeof__")
        for t in (object, list, dict, set, frozenset, bytearray, bytes, str, int, tuple, type,
                  _collections.deque, _collections.OrderedDict, type(_generator()),
                  type(_coro), type(_async_generator()), type(sys._getframe()),  # noqa: SLF001
                  type(_generator.__code__))
    )
    if d is not None
]
_coro.close()
del _coro
# array.array's, added once the program has imported array (there is no array before).
_array_sizeof = False
_object_sizeof = object.__sizeof__


def sizer(tp):
    """How to size ``tp``'s gc-tracked instances shallowly, without running their code:
    ``(function, extra)``, an instance's size being ``function(obj) + extra``. It is
    ``sys.getsizeof`` when ``tp``'s ``__sizeof__`` is CPython's own; otherwise (a class's
    ``__sizeof__`` written in Python, such as pandas' deep memory usage, or an extension's)
    the instance's layout (``object.__sizeof__``) plus the GC header and pre-header, which is
    what ``sys.getsizeof`` gives for a type that keeps the default ``__sizeof__``."""
    if _cpython_sizeof(tp) is not None:
        return sys.getsizeof, 0
    return _object_sizeof, alloc_offset(tp)


def _cpython_sizeof(tp):
    """``tp``'s ``__sizeof__`` when it is one of CPython's own (``_CPYTHON_SIZEOF``), else
    None."""
    global _array_sizeof
    if not _array_sizeof and "array" in sys.modules:
        _array_sizeof = True
        _CPYTHON_SIZEOF.append(_type_dict(sys.modules["array"].array)["__sizeof__"])
    for klass in _mro(tp):
        own = _type_dict(klass).get("__sizeof__")
        if own is not None:
            return own if any(own is d for d in _CPYTHON_SIZEOF) else None
    return None


def size_method(tp, obj):
    """`sizer` for the tracer, which calls C methods directly: ``(method, extra)``, an
    instance's size being ``method(instance) + extra``, where ``method`` is a
    ``__sizeof__`` written in C (CPython's own, or ``object.__sizeof__`` for the layout)
    and ``obj`` is an instance of ``tp``, on which ``extra`` is measured: what
    ``sys.getsizeof`` adds to ``__sizeof__`` (the GC header, and the pre-header from 3.12)."""
    own = _cpython_sizeof(tp)
    if own is not None:
        return own, sys.getsizeof(obj) - own(obj)
    return _object_sizeof, alloc_offset(tp)


def has_managed_dict(tp):
    """True when ``tp``'s instances keep attributes in a managed dict (no ``__slots__``)."""
    return _MINOR == (3, 11) and bool(_flags(tp) & _MANAGED_DICT)


def slots_instance_size(tp, attrs):
    """What one instance of ``tp`` would take with ``__slots__`` for ``attrs`` attributes:
    GC header, the type's fixed part without the weakref pointer, one pointer per slot."""
    weakref = PTR if _weakrefoffset(tp) else 0
    return GC_HEAD + _basicsize(tp) - weakref + PTR * attrs


def attribute_storage(lib, obj, out):
    """Appends to ``out`` the allocation addresses holding ``obj``'s attributes (3.11 with a
    managed dict only; see the module doc), read through the tracer module `lib`. ``obj``
    must be an instance of a type for which ``has_managed_dict`` is true, and must stay
    alive during the call."""
    read_ptr, read_byte = lib.memlens_read_ptr, lib.memlens_read_byte
    base = id(obj)
    values = read_ptr(base - 4 * PTR)
    d = read_ptr(base - 3 * PTR)
    if values:
        out.append(values - read_byte(values - 1))
    if d:
        out.append(d - GC_HEAD)
        # PyDictObject: refcnt, type, ma_used, ma_version_tag, ma_keys, ma_values.
        dvalues = read_ptr(d + 5 * PTR)
        if dvalues and dvalues != values:
            out.append(dvalues - read_byte(dvalues - 1))
