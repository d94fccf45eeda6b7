"""memlens: the Python side of the memlens memory profiler.

Run a program under the profiler with the ``memlens run script.py`` command, or trace a
block of a running program with ``with memlens.record("out.memlens"):``. From inside a
traced program:

- ``memlens.mark(label)`` puts a labelled marker on the recording's timeline and takes an
  object census there (a no-op when the program is not being traced, so it can stay in
  production code).
- ``with memlens.span(name):`` marks a block;
  ``memlens spans FILE`` then lists the memory each block used.
- ``memlens.is_tracing()`` tells whether this process is being traced.

Also in this package: a pytest plugin (``pytest --memlens``, module ``memlens.pytest_plugin``)
and an IPython extension (``%load_ext memlens``, then the ``%%memlens`` cell magic).

The tracer itself is ``libmemlens_tracer.so``, preloaded by ``memlens run`` (or loaded by
``record``) and driven here as the extension module ``memlens._tracer``, which it also is
(``_load``).

PYTEST_DONT_REWRITE: under ``memlens run -m pytest`` this package is imported before pytest
starts, so pytest could not rewrite its asserts (it has none) and would warn that it cannot.
"""

import atexit
import gc
import os
import sys
import time

__all__ = ["mark", "span", "is_tracing", "record"]

_lib = None
_gc_start_ns = 0
# Object censuses (see _census.py): on unless MEMLENS_CENSUS=0; an interval thread when
# MEMLENS_CENSUS_INTERVAL (seconds) is set.
_census_on = False
_census_thread = None
# The `record` block running in this process, if any.
_active = None


class _ModuleSpec:
    """What ``_imp.create_dynamic`` reads of a module spec."""

    def __init__(self, name, origin):
        self.name = name
        self.origin = origin


def _load(path):
    """The tracer library at `path` as the extension module ``memlens._tracer`` (see
    ``collector/tracer/src/pymodule.rs``): the library's C functions, same names and
    arguments, called with the GIL held. ``_imp`` loads it as the import system would load
    an extension module found on the path, without ctypes (about 2 ms of every traced
    process's start)."""
    global _lib
    if _lib is None:
        import _imp

        _lib = _imp.create_dynamic(_ModuleSpec("memlens._tracer", path))
    return _lib


def _thread_profile(frame, event, arg):
    # Runs once per new `threading` thread, as its first profile event: hands the
    # thread over to the C profiler, seeding its shadow stack from `frame`; then to the
    # program's `threading.setprofile` function, if it set one (profile stack mode).
    lib = _lib
    if lib is not None:
        lib.memlens_thread_start(frame, _thread_name())
        if _following_greenlets is not None:
            _following_greenlets.on_thread()
    then = _program_thread_profile
    if then is not None:
        sys.setprofile(then)
        then(frame, event, arg)


# The profile stack mode: threading's own setprofile, once wrapped (`_keep_profile_in_front`),
# and the function the program gave it, which each new thread gets after memlens's.
_threading_setprofile = None
_program_thread_profile = None


def _thread_name():
    """The calling thread's `threading` name, as bytes: "MainThread" in a process that has
    not imported threading (which memlens does not import for it, see `_hand_threads_over`)."""
    threading = sys.modules.get("threading")
    current = getattr(threading, "current_thread", None)
    name = current().name if current is not None else "MainThread"
    return name.encode("utf-8", "replace")


def _hand_threads_over():
    """Has every thread `threading` starts from now on hand itself over to the tracer
    (`_thread_profile`). A program that has not imported threading has no such thread yet:
    then this is done when it does (`_ImportWatch`), so that a program that never does
    is spared importing it, with functools and collections: 3-4 ms of a traced process's
    start."""
    threading = sys.modules.get("threading")
    if threading is not None:
        if _lib.memlens_stack_mode() == 1:
            _wrap_threading_setprofile(threading)
        (_threading_setprofile or threading.setprofile)(_thread_profile)
    else:
        _ImportWatch.wait_for("threading", _hand_threads_over)


def _stop_handing_threads_over():
    threading = sys.modules.get("threading")
    if threading is not None:
        (_threading_setprofile or threading.setprofile)(_program_thread_profile)
    _ImportWatch.forget("threading")


