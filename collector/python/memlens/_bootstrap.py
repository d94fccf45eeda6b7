"""Start-up code that `memlens run` executes in the traced interpreter.

``memlens run`` execs ``python -c "import memlens._bootstrap as b; b.main()" TARGET ARGS...``
with ``MEMLENS_MODE`` (script, module or code), ``MEMLENS_FD`` (the pipe to the recorder),
``MEMLENS_CTRL_FD`` (the socket on which the tracer tells the recorder how the process
ends) and ``MEMLENS_TRACER`` (the preloaded ``libmemlens_tracer.so``) in the environment.

``main`` makes the program see exactly what a plain ``python script.py args`` run would
see (``sys.argv``, ``sys.path[0]``, a fresh ``__main__`` namespace), starts tracing, and
runs the target with ``exec`` directly from here, so that the target's ``<module>`` frame
is the root of every recorded stack (no runpy or bootstrap frames). Uncaught exceptions
print a traceback without our frames and exit with status 1, like plain Python.
"""

import os
import sys


def _setup_main(globals_update):
    import __main__

    d = __main__.__dict__
    builtins = d.get("__builtins__")
    d.clear()
    d.update(
        __name__="__main__",
        __doc__=None,
        __package__=None,
        __loader__=None,
        __spec__=None,
        __builtins__=builtins,
    )
    d.update(globals_update)
    return d


def _prepare(mode, target):
    """Returns (code object, globals) for the target, with sys.argv/sys.path fixed."""
    if mode == "script":
        # Since 3.9 `python script.py` gives __main__ an absolute __file__.
        path = os.path.abspath(target)
        sys.argv[0] = target
        sys.path[0] = os.path.dirname(os.path.abspath(target))
        import io

        with io.open_code(path) as f:
            source = f.read()
        code = _compile(source, path)
        # What `python script.py` gives __main__ (importlib.machinery's, without importing
        # importlib, which a plain start does not).
        from _frozen_importlib_external import SourceFileLoader

        loader = SourceFileLoader("__main__", path)
        return code, _setup_main({"__file__": path, "__loader__": loader, "__cached__": None})
    if mode == "module":
        import runpy

        sys.path[0] = os.getcwd()
        # The same helper `python -m` uses (private but present in 3.9-3.15).
        mod_name, spec, code = runpy._get_module_details(target)  # noqa: SLF001
        sys.argv[0] = spec.origin or target
        g = {
            "__file__": spec.origin,
            "__cached__": spec.cached,
            "__loader__": spec.loader,
            "__package__": spec.parent,
            "__spec__": spec,
        }
        return code, _setup_main(g)
    if mode == "code":
        sys.argv[0] = "-c"
        sys.path[0] = ""
        return _compile(target, "<string>"), _setup_main({})
    raise SystemExit(f"memlens: unknown MEMLENS_MODE {mode!r}")


def _compile(source, filename):
    """``compile(source, filename, "exec", dont_inherit=True)``, through the tracer's
    ``memlens_compile`` (``Py_CompileStringExFlags``) when it is loaded: the builtin's
    first call in a process makes the ``ast`` module's types (to ask whether the source is
    an AST), 1.1-1.7 ms that a plain ``python script.py`` or ``python -c`` never spends. A
    source the C call cannot take (a NUL, a lone surrogate) goes to the builtin, which
    raises what Python would."""
    import memlens

    lib = memlens._lib  # noqa: SLF001 - loaded by _watch_end
    from_str = isinstance(source, str)
    if lib is not None:
        try:
            data = source.encode("utf-8") if from_str else source
        except UnicodeEncodeError:
            data = b"\0"
        if b"\0" not in data:
            return lib.memlens_compile(data, os.fsencode(filename), from_str,
                                       sys.version_info[1])
    return compile(source, filename, "exec", dont_inherit=True)


