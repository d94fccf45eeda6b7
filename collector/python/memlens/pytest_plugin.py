"""pytest plugin: ``pytest --memlens`` records how much memory each test uses.

Each test's call phase (the test function, not its fixtures) runs inside
``memlens.record()``, which writes one recording per test into ``<dir>/tests/`` and gives the
test's peak and what it left allocated as soon as it returns. So:

- ``@pytest.mark.limit_memory("24 MB")`` / ``@pytest.mark.limit_leaks("1 MB")`` fail the
  test right away when it is over its limit, naming the top call sites (read from the test's
  recording with ``memlens summary --json``, only for a test that failed its limit): the
  lines of the test's own code, with the library function each called beside it;
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
"""

import hashlib
import json
import os
import re
import shutil
import sys

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
    """``"24 MB"`` -> 24000000 (decimal KB/MB/GB, binary KiB/MiB/GiB, or plain bytes)."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"memlens: cannot read the size {text!r} (try '24 MB' or '512 KiB')")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


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
    out_dir = os.path.join(str(config.invocation_params.dir), config.getoption("memlens_dir"))
    if worker is not None:
        out_dir = worker.get("memlens_dir", out_dir)
    else:
        # A fresh set of recordings for this run (the folder's other files are left alone).
        shutil.rmtree(os.path.join(out_dir, _TESTS), ignore_errors=True)
        os.makedirs(os.path.join(out_dir, _TESTS), exist_ok=True)
    config.stash[_STATE] = _State(out_dir, controller=worker is None)


class _State:
    def __init__(self, out_dir, controller):
        self.dir = out_dir
        self.controller = controller
        self.tests = []
        self.regressions = None
        self.warned = False


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
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    st = _state(item.config)
    if st is None:
        yield
        return
    if memlens.is_tracing():
        if not st.warned:
            st.warned = True
            sys.stderr.write("memlens: this process is already being recorded (memlens run); "
                             "--memlens records no per-test files\n")
        yield
        return
    rel = os.path.join(_TESTS, _file_name(item.nodeid))
    rec = memlens.record(os.path.join(st.dir, rel), census=False)
    rec.start()
    try:
        yield
    finally:
        rec.stop()
        item.stash[_RESULT] = {
            "name": item.nodeid,
            "peak_bytes": rec.peak_bytes or 0,
            "leaked_bytes": rec.leaked_bytes or 0,
            "recording": rel,
        }


def _limits(item):
    limits = []
    for marker, field, what in (
        ("limit_memory", "peak_bytes", "peak memory"),
        ("limit_leaks", "leaked_bytes", "memory left allocated"),
    ):
        m = item.get_closest_marker(marker)
        if m is not None:
            if not m.args:
                raise pytest.UsageError(f"{marker} needs a size, e.g. @pytest.mark.{marker}('1 MB')")
            limits.append((marker, field, what, m.args[0], parse_size(m.args[0])))
    return limits


def _site_lines(sites, total):
    """The call sites holding at least 1% of `total` (interpreter noise left out): the test's
    own line (or its code's), with the library function it called beside it."""
    lines = []
    for s in sites:
        if s["bytes"] * 100 < total:
            continue
        where = f"{s['file']}:{s['line']}" if s["file"] else ""
        lib = s.get("library")
        if lib:
            where += f"  (in {lib['function']} {lib['file']}:{lib['line']})"
        lines.append(f"    {format_size(s['bytes']):>10}  {s['function']}  {where}".rstrip())
    return lines or ["    (no call sites recorded)"]


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
    failures = []
    summary = None
    for marker, field, what, text, limit in limits:
        used = result[field]
        if used > limit:
            if summary is None:
                summary = _summary(os.path.join(st.dir, result["recording"]))
            sites = summary["top_at_peak"] if field == "peak_bytes" else summary["top_leaks"]
            failures.append(
                f"memlens: {marker}: the test's {what} was {format_size(used)} "
                f"({used} bytes), over the limit of {text} ({limit} bytes)\n"
                f"  top call sites:\n" + "\n".join(_site_lines(sites, used))
            )
    if failures:
        report.outcome = "failed"
        report.longrepr = "\n".join(failures) + f"\n  recording: {result['recording']}"


# ----------------------------------------------------------------------- the whole session
def pytest_runtest_logreport(report):
    """Collects the figures of every test, from this process or (xdist) from workers."""
    if report.when != "call":
        return
    for key, value in report.user_properties:
        if key == _PROPERTY:
            _collected.append(value)



@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    st = _state(session.config)
    if st is None or not st.controller:
        return
    st.tests = list(_collected)
    _collected.clear()
    with open(os.path.join(st.dir, _RESULTS), "w") as f:
        json.dump({"schema": 2, "tests": st.tests}, f, indent=1)
    old = session.config.getoption("memlens_compare")
    if old:
        growth = parse_size(session.config.getoption("memlens_min_growth"))
        st.regressions = _compare(st.tests, old, session.config.getoption("memlens_threshold"),
                                  growth, st.dir)
        if st.regressions[0] and session.exitstatus == 0:
            session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    st = _state(config)
    if st is None or not st.controller:
        return
    w = terminalreporter.write
    _print_top(w, st.tests, config.getoption("memlens_top"), st.dir)
    if st.regressions is not None:
        w(st.regressions[1])


def _print_top(w, tests, top, out_dir):
    w(f"\nmemlens: {len(tests)} tests recorded in {out_dir}/{_TESTS}/")
    w(" (open one with `memlens view FILE`)\n")
    if not tests or top <= 0:
        return
    w(f"memlens: top {min(top, len(tests))} tests by peak memory\n")
    w(f"  {'peak':>10}  {'leaked':>10}  test\n")
    for t in sorted(tests, key=lambda t: -t["peak_bytes"])[:top]:
        w(f"  {format_size(t['peak_bytes']):>10}  {format_size(t['leaked_bytes']):>10}  {t['name']}\n")


def _compare(tests, old_dir, threshold_pct, min_growth, out_dir):
    """(whether any test's peak grew beyond the threshold, the text saying so)."""
    path = os.path.join(old_dir, _RESULTS)
    try:
        with open(path) as f:
            old = {t["name"]: t for t in json.load(f)["tests"]}
    except (OSError, ValueError, KeyError) as e:
        return True, f"memlens: cannot compare: {e}\n"
    worse = []
    for t in tests:
        before = old.get(t["name"])
        if before is None:
            continue
        a, b = before["peak_bytes"], t["peak_bytes"]
        if b - a > min_growth and b > a * (1 + threshold_pct / 100):
            worse.append((t, before, a, b))
    if not worse:
        return False, f"memlens: no test's peak grew more than {threshold_pct:g}% vs {old_dir}\n"
    text = f"memlens: FAILED: peak memory grew more than {threshold_pct:g}% vs {old_dir}\n"
    for t, before, a, b in worse:
        pct = "new" if a == 0 else f"+{100 * (b - a) / a:.0f}%"
        text += f"  {t['name']}: {format_size(a)} -> {format_size(b)} ({pct})\n"
        old_rec = os.path.join(old_dir, before.get("recording", ""))
        new_rec = os.path.join(out_dir, t["recording"])
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
        lines.append(f"{sign}{format_size(abs(change))}  {s['function']}  {s['file']}{via}")
    return lines