def _keep_profile_in_front():
    """The profile stack mode: a program's own profiler (``sys.setprofile``, as cProfile,
    debuggers and coverage use it) would replace memlens's profile function, and take it away
    with ``sys.setprofile(None)``. ``sys.setprofile`` is wrapped, once per process: the
    program's function runs behind memlens's, which passes it every event, and
    ``sys.getprofile()`` still returns it (see ``collector/tracer/src/profiler.rs``; other
    ways of setting one are caught at the thread's next allocation)."""
    if sys.setprofile is not _lib.memlens_setprofile:
        _lib.memlens_wrap_setprofile(sys.setprofile)
        sys.setprofile = _lib.memlens_setprofile


def _wrap_threading_setprofile(threading):
    """``threading.setprofile`` and ``getprofile`` keep the program's function aside while
    memlens's (`_thread_profile`) is threading's: each new thread gets memlens's first, then
    the program's (``setprofile_all_threads`` calls the module's ``setprofile``)."""
    global _threading_setprofile, _program_thread_profile
    if _threading_setprofile is not None:
        return
    _threading_setprofile = real = threading.setprofile
    _program_thread_profile = getattr(threading, "_profile_hook", None)

    def setprofile(func):
        global _program_thread_profile
        _program_thread_profile = func
        if not is_tracing():
            real(func)

    def getprofile():
        return _program_thread_profile

    setprofile.__doc__ = real.__doc__
    getprofile.__doc__ = getattr(threading, "getprofile", getprofile).__doc__
    threading.setprofile = setprofile
    if hasattr(threading, "getprofile"):
        threading.getprofile = getprofile


# memlens._greenlets, once the program has imported greenlet while traced (not named
# `_greenlets`: the import would find None there instead of the submodule).
_following_greenlets = None


def _follow_greenlets():
    """Keeps the Python stacks right across greenlet switches (see _greenlets.py), now if
    the program has imported greenlet (gevent and eventlet do), else when it does: a
    program that never does pays nothing."""
    global _following_greenlets
    greenlet = sys.modules.get("greenlet")
    if greenlet is None:
        _ImportWatch.wait_for("greenlet", _follow_greenlets)
        return
    if _lib.memlens_stack_mode() == 2:
        return  # frame walking: stacks are read from the frames at each allocation
    if _following_greenlets is None:
        # Imported untraced: memlens's memory, not the program's.
        _lib.memlens_pause(1)
        try:
            from memlens import _greenlets
        finally:
            _lib.memlens_pause(0)
        _following_greenlets = _greenlets
    _following_greenlets.follow(_lib, greenlet)


class _ImportWatch:
    """First on ``sys.meta_path`` while memlens waits for the program to import a module it
    acts on (`threading`, `greenlet`): it finds that module with the finders after it and
    has its loader call what memlens does then as soon as the module has run (before the
    import returns: before any thread starts or greenlet switches). Other names it leaves
    to the other finders."""

    # Module name -> what to call once it has run.
    waiting = {}

    @classmethod
    def wait_for(cls, name, then):
        cls.waiting[name] = then
        if cls not in sys.meta_path:
            sys.meta_path.insert(0, cls)

    @classmethod
    def forget(cls, name):
        cls.waiting.pop(name, None)
        if not cls.waiting and cls in sys.meta_path:
            sys.meta_path.remove(cls)

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        then = cls.waiting.get(name)
        if then is None:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is cls or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _RunAfter(spec.loader, name, then)
                return spec
        return None


class _RunAfter:
    """A watched module's loader, which it stands in for (`_ImportWatch`) until the module
    runs: then the module's spec and ``__loader__`` get the real one back, and `then` runs
    (while tracing)."""

    def __init__(self, loader, name, then):
        self._loader = loader
        self._name = name
        self._then = then

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self._loader
        try:
            self._loader.exec_module(module)
        finally:
            # Out of the finder: the import system is done with sys.meta_path.
            _ImportWatch.forget(self._name)
        if _lib is not None:
            self._then()


