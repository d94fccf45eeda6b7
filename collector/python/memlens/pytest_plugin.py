"""pytest plugin: ``pytest --memlens`` records how much memory each test uses.

Each test's call (the test function, not its fixtures, nor what pytest does around it: the
``pytest_pyfunc_call`` hook, or ``runtest`` for other items) runs inside
``memlens.record()``, which writes one recording per test into ``<dir>/tests/`` and gives the
test's peak and what it left allocated as soon as it returns. So:

- ``@pytest.mark.limit_memory("24 MB")`` / ``@pytest.mark.limit_leaks("1 MB")`` fail the
  test right away when it is over its limit, naming the top call sites (read from the test's
  recording with ``memlens summary --json``, only for a test that failed its limit): the
  lines of the test's own code, with the library function each called beside it, and for a
  peak made with the Pythons the test started, the sites of all of them, each child named;
- a test that records itself (``memlens.record()`` in its body or a fixture) runs as without
  the plugin, which gives way to its block and does not record that test (the summary and
  ``tests.json`` say so);
- at the end, ``<dir>/tests.json`` lists every test's figures and recording, the tests with
  the highest peaks are printed, and ``--memlens-compare OLD_DIR`` fails the session (exit
  status 1) on tests whose peak grew beyond the threshold, with the call sites that changed
  (``memlens diff`` of the two recordings, which lines them up across checkouts,
  virtualenvs and Python versions).

It works the same with pytest-xdist: each worker records its own tests; the figures reach
the controller with the test reports (``user_properties``).

A test's *peak* is the high-water mark of the memory it allocated and had not yet freed;
its *leaks* are what it allocated and had not freed when it returned (objects kept alive by
caches or globals count). Python and native (malloc) allocations both count, and memory
C code maps with mmap by its resident pages (see docs/memory-figures.md).

Under ``memlens run -m pytest`` (the whole session recorded in one file), each test's call
phase is a span of that recording instead: ``memlens spans FILE`` lists every test's peak
and leaks, and the viewer draws the tests along its timeline.

``--memlens-native-stacks`` records native stacks (``memlens run --native-stacks``): a
failure message then names the C function that allocated beside the test's line.
``--memlens-sample 512KiB`` samples allocations (``memlens run --sample``): cheaper, and
every figure, limit check and compare is then of estimates, which the messages say; a
compare with a baseline sampled differently (or not at all) fails closed.
"""

import hashlib
import json
import math
import os
import re
import shlex
import shutil

import pytest

import memlens
from memlens import _cli

_RESULTS = "tests.json"
_TESTS = "tests"
_PROPERTY = "memlens"

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
}


