"""The installed wheel: the memlens command and the `memlens` module, from a fresh venv."""

import json
import zipfile

from conftest import run

SCRIPT = """
import memlens
keep = []
with memlens.span("load"):
    keep.append(bytearray(20_000_000))
with memlens.span("scratch"):
    tmp = bytearray(30_000_000)
    del tmp
"""


def test_wheel_holds_the_command_the_package_and_the_tracer(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "memlens/libmemlens_tracer.so" in names
    assert "memlens/pytest_plugin.py" in names
    assert any(n.endswith(".data/scripts/memlens") for n in names)
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl")


def test_memlens_run_from_the_venv_without_activating_it(venv, tmp_path):
    (tmp_path / "load.py").write_text(SCRIPT)
    out = run([venv / "bin/memlens", "run", "-o", "load.memlens", "load.py"], tmp_path)
    assert "wrote load.memlens" in out
    summary = json.loads(run([venv / "bin/memlens", "summary", "--json", "load.memlens"], tmp_path))
    # The venv's interpreter (next to memlens), not python3 from PATH.
    assert summary["command_line"][0] == str(venv / "bin/python3")
    assert summary["complete"] and summary["exit_code"] == 0
    assert summary["peak_heap_bytes"] >= 50_000_000
    spans = json.loads(run([venv / "bin/memlens", "spans", "--json", "load.memlens"], tmp_path))
    by_name = {s["name"]: s for s in spans["spans"]}
    assert 20_000_000 <= by_name["load"]["leaked_bytes"] < 21_000_000
    assert 30_000_000 <= by_name["scratch"]["peak_bytes"] < 31_000_000
    assert by_name["scratch"]["leaked_bytes"] < 1_000_000
    assert by_name["load"]["top_leaks"][0]["line"] == 5


def test_the_module_imports_and_python_dash_m_runs_the_command(venv, tmp_path):
    out = run([venv / "bin/python", "-c", "import memlens, memlens.ipython; "
               "print(memlens.is_tracing(), memlens.__file__)"], tmp_path)
    assert out.startswith("False ") and "site-packages/memlens/__init__.py" in out
    out = run([venv / "bin/python", "-m", "memlens", "--version"], tmp_path)
    assert out.startswith("memlens ")


def test_single_file_report_from_the_wheel(venv, tmp_path):
    run([venv / "bin/memlens", "run", "-q", "-o", "c.memlens", "-c", "x = [0] * 10**6"], tmp_path)
    run([venv / "bin/memlens", "report", "--single-file", "-o", "c.html", "c.memlens"], tmp_path)
    assert "window.memlensRecording" in (tmp_path / "c.html").read_text()


def test_a_collection_whose_start_was_not_seen_has_an_unknown_duration(monkeypatch):
    import time

    import memlens

    said = []

    class Tracer:
        def memlens_gc(self, *event):
            said.append(event)

    monkeypatch.setattr(memlens, "_lib", Tracer())
    monkeypatch.setattr(memlens, "_gc_start_ns", 0)
    # Tracing began during this collection: only its stop is seen.
    memlens._gc_callback("stop", {"generation": 2, "collected": 5, "uncollectable": 1})
    before = time.monotonic_ns()
    memlens._gc_callback("start", {"generation": 0})
    memlens._gc_callback("stop", {"generation": 0, "collected": 3, "uncollectable": 0})
    took = time.monotonic_ns() - before
    assert said[0] == (2, 0, 5, 1)
    generation, duration, collected, uncollectable = said[1]
    assert (generation, collected, uncollectable) == (0, 3, 0)
    assert 0 <= duration <= took
    # And a later stop without its start does not reuse this one's.
    memlens._gc_callback("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert said[2] == (1, 0, 0, 0)
