#!/usr/bin/env python3
"""What an object census costs: per live object, on a synthetic heap and on real programs.

Each program builds its objects, then takes one census itself with ``memlens.mark("measured")``
and prints how long that mark held it: wall time and the thread's CPU time (the machine is
shared: CPU time is the steadier figure). The recording gives the census's object count.
Every program also runs with ``--no-census``, the two modes taking turns round by round, for
the cost of all of a run's censuses (start, the mark, exit) in wall time.

- ``synthetic N``: N live objects, a mix of class instances, lists and tuples;
- ``pandas``: a 200,000-row CSV read three times, grouped, and split into 5,000 frames
  (pandas' ``__sizeof__`` computes deep memory usage: a census that called it spent 20 µs per
  object; memlens's census never calls it);
- ``sympy``: polynomial expansions, derivatives and factorizations (many classes, caches).

    python3 bench/census_cost.py                       # target/release/memlens, CPython 3.11
    python3 bench/census_cost.py --python 3.12 --repeat 5 --only pandas,sympy

The real programs run in bench_env.py's venv for that CPython (made on first use).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_env

ROOT = Path(__file__).resolve().parent.parent
MEMLENS = Path(os.environ.get("MEMLENS", ROOT / "target" / "release" / "memlens"))

MEASURE = """
import sys, time
import memlens
wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
memlens.mark("measured")
print("census-cost", time.perf_counter_ns() - wall, time.thread_time_ns() - cpu)
"""

SYNTHETIC = """
import sys
class Item:
    def __init__(self, i):
        self.i = i
        self.tags = [i]
n = int(sys.argv[1]) // 3
items = [Item(i) for i in range(n)]   # n instances + n lists
table = {i: (i, str(i)) for i in range(n)}  # n tuples
"""

PANDAS = """
import io
import numpy as np
import pandas as pd
rng = np.random.default_rng(0)
n = 200_000
df = pd.DataFrame({"key": rng.integers(0, 1000, n),
                   "name": [f"item{i % 5000}" for i in range(n)],
                   "value": rng.random(n)})
csv = df.to_csv(index=False)
frames = [pd.read_csv(io.StringIO(csv)) for _ in range(3)]
groups = [f.groupby("key")["value"].agg(["mean", "sum", "count"]) for f in frames]
parts = dict(iter(frames[0].groupby("name")))
"""

SYMPY = """
import sympy as sp
x, y, z = sp.symbols("x y z")
exprs = [sp.expand((x + y + z + i) ** 5) for i in range(20)]
derivs = [sp.diff(e, x) for e in exprs]
factored = [sp.factor(d) for d in derivs[:5]]
"""


def run(cmd):
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def census_of(path, label):
    out = subprocess.run([str(MEMLENS), "census", "--json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return next(c for c in json.loads(out)["censuses"] if c["label"] == label)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", default="100000,1000000", help="sizes of the synthetic heap")
    ap.add_argument("--python", default="3.11", help="CPython version (its bench venv)")
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 3)))
    ap.add_argument("--only", help="comma-separated: synthetic, pandas, sympy")
    args = ap.parse_args()
    if not MEMLENS.exists():
        sys.exit(f"census_cost: {MEMLENS} not found; run `cargo build --release -p memlens -p memlens-tracer`")
    python = bench_env.venv(args.python)
    if python is None:
        sys.exit(f"census_cost: no CPython {args.python} on this machine")
    tmp = Path(tempfile.mkdtemp(prefix="memlens-census-cost-"))
    programs = [(f"synthetic {int(n):,}", SYNTHETIC, [n]) for n in args.objects.split(",")]
    programs += [("pandas", PANDAS, []), ("sympy", SYMPY, [])]
    if args.only:
        keep = args.only.split(",")
        programs = [p for p in programs if p[0].split()[0] in keep]
    print(f"CPython {args.python}, {args.repeat} rounds, medians\n")
    print("| program | live objects | census wall | census CPU | wall per object | CPU per object "
          "| run, --no-census | run, with censuses |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, source, argv in programs:
        prog = tmp / "prog.py"
        prog.write_text(source + MEASURE)
        out = tmp / "out.memlens"
        base = [str(MEMLENS), "run", "-q", "--python", str(python), "-o", str(out)]
        on, off, wall, cpu, objects = [], [], [], [], []
        for _ in range(args.repeat):
            off.append(run(base + ["--no-census", str(prog), *argv])[0])
            t, stdout = run(base + [str(prog), *argv])
            on.append(t)
            line = next(l for l in stdout.splitlines() if l.startswith("census-cost "))
            w, c = line.split()[1:]
            wall.append(int(w))
            cpu.append(int(c))
            objects.append(census_of(out, "measured")["objects"])
        n = statistics.median(objects)
        w, c = statistics.median(wall), statistics.median(cpu)
        print(f"| {name} | {n:,.0f} | {w / 1e6:.0f} ms | {c / 1e6:.0f} ms | {w / n:.0f} ns | {c / n:.0f} ns "
              f"| {statistics.median(off):.2f} s | {statistics.median(on):.2f} s |")


if __name__ == "__main__":
    main()