def parse_size(text):
    """``"24 MB"`` -> 24000000 (decimal KB/MB/GB, binary KiB/MiB/GiB, or plain bytes).

    Raises ValueError, saying why, for anything else: an unknown unit, a negative size, NaN or
    infinity (a limit that could never be crossed would pass every test)."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a size (try '24 MB' or '512 KiB')")
    if isinstance(text, (int, float)):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"{text!r} is not a size: it must be a finite number of bytes, 0 or more")
        return int(text)
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a size (try '24 MB' or '512 KiB')")
    m = re.fullmatch(r"\s*([+-]?)([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not m:
        raise ValueError(f"cannot read the size {text!r} (try '24 MB' or '512 KiB')")
    if m.group(1) == "-":
        raise ValueError(f"the size {text!r} is negative: a limit is 0 bytes or more")
    if m.group(3).upper() not in _UNITS:
        raise ValueError(f"unknown unit {m.group(3)!r} in the size {text!r} (use B, KB, MB, GB, "
                         "KiB, MiB or GiB: '24 MB', '512 KiB')")
    return int(float(m.group(2)) * _UNITS[m.group(3).upper()])


def _escape(text):
    """`text` (a name from a recording: untrusted) with control characters shown as escapes
    (``\\x1b``), so that it cannot drive the terminal."""
    out = []
    for c in str(text):
        if c.isprintable() or c == " ":
            out.append(c)
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}")
    return "".join(out)


def format_size(n):
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def pytest_addoption(parser):
    group = parser.getgroup("memlens", "memory profiling with memlens")
    group.addoption(
        "--memlens",
        action="store_true",
        help="record each test's memory (one recording per test in --memlens-dir)",
    )
    group.addoption(
        "--memlens-dir",
        metavar="DIR",
        default=".memlens",
        help="where to put the recordings and tests.json (default: .memlens)",
    )
    group.addoption(
        "--memlens-compare",
        metavar="DIR",
        help="fail on tests whose peak grew compared with a previous run's --memlens-dir",
    )
    group.addoption(
        "--memlens-threshold",
        metavar="PCT",
        type=float,
        default=10.0,
        help="allowed peak growth for --memlens-compare, in percent (default: 10)",
    )
    group.addoption(
        "--memlens-min-growth",
        metavar="SIZE",
        default="64 KiB",
        help="ignore peak growth smaller than this for --memlens-compare (default: 64 KiB)",
    )
    group.addoption(
        "--memlens-sample",
        metavar="BYTES",
        help="sample allocations, one every BYTES on average (e.g. 512KiB; as memlens run "
             "--sample): figures and limits are then estimates",
    )
    group.addoption(
        "--memlens-native-stacks",
        action="store_true",
        help="record native stacks too (as memlens run --native-stacks): the C, C++ and Rust "
             "functions under the test's lines in recordings and failure messages",
    )
    group.addoption(
        "--memlens-top",
        metavar="N",
        type=int,
        default=5,
        help="how many tests to list by peak (default: 5)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "limit_memory(size): with --memlens, fail the test if its peak memory exceeds size",
    )
    config.addinivalue_line(
        "markers",
        "limit_leaks(size): with --memlens, fail the test if it leaves more than size allocated",
    )
    if not config.getoption("memlens"):
        return
    worker = getattr(config, "workerinput", None)
    cwd = str(config.invocation_params.dir)
    out_dir = os.path.join(cwd, config.getoption("memlens_dir"))
    if worker is not None:
        out_dir = worker.get("memlens_dir", out_dir)
    st = _State(out_dir, cwd, controller=worker is None)
    if worker is None:
        st.baseline = _read_options(config, out_dir)
        # A fresh set of recordings for this run (the folder's other files are left alone).
        shutil.rmtree(os.path.join(out_dir, _TESTS), ignore_errors=True)
        try:
            os.makedirs(os.path.join(out_dir, _TESTS), exist_ok=True)
        except OSError as e:
            st.setup_error = f"cannot create {os.path.join(out_dir, _TESTS)}: {_os_reason(e)}"
    config.stash[_STATE] = st


def _sample(config):
    """--memlens-sample in bytes (None: exact); a bad rate is a usage error."""
    text = config.getoption("memlens_sample")
    if text is None:
        return None
    try:
        return memlens.sample_bytes(text)
    except ValueError as e:
        raise pytest.UsageError(f"--memlens-{e}") from None


def _estimated(result):
    """`` (an estimate: sampled every 512 KiB)`` for a sampled test's figures, else ``""``."""
    rate = result.get("sample_bytes")
    return f" (an estimate: sampled every {format_size(rate)})" if rate else ""