def _gc_callback(phase, info):
    global _gc_start_ns
    if phase == "start":
        _gc_start_ns = time.monotonic_ns()
    elif _lib is not None:
        # A stop whose start came before the callback was added: its duration is unknown (0).
        took = time.monotonic_ns() - _gc_start_ns if _gc_start_ns else 0
        _gc_start_ns = 0
        _lib.memlens_gc(
            info.get("generation", 0),
            took,
            info.get("collected", 0),
            info.get("uncollectable", 0),
        )


def _take_census(trigger, label=""):
    """`trigger` names one of _census's START/MARK/EXIT (that module is imported, untraced,
    by _begin, only when censuses are on)."""
    if _census_on and _lib is not None and _lib.memlens_active():
        from memlens import _census as c

        try:
            c.census(_lib, getattr(c, trigger), label)
        except Exception:  # noqa: BLE001 - a census must never break the program
            pass


def _watch_end(tracer_path, ctrl_fd):
    """``memlens run``: the tracer tells the recorder on `ctrl_fd` how this process ends (its
    exit status, or the signal it dies of), since the recorder is not its parent."""
    lib = _load(tracer_path)
    _check(lib, lib.memlens_watch_end(ctrl_fd))


def _start(tracer_path, fd, native, census=True, census_interval=0.0, census_max_objects=0,
           sample_bytes=0, at_exit=True, frame=None, start_census=True, native_stacks=False):
    """Starts tracing into the recorder's pipe `fd` (called by the bootstrap, and in the
    program's descendants by _follow, which gives the `frame` the calling thread's stack
    starts from: a forked child goes on in the frames it forked in)."""
    lib = _load(tracer_path)
    lib.memlens_set_sample(sample_bytes)
    lib.memlens_set_native_stacks(1 if native_stacks else 0)
    if frame is None:
        rc = lib.memlens_start(fd, 1 if native else 0)
    else:
        rc = lib.memlens_start_in(fd, 1 if native else 0, frame, _thread_name())
    traced = _check(lib, rc)
    if at_exit:
        atexit.register(_stop)
    _begin(lib, census and traced, census_interval, census_max_objects, traced, start_census,
           sampled=bool(sample_bytes))
    from memlens import _follow

    _follow.register()


def _forget_session():
    """In a forked child: the parent's session is not this process's (its census thread
    did not come along; its gc callback is registered again when tracing starts)."""
    global _census_thread, _census_on
    _census_thread = None
    _census_on = False
    try:
        gc.callbacks.remove(_gc_callback)
    except ValueError:
        pass


def _say_on_stderr(line):
    print(line, file=sys.stderr)


def _check(lib, rc, say=_say_on_stderr):
    """True when the tracer traces Python; False when this interpreter cannot be traced and
    it records native allocations only. Says so (on stderr unless `say` is given), in one
    line, as it does when stacks are kept the slow way (rc 2); raises on failure."""
    if rc < 0:
        raise RuntimeError("memlens: " + lib.memlens_last_error().decode("utf-8", "replace"))
    if rc > 0:
        say("memlens: " + lib.memlens_last_error().decode("utf-8", "replace"))
    return rc != 1


def _begin(lib, census, census_interval=0.0, census_max_objects=0, traced=True,
           start_census=True, sampled=False):
    """What every tracing session needs once the tracer runs: new threads handed to the
    profiler and greenlet switches followed (`traced`: when it follows Python code), gc
    runs reported, and the start
    census (not in the program's descendants, `start_census` False: a new interpreter's or
    the parent's objects, at 70-250 ns each, for every worker of a pool). Censuses look at
    `census_max_objects` objects at most (0: the default, smaller when `sampled`)."""
    global _census_on, _census_thread
    if traced:
        if lib.memlens_stack_mode() == 1:
            _keep_profile_in_front()
        _hand_threads_over()
        _follow_greenlets()
    if sys.version_info >= (3, 12):
        from memlens import _fork

        _fork.install()
    gc.callbacks.append(_gc_callback)
    _census_on = census
    _census_thread = None
    if census:
        # Imported untraced: the census module is memlens's memory, not the program's.
        lib.memlens_pause(1)
        try:
            from memlens import _census as c
        finally:
            lib.memlens_pause(0)
        if census_max_objects > 0:
            c.max_objects = census_max_objects
        else:
            c.max_objects = c.SAMPLED_MAX_OBJECTS if sampled else c.MAX_OBJECTS

        if start_census:
            _take_census("START")
        if census_interval > 0:
            _census_thread = c.interval_thread(lib, census_interval)
            _census_thread.start()


