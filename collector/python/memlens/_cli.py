"""Finding and running the ``memlens`` executable from Python (the pytest plugin, the
IPython magic and ``python -m memlens`` use it).

The wheel installs the executable as a script of the environment (``<prefix>/bin/memlens``)
and ``libmemlens_tracer.so`` inside this package, where the executable looks for it.
"""

import os
import shutil
import subprocess
import sys
import sysconfig


def binary():
    """Path of the memlens executable: ``$MEMLENS_BIN``, the running environment's scripts
    directory, the directory of ``sys.executable``, then ``PATH``."""
    env = os.environ.get("MEMLENS_BIN")
    if env:
        return env
    candidates = [
        os.path.join(sysconfig.get_path("scripts"), "memlens"),
        os.path.join(os.path.dirname(sys.executable), "memlens"),
    ]
    try:
        candidates.append(os.path.join(sysconfig.get_path("scripts", f"{os.name}_user"), "memlens"))
    except KeyError:
        pass
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which("memlens")
    if found:
        return found
    raise FileNotFoundError(
        "the memlens executable was not found (pip install memlens, or set MEMLENS_BIN)"
    )


def clean_env(extra=None):
    """The environment for a memlens subprocess: without the tracer preload of a traced parent
    (memlens itself is not Python, but there is no reason to load the tracer into it)."""
    env = dict(os.environ)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and "memlens_tracer" not in p]
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    env.update(extra or {})
    return env


def run(args, **kwargs):
    """Runs ``memlens ARGS`` and returns the CompletedProcess (text mode)."""
    kwargs.setdefault("env", clean_env())
    return subprocess.run([binary(), *args], text=True, **kwargs)


def main():
    """``python -m memlens ARGS``: the same as ``memlens ARGS``."""
    exe = binary()
    os.execve(exe, [exe, *sys.argv[1:]], clean_env())
