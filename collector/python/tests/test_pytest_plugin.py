"""`pytest --memlens` from the installed wheel, on a small project."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import BIG_TABLE_PEAK, clean_env, listcomp, run

PROJECT = Path(__file__).parent / "data" / "limits_project"
NUMPY_PROJECT = Path(__file__).parent / "data" / "numpy_project"


def _cli_binary():
    return os.environ["MEMLENS_TEST_VENV"] + "/bin/memlens"


def line_of(text):
    lines = (PROJECT / "test_limits.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def project(tmp_path):
    dst = tmp_path / "proj"
    shutil.copytree(PROJECT, dst)
    return dst


def test_limit_markers_fail_the_tests_over_their_limits(venv, tmp_path):
    cwd = project(tmp_path)
    out = run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider", "-k", "not grows"], cwd,
              check_status=1)
    assert "2 failed, 2 passed" in out
    assert "FAILED test_limits.py::test_big_table_over_limit" in out
    assert "FAILED test_limits.py::test_leaky_cache" in out
    assert (
        f"memlens: limit_memory: the test's peak memory was {BIG_TABLE_PEAK}" in out
        and "over the limit of 24 MB (24000000 bytes)" in out
    ), out
    # The top call site is the line that allocated the rows.
    assert f"{listcomp('make_table')}  {cwd}/test_limits.py:{line_of('return [bytearray')}" in out
    assert "memlens: limit_leaks: the test's memory left allocated was 2.9 MiB" in out
    assert f"test_leaky_cache  {cwd}/test_limits.py:{line_of('_cache.append')}" in out
    assert "PytestAssertRewriteWarning" not in out
    # The table of tests by peak, largest first.
    table = out[out.index("memlens: top 4 tests by peak memory"):].splitlines()
    assert table[2].endswith("test_limits.py::test_big_table_over_limit")
    assert table[5].endswith("test_limits.py::test_small")
    check_results(cwd, ["test_small", "test_big_table_over_limit", "test_within_limit",
                        "test_leaky_cache"])


def check_results(cwd, tests):
    """tests.json names each test and its recording, which memlens can read."""
    results = json.loads((cwd / ".memlens/tests.json").read_text())
    assert {t["name"] for t in results["tests"]} == {f"test_limits.py::{n}" for n in tests}
    assert len(list((cwd / ".memlens/tests").glob("*.memlens"))) == len(tests)
    big = next((t for t in results["tests"] if t["name"].endswith("test_big_table_over_limit")), None)
    if big is not None:
        summary = json.loads(run([_cli_binary(), "summary", "--json", cwd / ".memlens" / big["recording"]], cwd))
        assert summary["peak_heap_bytes"] == big["peak_bytes"]
        assert summary["top_at_peak"][0]["line"] == line_of("return [bytearray")


def test_a_limit_failure_names_the_projects_line_with_the_library_call_beside_it(venv, tmp_path):
    """numpy allocates the array inside `np.ones`: the message names the project's line that
    called it (the user's code first), with numpy's frame beside it, and no memlens frame."""
    cwd = tmp_path / "proj"
    shutil.copytree(NUMPY_PROJECT, cwd)
    out = run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider"], cwd, check_status=1)
    assert "memlens: limit_memory: the test's peak memory was 7.6 MiB" in out, out
    lines = (cwd / "test_arrays.py").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "np.ones(n)" in text)
    site = re.search(r"^\s+7\.6 MiB  load  (\S+):(\d+)  \(in ones (\S+):\d+\)$", out, re.M)
    assert site, out
    assert site.group(1) == f"{cwd}/test_arrays.py" and int(site.group(2)) == line, out
    assert site.group(3).endswith("/site-packages/numpy/_core/numeric.py"), out
    sites = out[out.index("top call sites"):out.index("recording: ")]
    assert "memlens" not in sites, sites


def test_with_native_stacks_a_limit_failure_names_numpys_c_function_beside_the_line(venv, tmp_path):
    """--memlens-native-stacks: the array's data is malloc'ed by numpy's C code, which the
    message names beside the project's line (the user's code still first)."""
    cwd = tmp_path / "proj"
    shutil.copytree(NUMPY_PROJECT, cwd)
    out = run([venv / "bin/pytest", "--memlens", "--memlens-native-stacks", "-p", "no:cacheprovider"],
              cwd, check_status=1)
    lines = (cwd / "test_arrays.py").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "np.ones(n)" in text)
    site = re.search(r"^\s+7\.6 MiB  load  (\S+):(\d+)  \(in (\S+) (\S+):\d+\)$", out, re.M)
    assert site, out
    assert site.group(1) == f"{cwd}/test_arrays.py" and int(site.group(2)) == line, out
    # numpy's allocator (its wheels have symbol tables, no line tables), in its C module.
    assert site.group(3) in ("default_malloc", "PyDataMem_UserNEW"), out
    assert "/site-packages/numpy/_core/_multiarray_umath" in site.group(4), out


def test_compare_fails_on_a_regression_and_passes_without_one(venv, tmp_path):
    cwd = project(tmp_path)
    args = [venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider", "-k", "grows"]
    run([*args, "--memlens-dir", "base"], cwd)
    same = run([*args, "--memlens-dir", "same", "--memlens-compare", "base"], cwd)
    assert "memlens: no test's peak grew more than 10% vs base" in same
    env = clean_env()
    env["GROWS_BYTES"] = "5000000"
    worse = run([*args, "--memlens-dir", "worse", "--memlens-compare", "base"], cwd,
                check_status=1, env=env)
    assert "1 passed" in worse
    assert "memlens: FAILED: peak memory grew more than 10% vs base" in worse
    # 1 MB then 5 MB, plus a few hundred bytes of pytest's own per test: +39x% to +40x%.
    assert re.search(r"test_limits.py::test_grows: 9\d\d\.\d KiB -> 4\.8 MiB \(\+(39|40)\d%\)", worse), worse
    # Where it grew: the test's own line, from `memlens diff` of the two recordings.
    assert re.search(r"^    \+3\.8 MiB  test_grows  test_limits\.py$", worse, re.M), worse


def test_compare_lines_up_runs_from_venvs_of_different_python_versions(venv, wheel, tmp_path):
    """The base run in the test venv's Python, the head run in a venv of another Python version
    inside the project: the changed call site is the same test line, not a -X/+X pair."""
    other = _other_python(venv)
    if other is None:
        pytest.skip("no second CPython 3.9-3.15 on PATH or in ~/.pyenv/versions")
    cwd = project(tmp_path)
    head_venv = cwd / ".venv-head"
    run([other, "-m", "venv", head_venv], cwd)
    run([head_venv / "bin/pip", "install", "-q", "--disable-pip-version-check", wheel, "pytest"], cwd)
    args = ["--memlens", "-p", "no:cacheprovider", "-k", "grows"]
    run([venv / "bin/pytest", *args, "--memlens-dir", "base"], cwd)
    env = clean_env()
    env["GROWS_BYTES"] = "5000000"
    worse = run([head_venv / "bin/pytest", *args, "--memlens-dir", "head", "--memlens-compare", "base"],
                cwd, check_status=1, env=env)
    assert "memlens: FAILED: peak memory grew more than 10% vs base" in worse
    changes = re.findall(r"^    ([+-]\S+ \S+)  (\S+)  (\S+)", worse, re.M)
    assert changes and changes[0][1:] == ("test_grows", "test_limits.py"), worse
    assert all("venv" not in c[2] and "python3." not in c[2] for c in changes), worse


def _other_python(venv):
    """A CPython 3.9-3.15 of another minor version than the venv's."""
    import glob
    import subprocess

    mine = subprocess.run([venv / "bin/python", "-c", "import sys; print(sys.version_info[1])"],
                          capture_output=True, text=True).stdout.strip()
    for minor in ("12", "11", "13", "10"):
        if minor == mine:
            continue
        found = shutil.which(f"python3.{minor}")
        candidates = ([found] if found else []) + sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}.*/bin/python3.{minor}")))
        for c in candidates:
            ok = subprocess.run([c, "-c", "pass"], capture_output=True).returncode == 0
            if ok:
                return c
    return None


