"""Runs every command of docs/getting-started-*.md, in order, in one fresh directory.

Doc conventions: a ```python block whose first line is `# file: NAME` is written to NAME; each
line of a ```sh block is a command run with bash (a trailing `# exit N` means it must exit
with N, otherwise 0); ```ipython blocks are cells, run in order through one IPython
InteractiveShell; other blocks are illustrations.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import clean_env, listcomp

DOCS = Path(__file__).resolve().parents[3] / "docs"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)

CELLS_DRIVER = r'''
import json, sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
for cell in json.load(open(sys.argv[1])):
    result = ip.run_cell(cell)
    if not result.success:
        raise SystemExit(f"cell failed: {cell!r}: {result.error_in_exec or result.error_before_exec}")
    if result.result is not None:
        print("RESULT<<" + repr(result.result) + ">>")
'''


def run_doc(name, cwd):
    """Runs one doc's blocks; returns the combined output of its commands and cells."""
    text = (DOCS / name).read_text()
    outputs, cells = [], []
    for lang, body in BLOCK.findall(text):
        if lang == "python" and body.startswith("# file: "):
            first, rest = body.split("\n", 1)
            (cwd / first[len("# file: "):].strip()).write_text(rest)
        elif lang == "sh":
            for line in body.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                m = re.search(r"#\s*exit (\d+)\s*$", line)
                want = int(m.group(1)) if m else 0
                done = subprocess.run(["bash", "-c", line], cwd=cwd, env=clean_env(),
                                      capture_output=True, text=True)
                out = done.stdout + done.stderr
                assert done.returncode == want, f"{name}: `{line}` exited {done.returncode}\n{out}"
                outputs.append(out)
        elif lang == "ipython":
            cells.append(body)
    if cells:
        import json

        (cwd / "cells.json").write_text(json.dumps(cells))
        done = subprocess.run(["venv/bin/python", "-c", CELLS_DRIVER, "cells.json"], cwd=cwd,
                              env=clean_env(), capture_output=True, text=True)
        out = done.stdout + done.stderr
        assert done.returncode == 0, f"{name}: cells failed\n{out}"
        outputs.append(out)
    return "\n".join(outputs)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, wheel):
    d = tmp_path_factory.mktemp("docs")
    shutil.copy(wheel, d)
    return d


def test_getting_started_cli(workdir):
    out = run_doc("getting-started-cli.md", workdir)
    # `memlens spans`: "load" keeps its ~20 MB, "scratch" peaks at 50 MB and keeps nothing.
    assert re.search(r"^\s+20\.\d MiB\s+20\.\d MiB\s+[\d,]+\s+load$", out, re.M), out
    assert re.search(r"^\s+47\.\d MiB\s+\d+ B\s+[\d,]+\s+scratch$", out, re.M), out
    assert '"peak_heap_bytes"' in (workdir / "load.json").read_text()
    assert "window.memlensRecording" in (workdir / "load.html").read_text()
    assert (workdir / "code.memlens").is_file() and (workdir / "json.memlens").is_file()
    # memlens.record(): the block's dict (200,000 entries and their strings) is its peak and
    # stays; the warm-up list made before the block is not in the recording.
    m = re.search(r"^peak (\d+) MiB, left (\d+) MiB$", out, re.M)
    assert m and 15 <= int(m.group(1)) <= 60 and int(m.group(2)) >= 15, out
    block = out[out.index("block.memlens\n  command"):]
    assert "build_index.<locals>.<dictcomp>" in block and "block.py:3\n" not in block, block


def test_getting_started_pytest(workdir):
    out = run_doc("getting-started-pytest.md", workdir)
    assert "FAILED test_tables.py::test_big_table - memlens: limit_memory" in out
    assert "over the limit of 24 MB (24000000 bytes)" in out
    assert "memlens: no test's peak grew more than 10% vs baseline" in out
    # The failing test's own recording, read back.
    assert listcomp("make_table") in out[out.index("test_tables.py_test_big_table-"):]


def test_getting_started_notebook(workdir):
    out = run_doc("getting-started-notebook.md", workdir)
    assert "30000 rows" in out
    assert out.count("RESULT<<memlens: peak") == 2, out
    assert (workdir / "cell.memlens").is_file()
