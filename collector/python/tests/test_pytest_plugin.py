"""`pytest --memlens` from the installed wheel, on a small project."""

import json
import os
import re
import shutil
from pathlib import Path

from conftest import clean_env, listcomp, run

PROJECT = Path(__file__).parent / "data" / "limits_project"


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
        "memlens: limit_memory: the test's peak memory was 40.7 MiB" in out
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
    # 1 MB then 5 MB, plus about a kilobyte of pytest's own per test: +39x% to +40x%.
    assert re.search(r"test_limits.py::test_grows: 9\d\d\.\d KiB -> 4\.8 MiB \(\+(39|40)\d%\)", worse), worse


def test_xdist_workers_record_their_tests(venv, tmp_path):
    cwd = project(tmp_path)
    out = run([venv / "bin/pytest", "--memlens", "-n", "2", "-p", "no:cacheprovider",
               "-k", "not grows"], cwd, check_status=1)
    assert "2 failed, 2 passed" in out
    assert "memlens: limit_memory: the test's peak memory was 40.7 MiB" in out, out
    assert "memlens: limit_leaks: the test's memory left allocated was 2.9 MiB" in out
    table = out[out.index("memlens: top 4 tests by peak memory"):].splitlines()
    assert table[2].endswith("test_limits.py::test_big_table_over_limit")
    check_results(cwd, ["test_small", "test_big_table_over_limit", "test_within_limit",
                        "test_leaky_cache"])
