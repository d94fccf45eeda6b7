"""The %%memlens cell magic, through IPython's InteractiveShell (in the venv's Python)."""

import json
import re

from conftest import listcomp, run

DRIVER = r'''
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "memlens")
ip.run_cell("notebook_var = 1")
r = ip.run_cell_magic("memlens", "", """
rows = [bytearray(1000) for _ in range(30_000)]
print("cell says", len(rows), "rows")
print("sees notebook_var:", "notebook_var" in globals())
""")
print("TEXT<<" + repr(r) + ">>")
print("ROWS-KEPT", len(ip.user_ns["rows"]))
failed = ip.run_cell_magic("memlens", "--no-native", "x = 1 / 0")
print("FAILED<<" + repr(failed) + ">>")
page = r._repr_html_()
print("HTML-LEN", len(page))
print("HAS-IFRAME", '<iframe srcdoc="' in page)
print("HAS-RECORDING", "window.memlensRecording" in page)
print("HAS-SUMMARY", page.startswith("<pre>memlens: peak"))
# The first cell's output holds the viewer for the notebook; later cells' pages ask for it.
print("FIRST-HOLDS", "window.memlensViewers" in page, "memlensWantViewer" in page)
second = failed._repr_html_()
print("SECOND-HOLDS", "window.memlensViewers" in second, "memlensWantViewer" in second)
print("SECOND-LEN", len(second))
alone = ip.run_cell_magic("memlens", "--standalone", "y = [0] * 1000")._repr_html_()
print("STANDALONE", "window.memlensViewers" in alone, "memlensWasmBytes" in alone, len(alone))

# A front-end that names cells (JupyterLab, Notebook 7): the cell holding the viewer holds it
# again when it runs again (its old output, and the viewer with it, is replaced).
import memlens.ipython as magic
class Kernel:
    cell = None
    def get_parent(self):
        return {"metadata": {"cellId": self.cell}}
ip.kernel = Kernel()
magic._viewer_cell = None
holds = []
for cell in ["a", "b", "a", "b"]:
    ip.kernel.cell = cell
    out = ip.run_cell_magic("memlens", "--no-native", "z = 1")._repr_html_()
    holds.append(cell + ("+" if "window.memlensViewers" in out else "-"))
print("HOLDS", " ".join(holds))
'''


def test_cell_magic_records_the_cell_and_shows_the_report(venv, tmp_path):
    out = run([venv / "bin/python", "-c", DRIVER], tmp_path)
    assert "cell says 30000 rows" in out
    # The cell runs in the kernel: it sees the notebook's variables, and its own stay.
    assert "sees notebook_var: True" in out
    assert "ROWS-KEPT 30000" in out
    text = out[out.index("TEXT<<") + 6: out.index(">>")]
    first = text.splitlines()[0]
    assert re.match(r"memlens: peak (29|30|31)\.\d MiB, ", first), text  # 30,000 x 1000 B rows
    # The top site is the cell's line that made the rows.
    site = re.escape(listcomp("<module>"))
    # (30.x MiB; 31.x on 3.15, whose bytearrays take 40 bytes more: conftest.BIG_TABLE_PEAK.)
    assert re.search(rf"^\s+3[01]\.\d MiB  {site}  <ipython-input-\d+-\w+>:1$", text, re.M), text
    # memlens's own frames (the magic's helper that runs the cell) are no call site.
    assert "memlens" not in "\n".join(text.splitlines()[1:]), text
    failed = out[out.index("FAILED<<"):]
    assert "memlens: the cell raised ZeroDivisionError: division by zero" in failed, failed
    # The cell's traceback is shown as any cell's: from the cell's line, no memlens frame.
    shown = re.sub(r"\x1b\[[0-9;]*m", "", out[out.index("ROWS-KEPT"):out.index("FAILED<<")])
    assert "ZeroDivisionError" in shown and "x = 1 / 0" in shown, shown
    assert "memlens" not in shown.replace("%%memlens", ""), shown
    assert "HAS-IFRAME True" in out and "HAS-RECORDING True" in out and "HAS-SUMMARY True" in out
    # The viewer (~2 MB) is in the notebook once: later cells are their recording and a page.
    assert "FIRST-HOLDS True True" in out, out
    assert "SECOND-HOLDS False True" in out, out
    first_len = int(re.search(r"HTML-LEN (\d+)", out).group(1))
    second_len = int(re.search(r"SECOND-LEN (\d+)", out).group(1))
    assert first_len > 1_000_000 and second_len < first_len // 4, (first_len, second_len)
    standalone = re.search(r"STANDALONE (\w+) (\w+) (\d+)", out)
    assert standalone.groups()[:2] == ("False", "True") and int(standalone.group(3)) > 1_000_000, out
    assert "HOLDS a+ b- a+ b-" in out, out


CELLS = r'''
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "memlens")
ip.run_cell("kept = bytearray(20_000_000)", store_history=True)
ip.run_cell("tmp = bytearray(30_000_000); del tmp", store_history=True)
'''


def test_in_a_recorded_kernel_each_cell_is_a_span(venv, tmp_path):
    (tmp_path / "cells.py").write_text(CELLS)
    run([venv / "bin/memlens", "run", "-q", "-o", "cells.memlens", "cells.py"], tmp_path)
    spans = json.loads(run([venv / "bin/memlens", "spans", "--json", "cells.memlens"], tmp_path))
    by_name = {s["name"]: s for s in spans["spans"]}
    assert sorted(by_name) == ["In [1]", "In [2]"], by_name.keys()
    # The cell's 20 MB, and what IPython keeps of a first cell (1.5 MB on 3.15).
    assert 20_000_000 <= by_name["In [1]"]["leaked_bytes"] < 22_000_000
    assert 30_000_000 <= by_name["In [2]"]["peak_bytes"] < 31_000_000
    assert by_name["In [2]"]["leaked_bytes"] < 1_000_000