def test_xdist_workers_record_their_tests(venv, tmp_path):
    cwd = project(tmp_path)
    out = run([venv / "bin/pytest", "--memlens", "-n", "2", "-p", "no:cacheprovider",
               "-k", "not grows"], cwd, check_status=1)
    assert "2 failed, 2 passed" in out
    assert f"memlens: limit_memory: the test's peak memory was {BIG_TABLE_PEAK}" in out, out
    assert "memlens: limit_leaks: the test's memory left allocated was 2.9 MiB" in out
    table = out[out.index("memlens: top 4 tests by peak memory"):].splitlines()
    assert table[2].endswith("test_limits.py::test_big_table_over_limit")
    check_results(cwd, ["test_small", "test_big_table_over_limit", "test_within_limit",
                        "test_leaky_cache"])


def test_under_memlens_run_each_test_is_a_span_of_the_sessions_recording(venv, tmp_path):
    cwd = project(tmp_path)
    run([venv / "bin/memlens", "run", "-q", "-o", "session.memlens", "-m", "pytest",
         "-p", "no:cacheprovider", "-k", "not grows"], cwd)
    spans = json.loads(run([venv / "bin/memlens", "spans", "--json", "session.memlens"], cwd))
    by_name = {s["name"]: s for s in spans["spans"]}
    assert sorted(by_name) == [f"test_limits.py::{t}" for t in (
        "test_big_table_over_limit", "test_leaky_cache", "test_small", "test_within_limit")]
    big = by_name["test_limits.py::test_big_table_over_limit"]
    assert 40_000_000 <= big["peak_bytes"] < 45_000_000 and big["leaked_bytes"] < 1_000_000
    leaky = by_name["test_limits.py::test_leaky_cache"]
    assert 3_000_000 <= leaky["leaked_bytes"] < 3_100_000
    assert by_name["test_limits.py::test_small"]["peak_bytes"] < 1_000_000
    assert spans["open"] == []


