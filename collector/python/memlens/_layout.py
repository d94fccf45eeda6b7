"""CPython object layout facts the census needs, in one place.

Everything here depends on the interpreter version; the census (``_census.py``) only calls
these functions. Tested on CPython 3.11 (x86_64), where each answer was checked against the
allocation addresses and sizes memlens records (``collector/tests/run_e2e.rs``).

- A gc-tracked object's allocation starts before ``id(obj)``: first the pre-header, then the
  GC header (``PyGC_Head``, two pointers). The pre-header is two pointers (managed ``__dict__``
  and inline values) when the type has ``Py_TPFLAGS_MANAGED_DICT`` (3.11), or either of
  ``Py_TPFLAGS_MANAGED_DICT``/``Py_TPFLAGS_MANAGED_WEAKREF`` (3.12, 3.13); none before 3.11.
  (``_PyType_PreHeaderSize`` in ``Include/internal/pycore_object.h``.)
- In 3.11 an instance of a class without ``__slots__`` keeps its attributes in a values
  array (``PyMem_Malloc``'d by ``new_values`` in ``Objects/dictobject.c``) pointed to from the
  pre-header's first word, or, once ``__dict__`` was asked for, in a dict pointed to from
  the second word (which then shares the same values array). The values pointer sits ``prefix`` bytes into its allocation, and the
  byte just before it holds ``prefix``.
"""

import ctypes
import sys

PTR = ctypes.sizeof(ctypes.c_void_p)
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


def alloc_offset(tp):
    """Bytes from the start of a gc-tracked ``tp`` instance's allocation to ``id(obj)``."""
    if tp.__flags__ & _PREHEADER_FLAGS:
        return GC_HEAD + 2 * PTR
    return GC_HEAD


def has_managed_dict(tp):
    """True when ``tp``'s instances keep attributes in a managed dict (no ``__slots__``)."""
    return _MINOR == (3, 11) and bool(tp.__flags__ & _MANAGED_DICT)


def slots_instance_size(tp, attrs):
    """What one instance of ``tp`` would take with ``__slots__`` for ``attrs`` attributes:
    GC header, the type's fixed part without the weakref pointer, one pointer per slot."""
    weakref = PTR if tp.__weakrefoffset__ else 0
    return GC_HEAD + tp.__basicsize__ - weakref + PTR * attrs


_read_ptr = ctypes.c_void_p.from_address
_read_byte = ctypes.c_ubyte.from_address


def attribute_storage(obj, out):
    """Appends to ``out`` the allocation addresses holding ``obj``'s attributes (3.11 with a
    managed dict only; see the module doc). ``obj`` must be an instance of a type for which
    ``has_managed_dict`` is true, and must stay alive during the call."""
    base = id(obj)
    values = _read_ptr(base - 4 * PTR).value
    d = _read_ptr(base - 3 * PTR).value
    if values:
        out.append(values - _read_byte(values - 1).value)
    if d:
        out.append(d - GC_HEAD)
        # PyDictObject: refcnt, type, ma_used, ma_version_tag, ma_keys, ma_values.
        dvalues = _read_ptr(d + 5 * PTR).value
        if dvalues and dvalues != values:
            out.append(dvalues - _read_byte(dvalues - 1).value)
