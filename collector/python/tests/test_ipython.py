"""The %%memlens cell magic, through IPython's InteractiveShell (in the venv's Python)."""

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
    assert re.search(rf"^\s+30\.\d MiB  {site}  <ipython-input-\d+-\w+>:1$", text, re.M), text
    # memlens's own frames (the magic's helper that runs the cell) are no call site.
    assert "memlens" not in "\n".join(text.splitlines()[1:]), text
    failed = out[out.index("FAILED<<"):]
    assert "memlens: the cell raised ZeroDivisionError: division by zero" in failed, failed
    assert "HAS-IFRAME True" in out and "HAS-RECORDING True" in out and "HAS-SUMMARY True" in out
