"""IPython/Jupyter: ``%load_ext memlens``, then a cell starting with ``%%memlens`` is recorded.

The cell runs in a **separate Python process** under ``memlens run -c`` (memlens cannot start
tracing inside a running interpreter yet): the notebook's variables and imports are *not*
visible to it, and variables it defines do not come back. Its output is shown; the result is
a short text summary and the single-file memlens report in an iframe (``srcdoc``, so the
notebook file holds everything and opens offline).

Options: ``%%memlens --no-native`` (Python allocators only), ``%%memlens -o FILE`` (keep the
recording), ``%%memlens --height 500`` (iframe height in pixels).
"""

import argparse
import html
import json
import os
import shlex
import sys
import tempfile

from memlens import _cli


def _fmt(n):
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class CellReport:
    """What ``%%memlens`` returns: shown as text in a terminal, as summary + viewer in a
    notebook."""

    def __init__(self, summary, report_html, recording, exit_code, height):
        self.summary = summary
        self.report_html = report_html
        self.recording = recording
        self.exit_code = exit_code
        self.height = height

    def text(self):
        s = self.summary
        lines = [
            f"memlens: peak {_fmt(s['peak_heap_bytes'])}, "
            f"{_fmt(s['leaked_bytes'])} still allocated at the end, "
            f"{s['alloc_count']} allocations ({_fmt(s['alloc_bytes'])} in total)"
        ]
        if self.exit_code:
            lines.append(f"memlens: the cell failed (exit status {self.exit_code})")
        for site in s["top_at_peak"][:3]:
            where = f"  {site['file']}:{site['line']}" if site["file"] else ""
            lines.append(f"  {_fmt(site['bytes']):>10}  {site['function']}{where}")
        if self.recording:
            lines.append(f"recording: {self.recording}")
        return "\n".join(lines)

    def __repr__(self):
        return self.text()

    def _repr_html_(self):
        parts = [f"<pre>{html.escape(self.text())}</pre>"]
        if self.report_html is not None:
            parts.append(
                f'<iframe srcdoc="{html.escape(self.report_html, quote=True)}" '
                f'style="width:100%;height:{self.height}px;border:1px solid #ddd" '
                'sandbox="allow-scripts"></iframe>'
            )
        return "\n".join(parts)


def _parser():
    p = argparse.ArgumentParser(prog="%%memlens", add_help=False)
    p.add_argument("--no-native", action="store_true")
    p.add_argument("-o", "--output")
    p.add_argument("--height", type=int, default=600)
    return p


def record_cell(line, cell):
    """Runs `cell` under ``memlens run -c`` and returns a :class:`CellReport`."""
    opts = _parser().parse_args(shlex.split(line))
    with tempfile.TemporaryDirectory(prefix="memlens-cell-") as tmp:
        recording = opts.output or os.path.join(tmp, "cell.memlens")
        args = ["run", "-q", "--python", sys.executable, "-o", recording]
        if opts.no_native:
            args.append("--no-native")
        done = _cli.run([*args, "-c", cell], capture_output=True)
        # The cell's own output, as if it had run here.
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        if not os.path.isfile(recording):
            raise RuntimeError(f"memlens run wrote no recording (exit status {done.returncode})")
        summary = _cli.run(["summary", "--json", recording], capture_output=True, check=True)
        page = os.path.join(tmp, "report.html")
        report = _cli.run(["report", "--single-file", "-o", page, recording], capture_output=True)
        report_html = None
        if report.returncode == 0:
            with open(page, encoding="utf-8") as f:
                report_html = f.read()
        else:
            sys.stderr.write(f"memlens: no viewer report: {report.stderr.strip()}\n")
        return CellReport(
            json.loads(summary.stdout),
            report_html,
            opts.output,
            done.returncode,
            opts.height,
        )


def load_ipython_extension(ipython):
    from IPython.core.magic import Magics, cell_magic, magics_class

    @magics_class
    class MemlensMagics(Magics):
        @cell_magic
        def memlens(self, line, cell):
            """Record this cell's memory in a separate process (notebook variables are not
            available to it); show a summary and the memlens viewer."""
            return record_cell(line, cell)

    ipython.register_magics(MemlensMagics)
