#!/usr/bin/env python3
"""How memlens gets each allocation's Python stack, three ways, measured.

memlens keeps a shadow stack per thread and sends only what changed since the thread's
last allocation. It keeps it from the frame-evaluation hook (PEP 523: one C call per
Python call, the default on 3.9 to 3.15); the fallback is a C profile function (a push per
call, a pop per return; ``MEMLENS_STACKS=profile`` forces it here), which also makes the
interpreter check for tracing at every instruction (3.9-3.11; 3.12+ instruments every
function instead) and call it at every builtin call. The
obvious alternative walks the thread's frames at every allocation; the tracer has that
mode too, for this measurement only (``MEMLENS_STACKS=walk``: ``PyEval_GetFrame`` and the
public frame API, frame by frame, at each allocation made with the GIL held).

Runs each workload plain and under ``memlens run`` in each mode, REPEAT times, and prints
median times, slowdowns, and whether every mode names the same top call site at the peak
(they must).

    python3 bench/stack_modes.py          # uses target/release/memlens
    REPEAT=5 python3 bench/stack_modes.py --only deep_stack
    python3 bench/stack_modes.py --python ~/.pyenv/versions/3.13.0/bin/python3
"""
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import MEMLENS, WORKLOADS, arguments, describe, timed

# Many small calls: what a per-call mechanism costs.
CALLS = """
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
print(fib(27))
"""

# A workload with deep stacks (50 frames under each allocation), where walking costs most.
DEEP = """
def down(n):
    if n == 0:
        return [str(i) for i in range(100_000)]
    return down(n - 1)
for _ in range(10):
    x = down(50)
"""


def top_site(path):
    s = json.loads(subprocess.run([str(MEMLENS), "summary", "--json", str(path)], check=True,
                                  capture_output=True, text=True).stdout)
    t = s["top_at_peak"][0]
    return f"{t['function']}:{t['line']}"


def main():
    args = arguments(__doc__, "stack_modes", memray=False)
    tmp = Path(tempfile.mkdtemp(prefix="memlens-stacks-"))
    (tmp / "deep_stack.py").write_text(DEEP)
    (tmp / "calls.py").write_text(CALLS)
    workloads = {n: WORKLOADS / f"{n}.py" for n in ("churn", "json_work", "threads_work")}
    workloads["calls"] = tmp / "calls.py"
    workloads["deep_stack"] = tmp / "deep_stack.py"
    if args.only:
        workloads = {n: w for n, w in workloads.items() if n in args.only.split(",")}
    for py in args.python:
        print(f"\n### {describe(py)} ({py})\n", flush=True)
        measure(py, workloads, args.repeat, tmp)


def measure(py, workloads, repeat, tmp):
    modes = {"eval": "frame-evaluation hook", "profile": "profile function", "walk": "frame walking"}
    print("| workload | plain s | " + " | ".join(modes.values()) + " | same top site |")
    print("|---|---|" + "---|" * len(modes) + "---|")
    for name, w in workloads.items():
        times, sites = {}, {}
        for mode in ("plain", *modes):
            out = tmp / f"{name}.{mode}.memlens"
            cmd = [py, str(w)] if mode == "plain" else [str(MEMLENS), "run", "-q", "--python", py, "-o", str(out), str(w)]
            env = dict(os.environ, MEMLENS_STACKS=mode)
            times[mode] = statistics.median(timed(cmd, env=env) for _ in range(repeat))
            if mode != "plain":
                sites[mode] = top_site(out)
        p = times["plain"]
        cells = " | ".join(f"{times[m]:.2f} s ({times[m] / p:.2f}x)" for m in modes)
        same = len(set(sites.values())) == 1
        print(f"| {name} | {p:.2f} | {cells} | {'yes' if same else 'NO: ' + str(sites)} |", flush=True)


if __name__ == "__main__":
    main()
