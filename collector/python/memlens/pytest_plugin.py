"""pytest plugin: ``pytest --memlens`` records how much memory each test uses.

Design (memlens cannot start tracing inside a running interpreter yet):

1. The pytest you started (the *outer* session) runs no tests. It re-runs the same command
   line as ``memlens run -m pytest ARGS`` (the same interpreter, the same directory) and
   waits for it.
2. In that traced session, each test's call phase (the test function, not its fixtures) is
   wrapped in ``begin: NODEID`` / ``end: NODEID`` markers.
3. A test with ``@pytest.mark.limit_memory("24 MB")`` or ``@pytest.mark.limit_leaks("1 MB")``
   is checked right after it runs: the plugin waits until memlens has written the test's end
   marker to the recording (memlens flushes it every 100 ms), reads the test's figures with
   ``memlens spans --json --name NODEID`` and fails the test, naming the top call sites, when
   it is over its limit. Other tests cost no waiting.
4. When the traced session ends, the outer session reads every test's figures from the
   recording, writes ``<dir>/tests.json``, prints the tests with the highest peaks and, with
   ``--memlens-compare OLD_DIR``, fails (exit status 1) on tests whose peak grew beyond the
   threshold.

A test's *peak* is the high-water mark of the memory it allocated and had not yet freed;
its *leaks* are what it allocated and had not freed when it returned (objects kept alive by
caches or globals count). Python and native (malloc/mmap) allocations both count.

Limits: with pytest-xdist (``-n``) the tests run in worker processes that memlens does not
trace, so ``--memlens`` only warns and runs the session unrecorded; run without ``-n`` to
record. Everything (collection, fixtures) runs under the tracer, which is slower than plain
pytest.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

import memlens
from memlens import _cli

# Set in the traced session: where its recording is being written.
_RECORDING_ENV = "MEMLENS_PYTEST_RECORDING"
_RESULTS = "tests.json"
_SESSION = "session.memlens"

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
        help="record each test's memory (re-runs the session under `memlens run`)",
    )
    group.addoption(
        "--memlens-dir",
        metavar="DIR",
        default=".memlens",
        help="where to put the recording and tests.json (default: .memlens)",
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


def _xdist_in_use(config):
    n = config.getoption("numprocesses", default=None)
    return bool(n) or config.getoption("dist", default="no") != "no"


def _traced_session():
    return bool(os.environ.get(_RECORDING_ENV)) and memlens.is_tracing()


# ---------------------------------------------------------------------------- outer session
@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    if not config.getoption("memlens") or os.environ.get(_RECORDING_ENV):
        return None
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    if _xdist_in_use(config):
        sys.stderr.write(
            "memlens: --memlens does not record under pytest-xdist (-n): the tests run in "
            "worker processes that memlens does not trace; running without recording\n"
        )
        return None
    root = str(config.invocation_params.dir)
    out_dir = os.path.join(root, config.getoption("memlens_dir"))
    os.makedirs(out_dir, exist_ok=True)
    recording = os.path.join(out_dir, _SESSION)
    cmd = [
        _cli.binary(),
        "run",
        "-q",
        "--python",
        sys.executable,
        "-o",
        recording,
        "-m",
        "pytest",
        # The bootstrap imported this package before pytest could mark it for rewriting.
        "-W",
        "ignore:Module already imported so cannot be rewritten; memlens"
        ":pytest.PytestAssertRewriteWarning",
        *config.invocation_params.args,
    ]
    env = _cli.clean_env({_RECORDING_ENV: recording})
    code = subprocess.run(cmd, cwd=root, env=env).returncode
    if code not in (0, 1) or not os.path.isfile(recording):
        return code  # usage error, interrupted, crashed: nothing to report on
    tests = _spans(recording)
    with open(os.path.join(out_dir, _RESULTS), "w") as f:
        json.dump({"schema": 1, "recording": _SESSION, "tests": tests}, f, indent=1)
    _print_top(tests, config.getoption("memlens_top"), out_dir)
    old = config.getoption("memlens_compare")
    if old:
        growth = parse_size(config.getoption("memlens_min_growth"))
        if _compare(tests, old, config.getoption("memlens_threshold"), growth) and code == 0:
            code = 1
    return code


def _spans(recording, name=None):
    args = ["spans", "--json", recording]
    if name is not None:
        args[2:2] = ["--name", name]
    done = _cli.run(args, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"memlens spans failed: {done.stderr.strip()}")
    return json.loads(done.stdout)["spans"]


def _print_top(tests, top, out_dir):
    w = sys.stdout.write
    w(f"\nmemlens: {len(tests)} tests recorded in {out_dir}/{_SESSION}")
    w(" (open it with `memlens view`)\n")
    if not tests or top <= 0:
        return
    w(f"memlens: top {min(top, len(tests))} tests by peak memory\n")
    w(f"  {'peak':>10}  {'leaked':>10}  test\n")
    for t in sorted(tests, key=lambda t: -t["peak_bytes"])[:top]:
        w(f"  {format_size(t['peak_bytes']):>10}  {format_size(t['leaked_bytes']):>10}  {t['name']}\n")


def _compare(tests, old_dir, threshold_pct, min_growth):
    """Prints the tests whose peak grew beyond the threshold; returns whether any did."""
    path = os.path.join(old_dir, _RESULTS)
    try:
        with open(path) as f:
            old = {t["name"]: t for t in json.load(f)["tests"]}
    except OSError as e:
        sys.stdout.write(f"memlens: cannot compare: {e}\n")
        return True
    worse = []
    for t in tests:
        before = old.get(t["name"])
        if before is None:
            continue
        a, b = before["peak_bytes"], t["peak_bytes"]
        if b - a > min_growth and b > a * (1 + threshold_pct / 100):
            worse.append((t["name"], a, b))
    if not worse:
        sys.stdout.write(f"memlens: no test's peak grew more than {threshold_pct:g}% vs {old_dir}\n")
        return False
    sys.stdout.write(f"memlens: FAILED: peak memory grew more than {threshold_pct:g}% vs {old_dir}\n")
    for name, a, b in worse:
        pct = "new" if a == 0 else f"+{100 * (b - a) / a:.0f}%"
        sys.stdout.write(f"  {name}: {format_size(a)} -> {format_size(b)} ({pct})\n")
    return True


# --------------------------------------------------------------------------- traced session
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if not _traced_session():
        yield
        return
    memlens._delimiter("begin: " + item.nodeid)
    try:
        yield
    finally:
        memlens._delimiter("end: " + item.nodeid)


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


def _wait_for_span(recording, name, timeout_s=60.0):
    """The test's figures, once memlens has written its end marker (flushed every 100 ms)."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = _spans(recording, name)
        if spans:
            return spans[-1]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _site_lines(sites, total):
    """The call sites holding at least 1% of `total` (interpreter noise left out)."""
    lines = []
    for s in sites:
        if s["bytes"] * 100 < total:
            continue
        where = f"{s['file']}:{s['line']}" if s["file"] else ""
        lines.append(f"    {format_size(s['bytes']):>10}  {s['function']}  {where}".rstrip())
    return lines or ["    (no call sites recorded)"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "call" or not _traced_session():
        return
    report = outcome.get_result()
    limits = _limits(item)
    if not limits or not report.passed:
        return
    span = _wait_for_span(os.environ[_RECORDING_ENV], item.nodeid)
    if span is None:
        report.sections.append(("memlens", "limits not checked: the recording did not catch up"))
        return
    failures = []
    for marker, field, what, text, limit in limits:
        used = span[field]
        if used > limit:
            sites = span["top_at_peak"] if field == "peak_bytes" else span["top_leaks"]
            failures.append(
                f"memlens: {marker}: the test's {what} was {format_size(used)} "
                f"({used} bytes), over the limit of {text} ({limit} bytes)\n"
                f"  top call sites:\n" + "\n".join(_site_lines(sites, used))
            )
    if failures:
        report.outcome = "failed"
        report.longrepr = "\n".join(failures)