def _read_options(config, out_dir):
    """Checks the options' values (a usage error, exit status 4, names the bad one) and reads
    the --memlens-compare baseline: (its tests by name, None) or (None, why it cannot be read)."""
    threshold = config.getoption("memlens_threshold")
    if not math.isfinite(threshold) or threshold < 0:
        raise pytest.UsageError(
            f"--memlens-threshold {threshold!r}: give a percentage, 0 or more (e.g. 10)")
    try:
        parse_size(config.getoption("memlens_min_growth"))
    except ValueError as e:
        raise pytest.UsageError(f"--memlens-min-growth: {e}") from None
    _sample(config)
    old = config.getoption("memlens_compare")
    if not old:
        return None
    old_dir = os.path.join(str(config.invocation_params.dir), old)
    if os.path.realpath(old_dir) == os.path.realpath(out_dir):
        raise pytest.UsageError(
            f"--memlens-compare {old} is this run's own --memlens-dir: give the run a folder of "
            f"its own (e.g. --memlens-dir .memlens-head) to compare it with {old}")
    path = os.path.join(old_dir, _RESULTS)
    try:
        with open(path) as f:
            tests = json.load(f)["tests"]
        return {t["name"]: t for t in tests}, None
    except FileNotFoundError:
        if not os.path.isdir(old_dir):
            why = f"{old} does not exist"
        else:
            why = f"{old} has no {_RESULTS}"
        return None, f"{why} (make the baseline with `pytest --memlens --memlens-dir {old}`)"
    except OSError as e:
        return None, f"cannot read {path}: {_os_reason(e)}"
    except (ValueError, KeyError, TypeError) as e:
        return None, f"{path} is not a memlens {_RESULTS} ({e!r})"


def _os_reason(e):
    """An OSError in words, without a traceback: `e.strerror` is the OS's, `str(e)` memlens's."""
    return str(e) if not e.strerror else e.strerror


class _State:
    def __init__(self, out_dir, cwd, controller):
        self.dir = out_dir
        self.cwd = cwd
        self.controller = controller
        self.tests = []
        self.regressions = None
        self.warned = False
        # (tests by name, None) or (None, why the baseline cannot be read); None: no compare.
        self.baseline = None
        # Why the recordings folder could not be made (no test is then recorded).
        self.setup_error = None
        # Tests whose recording could not be written: (name, why).
        self.unrecorded = []
        # Tests the plugin left unrecorded on purpose (they record themselves): (name, why).
        self.not_recorded = []
        self.warned_unrecorded = False
        self.results_error = None

    def shown_path(self, path):
        """`path` as the user can paste it into `memlens summary` from where pytest ran."""
        rel = os.path.relpath(path, self.cwd)
        return shlex.quote(path if rel.startswith("..") else rel)


_STATE = pytest.StashKey()
# A test's figures, from its call phase to its report.
_RESULT = pytest.StashKey()
# The figures of every test reported so far (in the controller).
_collected = []


def _state(config):
    return config.stash.get(_STATE, None)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist (controller): tells each worker where the recordings go."""
    st = _state(node.config)
    if st is not None:
        node.workerinput["memlens_dir"] = st.dir


def _file_name(nodeid):
    """A file name for a test id: readable, and unique thanks to a short hash."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:120]
    digest = hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}.memlens"


# ------------------------------------------------------------------------------- each test
def _calls_the_function(item):
    """Whether the item runs as pytest's own test functions do, through the
    ``pytest_pyfunc_call`` hook: then only that call is recorded. Other items (unittest's
    TestCase methods, doctests, a plugin's items, a Function whose ``runtest`` is another)
    have their whole ``runtest`` recorded."""
    return isinstance(item, pytest.Function) and type(item).runtest is pytest.Function.runtest


def _innermost_wrapper():
    """The marker of a hook wrapper that runs innermost (trylast), so that what pytest and
    other plugins do around the test (markers, xfail bookkeeping, PYTEST_CURRENT_TEST) is not
    the test's memory: a new-style wrapper (pluggy 1.2+), which gets the hook's result without
    making an object for it in the test's window, else an old-style one."""
    try:
        return pytest.hookimpl(wrapper=True, trylast=True)
    except TypeError:
        return pytest.hookimpl(hookwrapper=True, trylast=True)


# Both wrappers' bodies suit either style: an old-style wrapper gets the outcome from its
# yield and returns nothing anyone reads; a new-style one gets the result (or the exception,
# raised at the yield) and returns it.
@_innermost_wrapper()
def pytest_runtest_call(item):
    if _calls_the_function(item):
        return (yield)
    return (yield from _recorded(item))


