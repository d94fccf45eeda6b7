"""The %%memlens cell magic, through IPython's InteractiveShell (in the venv's Python)."""

import re

from conftest import run

DRIVER = r'''
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "memlens")
notebook_var = 1
r = ip.run_cell_magic("memlens", "", """
rows = [bytearray(1000) for _ in range(30_000)]
print("cell says", len(rows), "rows")
print("sees notebook_var:", "notebook_var" in globals())
""")
print("TEXT<<" + repr(r) + ">>")
page = r._repr_html_()
print("HTML-LEN", len(page))
print("HAS-IFRAME", '<iframe srcdoc="' in page)
print("HAS-RECORDING", "window.memlensRecording" in page)
print("HAS-SUMMARY", page.startswith("<pre>memlens: peak"))
'''


def test_cell_magic_records_the_cell_and_shows_the_report(venv, tmp_path):
    out = run([venv / "bin/python", "-c", DRIVER], tmp_path)
    assert "cell says 30000 rows" in out
    # The cell runs in its own process: the notebook's variables are not there.
    assert "sees notebook_var: False" in out
    text = out[out.index("TEXT<<") + 6: out.index(">>")]
    first = text.splitlines()[0]
    assert re.match(r"memlens: peak (29|30|31)\.\d MiB, ", first), text  # 30,000 x 1000 B rows
    assert "<listcomp>  <string>:2" in text, text
    assert "HAS-IFRAME True" in out and "HAS-RECORDING True" in out and "HAS-SUMMARY True" in out