BAD_MARKERS = '''
import pytest

@pytest.mark.limit_memory("24 XB")
def test_unknown_unit():
    pass

@pytest.mark.limit_memory("-5 MB")
def test_negative():
    pass

@pytest.mark.limit_memory()
def test_no_size():
    pass

@pytest.mark.limit_leaks(float("nan"))
def test_nan():
    pass

def test_fine():
    assert bytearray(1000)
'''


def test_a_bad_limit_marker_errors_that_test_only(venv, tmp_path):
    (tmp_path / "test_bad.py").write_text(BAD_MARKERS)
    out = run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider", "-rA"], tmp_path,
              check_status=1)
    assert "INTERNALERROR" not in out and "Traceback" not in out, out
    assert "1 passed, 4 errors" in out, out
    assert ("memlens: @pytest.mark.limit_memory('24 XB'): unknown unit 'XB' in the size '24 XB'"
            in out), out
    assert "memlens: @pytest.mark.limit_memory('-5 MB'): the size '-5 MB' is negative" in out, out
    assert ("memlens: @pytest.mark.limit_memory(): give one size, "
            "e.g. @pytest.mark.limit_memory(\"24 MB\")") in out, out
    assert "memlens: @pytest.mark.limit_leaks(nan): nan is not a size" in out, out
    # The rest of the run reports as usual.
    assert "PASSED test_bad.py::test_fine" in out, out
    assert "memlens: top 1 tests by peak memory" in out, out


def test_compare_fails_closed_when_it_cannot_decide(venv, tmp_path):
    cwd = project(tmp_path)
    args = [venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider", "-k", "grows"]
    # No baseline at all.
    out = run([*args, "--memlens-compare", "missing"], cwd, check_status=1)
    assert "1 passed" in out
    assert ("memlens: FAILED: cannot compare with the baseline: missing does not exist (make the "
            "baseline with `pytest --memlens --memlens-dir missing`)") in out, out
    # A baseline that shares no test with this run.
    run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider", "-k", "small",
         "--memlens-dir", "other"], cwd)
    out = run([*args, "--memlens-dir", "head", "--memlens-compare", "other"], cwd, check_status=1)
    assert ("memlens: FAILED: nothing to compare: none of the 1 tests of this run is in the "
            "baseline other (which has 1)") in out, out
    # This run's own folder: a usage error before anything runs.
    out = run([*args, "--memlens-compare", ".memlens"], cwd, check_status=4)
    assert "--memlens-compare .memlens is this run's own --memlens-dir" in out, out
    out = run([*args, "--memlens-compare", "other", "--memlens-threshold", "nan"], cwd,
              check_status=4)
    assert "--memlens-threshold nan: give a percentage, 0 or more" in out, out