@_innermost_wrapper()
def pytest_pyfunc_call(pyfuncitem):
    if _calls_the_function(pyfuncitem):
        return (yield from _recorded(pyfuncitem))
    return (yield)


def _recorded(item):
    """The body of a hook wrapper that records the hook's call into the test's recording:
    yields once (the hook's call), and returns what that gave."""
    st = _state(item.config)
    if memlens._active is not None:
        # A memlens.record() block of the test's own (started by a fixture) is running: the
        # test is left to it, as without --memlens.
        if st is not None:
            item.stash[_RESULT] = {"name": item.nodeid, "not_recorded": _SELF_RECORDED}
        return (yield)
    if memlens.is_tracing():
        # The whole session is being recorded (`memlens run -m pytest`): each test is a span
        # of that recording (`memlens spans`, the viewer's timeline).
        if st is not None and not st.warned:
            st.warned = True
            _warn(item.config, "this process is already being recorded (memlens run); "
                               "--memlens records no per-test files: each test is a span "
                               "of that recording")
        with memlens.span(item.nodeid):
            return (yield)
    if st is None:
        return (yield)
    if st.setup_error:
        item.stash[_RESULT] = {"name": item.nodeid, "error": st.setup_error}
        return (yield)
    rel = os.path.join(_TESTS, _file_name(item.nodeid))
    path = os.path.join(st.dir, rel)
    rec = memlens.record(path, census=False, sample=_sample(item.config),
                         native_stacks=item.config.getoption("memlens_native_stacks"))
    # The test's own memlens.record() block, if it starts one, ends this recording and runs
    # as it would without --memlens (see memlens.record._start).
    rec._gives_way = True
    # A recording that cannot be written (a full disk) does not change the test's outcome:
    # the test runs, and the session says which tests have no recording.
    try:
        rec.start()
    except OSError as e:
        item.stash[_RESULT] = {"name": item.nodeid, "error": _os_reason(e)}
        return (yield)
    try:
        return (yield)
    finally:
        try:
            rec.stop()
            if rec._gave_way:
                item.stash[_RESULT] = {"name": item.nodeid, "not_recorded": _SELF_RECORDED}
                try:
                    os.remove(path)
                except OSError:
                    pass
            else:
                item.stash[_RESULT] = {
                    "name": item.nodeid,
                    # With the Pythons the test started (a pool and its workers), together.
                    "peak_bytes": rec.total_peak_bytes or rec.peak_bytes or 0,
                    "leaked_bytes": rec.leaked_bytes or 0,
                    "recording": rel,
                    "sample_bytes": rec.sample_bytes,
                }
        except OSError as e:
            item.stash[_RESULT] = {"name": item.nodeid, "error": _os_reason(e)}


# Why a test has no recording of the plugin's (`not_recorded`).
_SELF_RECORDED = "it records its own memory with memlens.record()"