def _compile_once():
    """Writes the bytecode of memlens's own package when this Python writes none
    (``PYTHONDONTWRITEBYTECODE``, ``-B``: common in container images). ``memlens run`` keeps
    the package in a directory of its own (the run cache), so it is then compiled once per
    interpreter version instead of at every run and in every Python the program starts
    (about 6 ms each). Nothing of the program's is compiled."""
    tag = sys.implementation.cache_tag
    if not sys.dont_write_bytecode or tag is None:
        return
    import memlens

    package = os.path.dirname(os.path.abspath(memlens.__file__))
    init = os.path.join(package, "__init__.py")
    if os.path.exists(os.path.join(package, "__pycache__", f"__init__.{tag}.pyc")):
        return
    import py_compile

    sources = [os.path.join(os.path.dirname(package), "sitecustomize.py")]
    sources += sorted(os.path.join(package, n) for n in os.listdir(package) if n.endswith(".py"))
    # The package's own last: its bytecode says that the rest is there.
    sources.sort(key=lambda s: s == init)
    for source in sources:
        try:
            py_compile.compile(source, doraise=True)
        except (OSError, py_compile.PyCompileError):
            return


def _strip_our_frames(tb):
    """Drops traceback entries from this file (the exec call) so tracebacks look plain."""
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def main():
    from memlens import _protocol as p

    mode = os.environ.pop(p.ENV_MODE, "script")
    fd = int(os.environ.pop(p.ENV_FD))
    ctrl = int(os.environ.pop(p.ENV_CTRL_FD, "-1"))
    tracer = os.environ.get(p.ENV_TRACER, "")
    native = os.environ.pop(p.ENV_NATIVE, "1") == "1"
    census = os.environ.pop(p.ENV_CENSUS, "1") == "1"
    census_interval = float(os.environ.pop(p.ENV_CENSUS_INTERVAL, "0") or 0)
    census_max_objects = int(os.environ.pop(p.ENV_CENSUS_MAX_OBJECTS, "0") or 0)
    sample_bytes = int(os.environ.pop(p.ENV_SAMPLE_BYTES, "0") or 0)
    native_stacks = os.environ.pop(p.ENV_NATIVE_STACKS, "0") == "1"
    import memlens

    if ctrl >= 0:
        # First of all: however the process ends from here on, the recorder hears how.
        memlens._watch_end(tracer, ctrl)
    _compile_once()
    if len(sys.argv) < 2:
        raise SystemExit("memlens: nothing to run")
    target = sys.argv[1]
    del sys.argv[1]

    try:
        code, globs = _prepare(mode, target)
    except SyntaxError as e:
        # As Python reports a script's syntax error: where it is, no traceback (of ours).
        e.__traceback__ = None
        sys.excepthook(type(e), e, None)
        raise SystemExit(1)
    except (ImportError, OSError) as e:
        # `python -m missing` prints "No module named ..." with status 1: do the same.
        name = os.path.basename(sys.executable)
        print(f"{name}: {e}", file=sys.stderr)
        raise SystemExit(1)

    follow = os.environ.pop(p.ENV_FOLLOW_PENDING, None)
    if follow:
        # From here on, the Pythons and programs it starts are followed (see _follow.py);
        # not what ran before the interpreter (a wrapper, such as pyenv's shim).
        os.environ[p.ENV_FOLLOW] = follow
    memlens._start(tracer, fd, native, census, census_interval, census_max_objects, sample_bytes,
                   native_stacks=native_stacks)
    try:
        exec(code, globs)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - mirrors the interpreter's top level
        e.__traceback__ = _strip_our_frames(e.__traceback__)
        sys.excepthook(type(e), e, e.__traceback__)
        if isinstance(e, KeyboardInterrupt):
            # Like the interpreter: run exit handlers, then die of SIGINT (the tracer's
            # `kill` tells the recorder first).
            import atexit
            import signal

            atexit._run_exitfuncs()  # noqa: SLF001
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001
                    pass
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        raise SystemExit(1)
