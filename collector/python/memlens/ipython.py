"""IPython/Jupyter: ``%load_ext memlens``, then a cell starting with ``%%memlens`` is recorded.

The cell runs in the kernel as usual (it sees the notebook's variables, and what it defines
stays), inside ``memlens.record()``. Its output is shown; the result is a short text summary
and the memlens viewer on the cell's recording in an iframe (``srcdoc``, so the notebook file
holds everything and opens offline).

The viewer itself (about 2 MB) is kept once per notebook: the output of the first
``%%memlens`` cell run since the kernel started holds it (and so does that cell's output when
it runs again), and every cell's iframe asks the notebook page for it. ``%%memlens
--standalone`` puts a whole viewer in the cell's own output instead (for front-ends that keep
outputs apart, or a cell copied alone into another notebook).

In a kernel that is itself being recorded (``memlens run -m ipykernel_launcher ...``), loading
the extension also makes every cell a span of that recording (``memlens spans``, the
viewer's timeline), named by its prompt, ``In [3]``.

Options: ``%%memlens --no-native`` (Python allocators only), ``%%memlens -o FILE`` (keep the
recording), ``%%memlens --height 500`` (iframe height in pixels), ``%%memlens --standalone``.
"""

import argparse
import html
import json
import os
import shlex
import tempfile

import memlens
from memlens import _cli


def _fmt(n):
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class CellReport:
    """What ``%%memlens`` returns: shown as text in a terminal, as summary + viewer in a
    notebook. ``viewer_html`` is the script that holds the viewer for the notebook's pages
    (``None`` when another cell's output holds it, or ``report_html`` is standalone)."""

    def __init__(self, summary, report_html, recording, error, height, viewer_html=None):
        self.summary = summary
        self.report_html = report_html
        self.viewer_html = viewer_html
        self.recording = recording
        self.error = error
        self.height = height

    def text(self):
        s = self.summary
        lines = [
            f"memlens: peak {_fmt(s['peak_heap_bytes'])}, "
            f"{_fmt(s['leaked_bytes'])} still allocated at the end, "
            f"{s['alloc_count']} allocations ({_fmt(s['alloc_bytes'])} in total)"
        ]
        if self.error is not None:
            lines.append(f"memlens: the cell raised {type(self.error).__name__}: {self.error}")
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
        if self.viewer_html is not None:
            parts.append(self.viewer_html)
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
    p.add_argument("--standalone", action="store_true")
    return p


# The cell whose output holds the viewer for the notebook (its Jupyter cell id, or True when
# the front-end sends none), since the kernel started.
_viewer_cell = None


def _cell_id(shell):
    """The Jupyter cell id of the running cell (ipykernel 6+ with a front-end that sends it),
    else None."""
    try:
        return shell.kernel.get_parent()["metadata"].get("cellId")
    except Exception:  # noqa: BLE001 - not in a kernel, or an older one
        return None


def _holds_viewer(shell):
    """Whether this cell's output is to hold the notebook's viewer: the first ``%%memlens``
    cell since the kernel started, and that cell again when it runs again (its new output
    replaces the one that held it)."""
    global _viewer_cell
    cell = _cell_id(shell)
    if _viewer_cell is None or (cell is not None and cell == _viewer_cell):
        _viewer_cell = cell if cell is not None else True
        return True
    return False


def _run(shell, cell):
    """Runs the cell's code in the notebook's namespace (like ``%%time``: not a nested
    ``run_cell``, which would take over the outer cell's result); returns the exception it
    raised, if any."""
    source = shell.transform_cell(cell)
    # A name IPython's tracebacks know, as for any cell: <ipython-input-N-HASH>.
    filename = shell.compile.cache(source, shell.execution_count)
    try:
        exec(compile(source, filename, "exec"), shell.user_ns)
    except Exception as e:  # noqa: BLE001 - shown like any cell's error, after recording
        return e
    return None


def record_cell(shell, line, cell):
    """Runs `cell` in `shell` inside ``memlens.record()`` and returns a :class:`CellReport`."""
    opts = _parser().parse_args(shlex.split(line))
    with tempfile.TemporaryDirectory(prefix="memlens-cell-") as tmp:
        recording = opts.output or os.path.join(tmp, "cell.memlens")
        with memlens.record(recording, native=not opts.no_native):
            error = _run(shell, cell)
        if error is not None:
            # Shown outside the recording, without this module's frame (tb_offset alone is
            # not honoured by every IPython).
            tb = error.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                tb = tb.tb_next
            error = error.with_traceback(tb)
            shell.showtraceback((type(error), error, tb), tb_offset=0)
        summary = _cli.run(["summary", "--json", recording], capture_output=True, check=True)
        report_html, viewer_html = _viewer_pages(shell, recording, tmp, opts.standalone)
        return CellReport(
            json.loads(summary.stdout),
            report_html,
            opts.output,
            error,
            opts.height,
            viewer_html,
        )


def _viewer_pages(shell, recording, tmp, standalone):
    """The cell's viewer page and, when this cell's output holds the notebook's viewer, the
    script that holds it: ``(page, viewer or None)``; ``(None, None)`` when memlens could not
    make them (said on stderr)."""
    if standalone:
        page = os.path.join(tmp, "report.html")
        args = ["report", "--single-file", "-o", page, recording]
    else:
        page = os.path.join(tmp, "notebook", "cell.html")
        args = ["report", "--notebook", "-o", os.path.dirname(page), recording]
    report = _cli.run(args, capture_output=True)
    if report.returncode != 0:
        shell.write_err(f"memlens: no viewer report: {report.stderr.strip()}\n")
        return None, None
    with open(page, encoding="utf-8") as f:
        report_html = f.read()
    if standalone or not _holds_viewer(shell):
        return report_html, None
    with open(os.path.join(os.path.dirname(page), "viewer.html"), encoding="utf-8") as f:
        return report_html, f.read()


def load_ipython_extension(ipython):
    from IPython.core.magic import Magics, cell_magic, magics_class

    @magics_class
    class MemlensMagics(Magics):
        @cell_magic
        def memlens(self, line, cell):
            """Record this cell's memory; show a summary and the memlens viewer."""
            return record_cell(self.shell, line, cell)

    ipython.register_magics(MemlensMagics)
    if memlens.is_tracing():
        _span_cells(ipython)


def _span_cells(ipython):
    """In a kernel that is itself being recorded (``memlens run -m ipykernel ...``), each cell
    run is a span of that recording, named by its prompt (``In [3]``)."""
    import IPython

    running = []
    # IPython 9 counts a cell before announcing it, earlier versions after running it.
    counted_first = IPython.version_info >= (9,)

    def pre_run_cell(info=None):
        n = ipython.execution_count
        if counted_first and getattr(info, "store_history", False):
            n -= 1
        span = memlens.span(f"In [{n}]")
        span.__enter__()
        running.append(span)

    def post_run_cell(result=None):
        if running:
            running.pop().__exit__(None, None, None)

    ipython.events.register("pre_run_cell", pre_run_cell)
    ipython.events.register("post_run_cell", post_run_cell)