def _warn(config, text):
    """One line on the terminal, at once (not captured)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"memlens: warning: {text}", yellow=True, bold=True)


def pytest_runtest_setup(item):
    """A limit marker whose size cannot be read is an error of that test only."""
    if _state(item.config) is not None:
        _limits(item)


def _limits(item):
    """The test's limit markers: (marker, field, what, size as written, bytes). A marker whose
    size is missing or cannot be read fails the test (``pytest.fail``) with its reason."""
    limits = []
    for marker, field, what in (
        ("limit_memory", "peak_bytes", "peak memory"),
        ("limit_leaks", "leaked_bytes", "memory left allocated"),
    ):
        m = item.get_closest_marker(marker)
        if m is None:
            continue
        args = [*m.args, *m.kwargs.values()]
        written = ", ".join([*map(repr, m.args), *(f"{k}={v!r}" for k, v in m.kwargs.items())])
        usage = f"give one size, e.g. @pytest.mark.{marker}(\"24 MB\")"
        if len(args) != 1 or set(m.kwargs) - {"size"}:
            pytest.fail(f"memlens: @pytest.mark.{marker}({written}): {usage}", pytrace=False)
        try:
            limits.append((marker, field, what, args[0], parse_size(args[0])))
            continue
        except ValueError as e:
            why = str(e)
        pytest.fail(f"memlens: @pytest.mark.{marker}({written}): {why}; {usage}", pytrace=False)
    return limits


def _site_lines(sites, total, processes=None):
    """The call sites holding at least 1% of `total` (interpreter noise left out): the test's
    own line (or its code's), with the library function it called beside it, and the process
    it is in (`processes`: names by process number) when that is not the test's. Also the pids
    of those other processes."""
    lines, pids = [], []
    for s in sites:
        if s["bytes"] * 100 < total:
            continue
        where = f"{s['file']}:{s['line']}" if s["file"] else ""
        lib = s.get("library")
        if lib:
            where += f"  (in {lib['function']} {lib['file']}:{lib['line']})"
        if s.get("process"):
            where += f"  {(processes or {}).get(s['process']) or 'in process ' + str(s['pid'])}"
            pids.append(s["pid"])
        lines.append(f"    {format_size(s['bytes']):>10}  {_escape(s['function'])}  "
                     f"{_escape(where)}".rstrip())
    return lines or ["    (no call sites recorded)"], pids


def _process_names(summary):
    """How a failure message names each process of a test's recording but the test's own:
    ``in child 1234 (fork)`` for a fork of the test's process (its command line is this
    process's), else ``in child 1234 (python3 -c ...)``; ``in process`` for a grandchild."""
    procs = summary.get("processes") or []
    if len(procs) < 2:
        return {}
    try:
        with open("/proc/self/cmdline", "rb") as f:
            own = f.read().decode("utf-8", "replace").split("\0")[:-1]
    except OSError:
        own = None
    names = {}
    for p in procs[1:]:
        line = p.get("command_line") or []
        how = "fork" if line == own else _short_command(line)
        who = "child" if p.get("ppid") == procs[0]["pid"] else "process"
        names[p["number"]] = f"in {who} {p['pid']} ({how})"
    return names


def _short_command(line, width=60):
    """A command line in one short line: the program's file name, then its arguments (as
    ``memlens summary`` shows a process)."""
    if not line:
        return "?"
    text = " ".join([line[0].rsplit("/", 1)[-1], *line[1:]])
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def _summary(path):
    done = _cli.run(["summary", "--json", path], capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"memlens summary failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "call":
        return
    result = item.stash.get(_RESULT, None)
    if result is None:
        return
    report = outcome.get_result()
    report.user_properties.append((_PROPERTY, result))
    limits = _limits(item)
    if not limits or not report.passed:
        return
    st = _state(item.config)
    if "error" in result or "not_recorded" in result:
        # A limit that cannot be checked fails closed.
        why = (f"the test's recording could not be written: {result['error']}"
               if "error" in result else
               f"pytest --memlens does not record this test: {result['not_recorded']}, which "
               "the plugin leaves to run as it would without --memlens")
        report.outcome = "failed"
        report.longrepr = "\n".join(
            f"memlens: {marker}({text!r}) could not be checked: {why}"
            for marker, _, _, text, _ in limits)
        return
    failures = []
    summary = None
    children = []
    path = os.path.join(st.dir, result["recording"])
    for marker, field, what, text, limit in limits:
        used = result[field]
        if used > limit:
            if summary is None:
                summary = _summary(path)
            sites = summary["top_at_peak"] if field == "peak_bytes" else summary["top_leaks"]
            heading = "top call sites"
            if field == "peak_bytes" and summary.get("all_processes"):
                # The peak is that of the test's process and the Pythons it started together:
                # the sites that make it up, in whichever process they are.
                sites = summary["all_processes"]["top_at_peak"]
                heading = "top call sites at that peak, in all the test's processes"
            lines, more = _site_lines(sites, used, _process_names(summary))
            children += [pid for pid in more if pid not in children]
            failures.append(
                f"memlens: {marker}: the test's {what} was {format_size(used)} "
                f"({used} bytes){_estimated(result)}, over the limit of {text} ({limit} bytes)\n"
                f"  {heading}:\n" + "\n".join(lines)
            )
    if failures:
        report.outcome = "failed"
        shown = st.shown_path(path)
        child = "".join(f"; memlens summary --process {pid} {shown}" for pid in children[:1])
        report.longrepr = ("\n".join(failures) + f"\n  recording: {shown}"
                           f"  (memlens summary {shown}{child}; memlens view {shown})")


# ----------------------------------------------------------------------- the whole session
def pytest_runtest_logreport(report):
    """Collects the figures of every test, from this process or (xdist) from workers."""
    if report.when != "call":
        return
    for key, value in report.user_properties:
        if key == _PROPERTY:
            _collected.append(value)
            if "error" in value:
                _unrecorded(value)


def _unrecorded(value):
    """The first test whose recording could not be written is said at once (once)."""
    st = _first_state[0] if _first_state else None
    if st is None or st.warned_unrecorded:
        return
    st.warned_unrecorded = True
    _warn(st.config, f"the recording of {value['name']} could not be written: {value['error']}; "
                     "the tests go on without recordings where they cannot be written "
                     "(their outcome is not changed; see the summary at the end)")


# The controller's state, for _unrecorded (pytest_runtest_logreport has no config).
_first_state = []


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    st = _state(session.config)
    if st is not None and st.controller:
        st.config = session.config
        _first_state[:] = [st]
        if st.setup_error:
            _warn(session.config, f"{st.setup_error}: the tests run without recordings")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    st = _state(session.config)
    if st is None or not st.controller:
        return
    st.tests = [t for t in _collected if "error" not in t and "not_recorded" not in t]
    st.unrecorded = [(t["name"], t["error"]) for t in _collected if "error" in t]
    st.not_recorded = [(t["name"], t["not_recorded"]) for t in _collected if "not_recorded" in t]
    _collected.clear()
    _first_state.clear()
    results = os.path.join(st.dir, _RESULTS)
    try:
        with open(results, "w") as f:
            json.dump({"schema": 2, "tests": st.tests,
                       "unrecorded": [{"name": n, "error": e} for n, e in st.unrecorded],
                       "not_recorded": [{"name": n, "reason": r} for n, r in st.not_recorded]},
                      f, indent=1)
    except OSError as e:
        st.results_error = f"cannot write {st.shown_path(results)}: {_os_reason(e)}"
    old = session.config.getoption("memlens_compare")
    if old:
        growth = parse_size(session.config.getoption("memlens_min_growth"))
        st.regressions = _compare(st, old, session.config.getoption("memlens_threshold"), growth)
        if st.regressions[0] and session.exitstatus == 0:
            session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    st = _state(config)
    if st is None or not st.controller:
        return
    w = terminalreporter.write
    _print_top(w, st, config.getoption("memlens_top"))
    if st.regressions is not None:
        w(st.regressions[1])


def _print_top(w, st, top):
    tests = st.tests
    w(f"\nmemlens: {len(tests)} tests recorded in {st.shown_path(os.path.join(st.dir, _TESTS))}/")
    w(" (open one with `memlens view FILE`)\n")
    if st.unrecorded:
        name, why = st.unrecorded[0]
        w(f"memlens: WARNING: {len(st.unrecorded)} tests have no recording (they ran, and their "
          f"outcome stands): {why}\n", yellow=True, bold=True)
    if st.not_recorded:
        name, why = st.not_recorded[0]
        others = f" and {len(st.not_recorded) - 1} more" if len(st.not_recorded) > 1 else ""
        w(f"memlens: not recorded: {name}{others}: {why} (which runs as without --memlens)\n")
    if st.results_error:
        w(f"memlens: WARNING: {st.results_error}\n", yellow=True, bold=True)
    if not tests or top <= 0:
        return
    w(f"memlens: top {min(top, len(tests))} tests by peak memory{_estimated(tests[0])}\n")
    w(f"  {'peak':>10}  {'leaked':>10}  test\n")
    for t in sorted(tests, key=lambda t: -t["peak_bytes"])[:top]:
        w(f"  {format_size(t['peak_bytes']):>10}  {format_size(t['leaked_bytes']):>10}  {t['name']}\n")


def _compare(st, old_name, threshold_pct, min_growth):
    """(whether the session fails, the text saying why or that no test grew). The compare
    fails closed: a baseline that cannot be read, or one that shares no test with this run
    (nothing was compared), or tests of this run without a recording, fail the session too."""
    old_dir = os.path.join(st.cwd, old_name)
    old, why = st.baseline
    if old is None:
        return True, f"memlens: FAILED: cannot compare with the baseline: {why}\n"
    worse, shared, compared, mixed = [], 0, 0, []
    for t in st.tests:
        before = old.get(t["name"])
        if not isinstance(before, dict) or not isinstance(before.get("peak_bytes"), int):
            continue
        shared += 1
        if before.get("sample_bytes") != t.get("sample_bytes"):
            # An estimate against an exact figure (or another rate) cannot decide: fail closed.
            mixed.append(t["name"])
            continue
        compared += 1
        a, b = before["peak_bytes"], t["peak_bytes"]
        if b - a > min_growth and b > a * (1 + threshold_pct / 100):
            worse.append((t, before, a, b))
    text = ""
    failed = False
    if shared == 0:
        ran = len(st.tests) + len(st.unrecorded)
        has = "has a recording and is" if st.unrecorded else "is"
        return True, (f"memlens: FAILED: nothing to compare: none of the {ran} tests of this run "
                      f"{has} in the baseline {old_name} (which has {len(old)}); was it made "
                      "from the same tests?\n")
    if mixed:
        failed = True
        text += (f"memlens: FAILED: {len(mixed)} tests could not be compared: the baseline and "
                 f"this run sample differently (--memlens-sample), e.g. {mixed[0]}\n")
    if st.unrecorded:
        failed = True
        text += (f"memlens: FAILED: {len(st.unrecorded)} tests could not be compared: their "
                 f"recordings could not be written ({st.unrecorded[0][1]})\n")
    if not worse:
        if compared == 0:
            # Every shared test was left out above: there is no growth to speak of.
            return failed, text
        return failed, text + (f"memlens: no test's peak grew more than {threshold_pct:g}% vs "
                               f"{old_name} ({compared} tests compared)\n")
    text += f"memlens: FAILED: peak memory grew more than {threshold_pct:g}% vs {old_name}\n"
    for t, before, a, b in worse:
        pct = "new" if a == 0 else f"+{100 * (b - a) / a:.0f}%"
        text += f"  {t['name']}: {format_size(a)} -> {format_size(b)} ({pct})\n"
        old_rec = os.path.join(old_dir, before.get("recording") or "")
        new_rec = os.path.join(st.dir, t["recording"])
        text += "".join(f"    {line}\n" for line in _site_changes(old_rec, new_rec, min_growth))
    return True, text


def _site_changes(old_path, new_path, min_change):
    """Where a test's peak changed, from ``memlens diff``: call sites are the test's own
    lines, matched by their path in the project, in site-packages or in the standard library,
    so two runs from different checkouts, virtualenvs or Python versions line up."""
    if not (os.path.isfile(old_path) and os.path.isfile(new_path)):
        return []
    done = _cli.run(["diff", old_path, new_path, "--format", "json", "--top", "3",
                     "--min-change", str(min_change)], capture_output=True)
    if done.returncode != 0:
        return []
    lines = []
    for s in json.loads(done.stdout)["peak_sites"]:
        change = s["change_bytes"]
        sign = "+" if change >= 0 else "-"
        lib = s.get("library")
        via = f"  (in {lib['function']} {lib['file']})" if lib else ""
        lines.append(f"{sign}{format_size(abs(change))}  {_escape(s['function'])}  "
                     f"{_escape(s['file'])}{_escape(via)}")
    return lines