def test_a_limit_failure_names_a_recording_that_pastes_into_memlens_summary(venv, tmp_path):
    cwd = project(tmp_path)
    out = run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider", "-k", "over_limit"],
              cwd, check_status=1)
    m = re.search(r"^  recording: (\S+)  \(memlens summary (\S+); memlens view (\S+)\)$", out, re.M)
    assert m, out
    assert m.group(1).startswith(".memlens/tests/") and m.group(1) == m.group(2), out
    summary = run([venv / "bin/memlens", "summary", m.group(1)], cwd)
    assert f"{listcomp('make_table')}  " in summary, summary


FILLS_THE_DISK = '''
import pytest

def test_first():
    keep = [bytearray(i % 4096) for i in range(200_000)]

def test_second():
    keep = [bytearray(i % 4096) for i in range(200_000)]

def test_third():
    assert True
'''


def test_a_full_disk_keeps_passing_tests_passing(venv, tmp_path, small_disk):
    """--memlens-dir on a 16 KiB tmpfs: the first recording fills it. The tests still pass
    (exit 0), the plugin warns once, clearly, and the summary says how many tests have no
    recording; no OSError traceback."""
    (tmp_path / "test_fill.py").write_text(FILLS_THE_DISK)
    out = run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider",
               "--memlens-dir", small_disk / "rec"], tmp_path)
    assert "3 passed" in out, out
    assert "Traceback" not in out and "INTERNALERROR" not in out and "OSError" not in out, out
    assert out.count("memlens: warning: the recording of") == 1, out
    assert "the disk is full: no space left on the device holding" in out, out
    assert re.search(r"memlens: WARNING: [23] tests have no recording \(they ran, and their "
                     r"outcome stands\)", out), out
    # A limit on such a test cannot be checked: that test fails closed, the others pass.
    (tmp_path / "test_fill.py").write_text(FILLS_THE_DISK.replace(
        "def test_third", '@pytest.mark.limit_memory("1 GB")\ndef test_third'))
    out = run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider",
               "--memlens-dir", small_disk / "rec2"], tmp_path, check_status=1)
    assert "1 failed, 2 passed" in out, out
    assert "memlens: limit_memory('1 GB') could not be checked: the test's recording could not be written" in out, out


