"""Imported by Python's start-up in every Python a program run by ``memlens run`` starts
(this file sits next to the ``memlens`` package on PYTHONPATH): traces that Python into the
program's recording (memlens/_follow.py), then runs the ``sitecustomize`` this one shadows,
if there is one. The program itself (``MEMLENS_FD`` set) is started by memlens's bootstrap."""


def _follow():
    import os

    if os.environ.get("MEMLENS_FOLLOW") and "MEMLENS_FD" not in os.environ:
        try:
            from memlens import _follow

            _follow.start()
        except Exception:  # noqa: BLE001 - never stop the program from starting
            pass


# Marks this file: other copies of it further on the path (a source checkout's on PYTHONPATH
# next to memlens's own copy) are skipped, not run in turn (each would chain to the other).
_MEMLENS_SITECUSTOMIZE = True


def _chain():
    # Not importlib until there is a module to run: importlib.util imports contextlib,
    # collections and functools, 3 ms of every Python's start-up, and importlib warnings.
    # The import system's own PathFinder (importlib.machinery's) is loaded already.
    import os
    import sys
    from _frozen_importlib_external import PathFinder

    path = list(sys.path)
    while True:
        spec = PathFinder.find_spec("sitecustomize", path)
        if spec is None or spec.loader is None or not spec.origin:
            return
        try:
            with open(spec.origin, encoding="utf-8", errors="replace") as f:
                ours = "\n_MEMLENS_SITECUSTOMIZE = True\n" in f.read()
        except OSError:
            ours = False
        if not ours:
            break
        found = os.path.dirname(os.path.abspath(spec.origin))
        path = [d for d in path if os.path.abspath(d or os.curdir) != found]
    import importlib.util

    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_follow()
_chain()