def _stop():
    global _census_on
    if _lib is not None:
        if _census_thread is not None:
            _census_thread.stop()
            # A census it began (or is waiting to begin) ends first: one still running
            # when the interpreter finalizes would be cut off in the middle of the tracer's
            # census code, which would then release objects without the GIL.
            if _census_thread.ident is not None:
                _census_thread.join(5)
        _take_census("EXIT")
        _census_on = False
        _lib.memlens_stop()
        try:
            gc.callbacks.remove(_gc_callback)
        except ValueError:
            pass


def is_tracing():
    """True when this process is being traced by memlens."""
    return _lib is not None and bool(_lib.memlens_active())


def _stack_mode():
    """How this process keeps Python stacks: "eval-hook" (PEP 523), "profile" (a profile
    function), "walk" (frame walking, a measurement mode), or None before tracing."""
    if _lib is None:
        return None
    return {0: "eval-hook", 1: "profile", 2: "walk"}.get(_lib.memlens_stack_mode())


def mark(label):
    """Puts a marker named `label` on the recording's timeline (no-op when not tracing)."""
    if _lib is not None:
        _lib.memlens_mark(str(label).encode("utf-8", "replace"))
        _take_census("MARK", label)


class span:
    """``with memlens.span("load"):`` -- the block's memory, listed by ``memlens spans FILE``
    and drawn on the viewer's timeline (no-op when not tracing).

    Spans should not overlap: a span that starts inside another one ends the outer one's
    figures.
    """

    def __init__(self, name):
        self.name = str(name)

    def _edge(self, begin):
        if _lib is not None:
            _lib.memlens_span(begin, self.name.encode("utf-8", "replace"))

    def __enter__(self):
        self._edge(1)
        return self

    def __exit__(self, *exc):
        self._edge(0)
        return False


def load_ipython_extension(ipython):
    """``%load_ext memlens``: registers the ``%%memlens`` cell magic."""
    from memlens.ipython import load_ipython_extension as load

    load(ipython)


_SAMPLE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


def sample_bytes(value):
    """The sampling rate ``value`` in bytes: an int, or a string such as ``"512KiB"``,
    ``"2 MiB"``, ``"524288"`` (binary units B, KiB, MiB, GiB). The same rules as ``memlens
    run --sample`` (collector/src/sampling.rs): 1 B to 1 GiB, else ``ValueError``."""
    text = str(value).strip()
    number = text.rstrip("BbIiKkMmGg ")
    unit = text[len(number):].strip().lower()
    try:
        scale = _SAMPLE_UNITS[unit]
        count = round(float(number) * scale)
    except (KeyError, ValueError, OverflowError):
        raise ValueError(f"sample {value!r}: not a size (examples: 512KiB, 2MiB, 524288; "
                         "binary units B, KiB, MiB, GiB)") from None
    if not 1 <= count <= 1 << 30:
        raise ValueError(f"sample {value!r}: the mean bytes between samples must be from 1 B "
                         "to 1 GiB (512KiB is the usual rate)")
    return count