def test_sampled_runs_say_their_figures_are_estimates_and_refuse_exact_baselines(venv, tmp_path):
    """--memlens-sample: a limit failure says its figure is an estimate (40 MB of 1 KB blocks
    sampled every 512 KiB: relative standard error 11%, so the 24 MB limit is crossed at
    3.8 standard errors below the estimate's mean); a compare with an exact baseline fails
    closed; a bad rate is a usage error."""
    cwd = project(tmp_path)
    base = [venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider"]
    out = run([*base, "--memlens-sample", "512KiB", "-k", "big_table"], cwd, check_status=1)
    assert re.search(r"memlens: limit_memory: the test's peak memory was \d+\.\d MiB \(\d+ bytes\) "
                     r"\(an estimate: sampled every 512\.0 KiB\), over the limit of 24 MB", out), out
    assert "tests by peak memory (an estimate: sampled every 512.0 KiB)" in out, out
    results = json.loads((cwd / ".memlens/tests.json").read_text())
    assert results["tests"][0]["sample_bytes"] == 524288
    run([*base, "-k", "grows", "--memlens-dir", "exact"], cwd)
    out = run([*base, "-k", "grows", "--memlens-dir", "sampled", "--memlens-sample", "512KiB",
               "--memlens-compare", "exact"], cwd, check_status=1)
    assert ("memlens: FAILED: 1 tests could not be compared: the baseline and this run sample "
            "differently (--memlens-sample), e.g. test_limits.py::test_grows") in out, out
    # Regression: it went on "no test's peak grew more than 10% ... (1 tests compared)".
    assert "no test's peak grew" not in out and "tests compared" not in out, out
    for bad in ["0", "-1MiB", "lots", "2GiB"]:
        out = run([*base, f"--memlens-sample={bad}"], cwd, check_status=4)
        assert f"--memlens-sample '{bad}': " in out, out


def test_a_tests_pool_workers_count_toward_its_limit(venv, tmp_path):
    """The test allocates next to nothing itself; its pool's workers (forked or spawned)
    build 30 MiB each: the limit is checked against all of them together, and the
    recording holds every worker, with the allocation at its line."""
    cwd = tmp_path / "proj"
    shutil.copytree(Path(__file__).parent / "data" / "pool_project", cwd)
    out = run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider"], cwd, check_status=1)
    assert "2 failed" in out, out
    for method in ("fork", "spawn"):
        assert f"FAILED test_pool.py::test_pool[{method}]" in out, out
    assert re.search(r"limit_memory: the test's peak memory was (3\d|[4-9]\d)\.\d MiB", out), out
    results = json.loads((cwd / ".memlens/tests.json").read_text())
    lines = (cwd / "test_pool.py").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "POOL_WORKER_LINE" in text)
    for t in results["tests"]:
        path = cwd / ".memlens" / t["recording"]
        summary = json.loads(run([_cli_binary(), "summary", "--json", path], cwd))
        # The test's process and its workers (an idle one the pool terminated before it
        # started may have no recording).
        assert len(summary["processes"]) >= 2, summary["processes"]
        assert t["peak_bytes"] == summary["all_processes"]["peak_heap_bytes"]
        # (By peak: on 3.15 a spawned worker's imports alone allocate 30 MiB in all.)
        workers = [p for p in summary["processes"][1:] if p["peak_heap_bytes"] >= 30 << 20]
        assert workers, summary["processes"]
        pid = str(workers[0]["pid"])
        one = json.loads(run([_cli_binary(), "summary", "--json", "--process", pid, path], cwd))
        assert one["top_at_peak"][0]["line"] == line, one["top_at_peak"][0]
    # The failure message names the workers' line, in the worker (regression: it listed only
    # the test's process's few hundred KiB of set-up).
    # (Each of the two workers once; pytest 8 repeats the message in its short summary.)
    where = rf"  build  {re.escape(str(cwd))}/test_pool\.py:{line}  in child (\d+)"
    assert len(set(re.findall(rf"^ +30\.0 MiB{where} \(fork\)$", out, re.M))) == 2, out
    # A spawned worker starts a new interpreter: its imports are part of the peak too, which
    # may be before the workers' 30 MiB.
    spawned = r" in child \d+ \(python[\d.]*( -\S+)* -c from multiprocessing\.spawn "
    assert re.search(spawned, out), out


CHILDREN = '''
import os
import subprocess
import sys

import pytest


@pytest.mark.limit_memory("5 MB")
def test_fork():
    pid = os.fork()
    if pid == 0:
        big = bytearray(20_000_000)  # FORK_LINE
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.limit_memory("1 MB")
def test_subprocess():
    subprocess.run([sys.executable, "-c", "x = bytearray(30_000_000)"], check=True)
'''


