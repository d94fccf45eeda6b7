#!/usr/bin/env python3
"""Shadow stack vs frame walking: how memlens gets each allocation's Python stack.

memlens keeps a shadow stack per thread with a C profile function (a push per call, a pop
per return) and sends only what changed since the thread's last allocation. The obvious
alternative walks the thread's frames at every allocation. The tracer has that mode too,
for this measurement only (``MEMLENS_STACKS=walk``: ``PyEval_GetFrame`` and the public
frame API, frame by frame, at each allocation made with the GIL held).

Runs each workload plain, under ``memlens run`` and under ``MEMLENS_STACKS=walk memlens run``,
REPEAT times, and prints median times, slowdowns, and whether both modes name the same top
call site at the peak (they must).

    python3 bench/stack_modes.py          # uses target/release/memlens
    REPEAT=5 python3 bench/stack_modes.py --only deep_stack
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import MEMLENS, WORKLOADS, arguments, timed

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
    args = arguments(__doc__, "stack_modes")
    tmp = Path(tempfile.mkdtemp(prefix="memlens-stacks-"))
    (tmp / "deep_stack.py").write_text(DEEP)
    workloads = {n: WORKLOADS / f"{n}.py" for n in ("churn", "json_work", "threads_work")}
    workloads["deep_stack"] = tmp / "deep_stack.py"
    if args.only:
        workloads = {n: w for n, w in workloads.items() if n in args.only.split(",")}
    py = sys.executable
    print("| workload | plain s | shadow stack | frame walking | walking / shadow | same top site |")
    print("|---|---|---|---|---|---|")
    for name, w in workloads.items():
        times, sites = {}, {}
        for mode in ("plain", "shadow", "walk"):
            out = tmp / f"{name}.{mode}.memlens"
            cmd = [py, str(w)] if mode == "plain" else [str(MEMLENS), "run", "-q", "--python", py, "-o", str(out), str(w)]
            env = dict(os.environ, MEMLENS_STACKS=mode)
            times[mode] = statistics.median(timed(cmd, env=env) for _ in range(args.repeat))
            if mode != "plain":
                sites[mode] = top_site(out)
        p = times["plain"]
        print(f"| {name} | {p:.2f} | {times['shadow']:.2f} s ({times['shadow'] / p:.2f}x) | "
              f"{times['walk']:.2f} s ({times['walk'] / p:.2f}x) | {times['walk'] / times['shadow']:.2f} | "
              f"{'yes' if sites['shadow'] == sites['walk'] else 'NO: ' + str(sites)} |", flush=True)


if __name__ == "__main__":
    main()
