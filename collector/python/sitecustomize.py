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


def _chain():
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    path = [d for d in sys.path if os.path.abspath(d or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


_follow()
_chain()