def test_a_limit_failure_names_the_call_sites_in_the_tests_children(venv, tmp_path):
    """Regression: a limit crossed by a child's memory said "(no call sites recorded)": the
    sites came from the test's own process only. They are those of the peak of all the
    test's processes together, each child named, with the command that shows it alone."""
    (tmp_path / "test_children.py").write_text(CHILDREN)
    out = run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider"], tmp_path,
              check_status=1)
    assert "2 failed" in out and "(no call sites recorded)" not in out, out
    line = 1 + CHILDREN.splitlines().index("        big = bytearray(20_000_000)  # FORK_LINE")
    fork = re.search(rf"^ +19\.1 MiB  test_fork  {re.escape(str(tmp_path))}/test_children\.py:"
                     rf"{line}  in child (\d+) \(fork\)$", out, re.M)
    assert fork, out
    assert re.search(r"^ +28\.6 MiB  <module>  <string>:1  in child \d+ "
                     r"\(python[\d.]* -c x = bytearray\(30_000_000\)\)$", out, re.M), out
    # The command the message gives shows the child's own figures.
    m = re.search(rf"; memlens summary --process {fork.group(1)} (\S+);", out)
    assert m, out
    child = json.loads(run([_cli_binary(), "summary", "--json", "--process", fork.group(1),
                            m.group(1)], tmp_path))
    assert child["top_at_peak"][0]["line"] == line, child["top_at_peak"]


SELF_RECORDING = '''
import memlens
import pytest


@pytest.fixture
def recorded(tmp_path):
    with memlens.record(tmp_path / "fixture.memlens", census=False) as r:
        yield r


def test_records_itself(tmp_path):
    with memlens.record(tmp_path / "own.memlens", census=False) as r:
        data = bytearray(3_000_000)
    assert r.peak_bytes >= 3_000_000


def test_in_a_recording_fixture(recorded):
    data = bytearray(2_000_000)


@pytest.mark.limit_memory("100 MB")
def test_records_itself_with_a_limit(tmp_path):
    with memlens.record(tmp_path / "own.memlens", census=False):
        pass


def test_plain():
    data = bytearray(1_000_000)
'''


def test_a_test_that_records_itself_runs_as_it_does_without_the_plugin(venv, tmp_path):
    """Regression: a test calling memlens.record() failed under --memlens only ("blocks cannot
    nest"). The plugin gives way: the test's own block runs as without --memlens, the test has
    no recording of the plugin's and the summary says so; a limit on it cannot be checked."""
    (tmp_path / "test_self.py").write_text(SELF_RECORDING)
    args = [venv / "bin/pytest", "-p", "no:cacheprovider", "-rA"]
    assert "4 passed" in run(args, tmp_path)
    out = run([*args, "--memlens"], tmp_path, check_status=1)
    assert "1 failed, 3 passed" in out and "blocks cannot nest" not in out, out
    assert ("memlens: limit_memory('100 MB') could not be checked: pytest --memlens does not "
            "record this test: it records its own memory with memlens.record()") in out, out
    assert ("memlens: not recorded: test_self.py::test_records_itself and 2 more: it records "
            "its own memory with memlens.record()") in out, out
    results = json.loads((tmp_path / ".memlens/tests.json").read_text())
    assert [t["name"] for t in results["tests"]] == ["test_self.py::test_plain"], results
    assert {t["name"].split("::")[1] for t in results["not_recorded"]} == {
        "test_records_itself", "test_in_a_recording_fixture", "test_records_itself_with_a_limit"}
    assert len(list((tmp_path / ".memlens/tests").glob("*.memlens"))) == 1


def test_an_empty_test_records_next_to_nothing(venv, tmp_path):
    """Regression: an empty test's recording had pytest's own work around the call (1.2 KiB at
    its peak from _pytest/nodes.py, ~500 B left by _pytest/skipping.py): the recorded window
    is the call of the test function now."""
    (tmp_path / "test_empty.py").write_text(
        "def test_empty():\n    pass\n\n\ndef test_empty_again():\n    pass\n")
    run([venv / "bin/pytest", "--memlens", "-p", "no:cacheprovider"], tmp_path)
    # The second: before 3.11 the first call of each of pytest's functions in the window makes
    # its frame object, which CPython keeps for the function's next call (about 3 KiB).
    t = json.loads((tmp_path / ".memlens/tests.json").read_text())["tests"][1]
    assert t["name"].endswith("test_empty_again"), t
    assert t["peak_bytes"] < 512 and t["leaked_bytes"] < 256, t
    text = run([_cli_binary(), "summary", tmp_path / ".memlens" / t["recording"]], tmp_path)
    assert "skipping.py" not in text and "nodes.py" not in text, text