class record:
    """``with memlens.record("out.memlens"): ...`` traces the block into a recording.

    The same recording ``memlens run`` makes, of part of a running program: Python's
    allocators, native allocations (``native=False`` to skip them), the call stacks of the
    thread that enters the block and of threads started inside it, memory samples every
    ``interval_ms``, gc runs, markers, and object censuses at the start and end (and at
    each ``memlens.mark()``) unless ``census=False``. Blocks can follow one another (one
    recording per test, per notebook cell) but not nest, and not inside ``memlens run``
(``pytest --memlens`` lets a test's own block run: its recording of that test ends there).
    Threads that were already running when the block started are traced too: their
    Python stacks are read from their frames at their first Python allocation or function
    call inside the block, and kept up to date from then on (through the interpreter's
    frame-evaluation hook, which stays installed after the block; where its
    frame layout does not check out, at their first call or return, with
    ``_PyEval_SetProfile`` or ``PyEval_SetProfileAllThreads``, which replace any other
    profiler those threads had). The recording is complete when the block ends; if the
    program dies inside it, what was recorded up to then stays readable. In an interpreter
    memlens cannot trace (a version outside 3.9-3.15, a debug or free-threaded build), the
    block records native allocations only, and says so on stderr.

    After the block, ``peak_bytes`` is the high-water mark of the memory allocated inside
    it and not yet freed, and ``leaked_bytes`` what it left allocated at its end.

    The Pythons the block starts (``multiprocessing`` pools by fork, spawn or forkserver,
    ``os.fork``, ``subprocess.run([sys.executable, ...])``) are traced into the same
    recording unless ``follow=False``; ``total_peak_bytes`` is then the high-water mark of
    the block's process and those processes together (``peak_bytes`` when it started none).

    ``sample="512KiB"`` (or a number of bytes) samples allocations as ``memlens run
    --sample`` does: one every that many bytes on average, each standing for the blocks
    around it. The recording, ``peak_bytes`` and ``leaked_bytes`` are then estimates, and
    ``sample_bytes`` is the rate (``None`` for an exact recording). A rate that is 0,
    negative, not a size or above 1 GiB raises ``ValueError``.

    ``native_stacks=True`` records native stacks as ``memlens run --native-stacks`` does: the
    C, C++ or Rust functions under the Python line for each block C code allocates.

    A separate ``memlens`` process writes the file (found like the ``memlens`` command:
    ``$MEMLENS_BIN``, this environment's scripts, ``PATH``). Also usable as
    ``r = memlens.record(path); r.start(); ...; r.stop()``.
    """

    def __init__(self, path, native=True, census=True, interval_ms=10, sample=None,
                 follow=True, native_stacks=False):
        self.path = os.fspath(path)
        self.follow = bool(follow)
        self.total_peak_bytes = None
        # The environment variables the block's children get, and what they were before.
        self._env = {}
        self.sample_bytes = None if sample is None else sample_bytes(sample)
        self.native = bool(native)
        self.native_stacks = bool(native_stacks)
        self.census = bool(census)
        self.interval_ms = int(interval_ms)
        self.peak_bytes = None
        self.leaked_bytes = None
        self._sink = None
        # `memlens attach` sets these: the memlens executable that attached, and where the
        # recorder's messages go (not the attached program's stderr).
        self._binary = None
        self._say = _say_on_stderr
        # `pytest --memlens` sets `_gives_way`: a block that the program's own block (a test's
        # `with memlens.record(...)`) ends rather than refuses; `_gave_way` says it did.
        self._gives_way = False
        self._gave_way = False

    def __enter__(self):
        self._start(sys._getframe(1))  # noqa: SLF001 - the frame the block runs in
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        """Starts tracing; the calling function is the root of the recorded stacks."""
        self._start(sys._getframe(1))  # noqa: SLF001
        return self

    def _start(self, frame):
        global _active
        # Imported here, not at the top: `memlens run` imports this module before every
        # program, and these two cost it ~7 ms.
        import platform
        import subprocess

        from memlens import _cli, _protocol

        active = _active
        if active is not None and active is not self and active._gives_way:
            active._gave_way = True
            try:
                active.stop()
            except OSError:
                pass
        if is_tracing() or self._sink is not None:
            raise RuntimeError("memlens is already recording this process (blocks cannot nest)")
        cmd = [
            self._binary or _cli.binary(), "sink", "-o", self.path, "--pid", str(os.getpid()),
            "--interval", str(self.interval_ms),
            "--python-version", platform.python_version(),
            "--python-implementation", platform.python_implementation(),
            "--cwd", os.getcwd(),
        ]
        cmd += ["--native"] * self.native + ["--census"] * self.census
        cmd += ["--follow"] * self.follow + ["--native-stacks"] * self.native_stacks
        if self.sample_bytes is not None:
            cmd += ["--sample", str(self.sample_bytes)]
        cmd += ["--", *sys.argv]
        r, w = os.pipe()
        try:
            sink = subprocess.Popen(cmd, stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=_cli.clean_env(), start_new_session=True)
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        line = sink.stdout.readline().decode("utf-8", "replace")
        if _protocol.sampling_line(line):
            line = sink.stdout.readline().decode("utf-8", "replace")
        follow = _protocol.follow_dir(line)
        if follow is not None:
            line = sink.stdout.readline().decode("utf-8", "replace")
        tracer = _protocol.ready_tracer(line)
        if tracer is None:
            os.close(w)
            out, err = sink.communicate()
            raise self._failure(line + out.decode("utf-8", "replace"), err,
                                "the recorder did not start")
        lib = _load(tracer)
        lib.memlens_set_sample(self.sample_bytes or 0)
        lib.memlens_set_native_stacks(int(self.native_stacks))
        import threading

        me = threading.current_thread()
        for t in threading.enumerate():
            if t is not me and t.native_id is not None:
                lib.memlens_name_thread(t.native_id, t.name.encode("utf-8", "replace"))
        name = me.name.encode("utf-8", "replace")
        if follow is not None:
            # Before tracing starts: what this takes is not the block's memory.
            self._follow_children(follow, tracer)
        rc = lib.memlens_start_in(w, 1 if self.native else 0, frame, name)
        if rc < 0:
            self._restore_env()
            os.close(w)
            sink.communicate()
        # What the rest of starting takes (gc's callback list, this object's fields) is
        # memlens's memory, not the block's: a block that allocates nothing records nothing.
        lib.memlens_pause(1)
        try:
            traced = _check(lib, rc, self._say)
            self._sink = sink
            _active = self
            _begin(lib, self.census and traced, 0.0, 0, traced,
                   sampled=self.sample_bytes is not None)
        finally:
            lib.memlens_pause(0)

    def _follow_children(self, directory, tracer):
        """Puts in the environment what the block's children need to be traced (see
        _follow.py), until the block ends."""
        from memlens import _follow, _protocol

        pythonpath = os.path.dirname(directory)
        old = os.environ.get("PYTHONPATH")
        options = (f"native={int(self.native)};census={int(self.census)};census_interval=0;"
                   f"census_max_objects=0;sample_bytes={self.sample_bytes or 0};"
                   f"native_stacks={int(self.native_stacks)}")
        env = {
            _protocol.ENV_FOLLOW: directory,
            _protocol.ENV_FOLLOW_OPTIONS: options,
            _protocol.ENV_TRACER: tracer,
            _protocol.ENV_PACKAGE: pythonpath,
            "PYTHONPATH": pythonpath + (os.pathsep + old if old else ""),
        }
        for k, v in env.items():
            self._env[k] = os.environ.get(k)
            os.environ[k] = v
        _follow.register()

    def _restore_env(self):
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._env = {}

    def stop(self):
        """Stops tracing and waits until the recording is complete on disk. Idempotent."""
        global _active
        sink, self._sink = self._sink, None
        if sink is None:
            return
        if _active is self:
            _active = None
        _lib.memlens_pause(1)  # stopping is not the block's memory either (see _start)
        try:
            _stop()
        finally:
            _lib.memlens_pause(0)
            self._restore_env()
            _stop_handing_threads_over()
            _ImportWatch.forget("greenlet")
            _lib.memlens_release_thread()
            out, err = sink.communicate()
        if sink.returncode != 0:
            raise self._failure(out.decode("utf-8", "replace"), err, "the recorder failed")
        for line in err.decode("utf-8", "replace").splitlines():
            self._say(line)
        from memlens import _protocol

        peak, left, total = _protocol.done_figures(out.decode("ascii", "replace"))
        if peak is not None:
            self.peak_bytes = peak
            self.total_peak_bytes = peak if total is None else total
        if left is not None:
            self.leaked_bytes = left

    def _failure(self, out, err, fallback):
        """The OSError for a recorder that failed: its own message (``memlens: error: ...``,
        e.g. "the disk is full: no space left on the device holding FILE") and the OS error
        number it reported (``error errno=N`` on its stdout); its other lines (warnings) go to
        stderr."""
        from memlens import _protocol

        errno = _protocol.error_number(out)
        reasons = []
        for line in err.decode("utf-8", "replace").splitlines():
            if line.startswith("memlens: error: "):
                reasons.append(line[len("memlens: error: "):])
            elif line.strip():
                self._say(line)
        msg = f"memlens.record({self.path!r}): {'; '.join(reasons) or fallback}"
        return OSError(errno, msg) if errno else OSError(msg)
