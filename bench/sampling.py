#!/usr/bin/env python3
"""What `memlens run --sample 512KiB` costs, against the plain run and memray, paired.

Runs each workload in bench/workloads plain, under `memlens run` (every allocation), under
`memlens run --sample 512KiB` (or `$RATE`) and under `memray run` (its default mode),
REPEAT times, every mode once per round, and prints a Markdown table: median wall times and,
round by round, the median of each mode's time over the plain run's of the same round (a
slow spell of the shared machine falls on a whole round), the same for the CPU time of all
the run's processes (the recorder's included), and how many events (allocations and
frees) the sampled recording kept against the exact one. The target (issue 21): sampled at
most 1.10x plain.

    python3 bench/sampling.py                 # uses target/release/memlens
    REPEAT=5 python3 bench/sampling.py --only churn,json_work
    RATE=2MiB python3 bench/sampling.py
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import MEMLENS, WORKLOADS, arguments, describe, timed_cpu


def events_recorded(path):
    """The events a recording holds (allocations and frees), as `memlens check` counts them:
    a sampled recording's figures are estimates of every allocation, its events are the
    sampled blocks'."""
    out = subprocess.run([str(MEMLENS), "check", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return int(re.search(r"([0-9]+) events", out).group(1))


def bench(py, names, repeat, rate, tmp):
    modes = {
        "plain": lambda w, o: [py, str(w)],
        "memlens": lambda w, o: [str(MEMLENS), "run", "-q", "--python", py, "-o", str(o), str(w)],
        "sampled": lambda w, o: [str(MEMLENS), "run", "-q", "--sample", rate, "--python", py,
                                 "-o", str(o), str(w)],
        "memray": lambda w, o: [py, "-m", "memray", "run", "-f", "-q", "-o", str(o), str(w)],
    }
    rows = []
    for name in names:
        w = WORKLOADS / f"{name}.py"
        wall = {m: [] for m in modes}
        cpu = {m: [] for m in modes}
        for _ in range(repeat):
            for mode, cmd in modes.items():
                out = tmp / f"{name}.{mode}.bin"
                out.unlink(missing_ok=True)
                t, c = timed_cpu(cmd(w, out))
                wall[mode].append(t)
                cpu[mode].append(c)
        ratio = {}
        for mode in ("memlens", "sampled", "memray"):
            ratio[mode] = statistics.median(m / p for m, p in zip(wall[mode], wall["plain"]))
            ratio[f"cpu {mode}"] = statistics.median(m / p for m, p in zip(cpu[mode], cpu["plain"]))
        ratio["sampled/memray"] = statistics.median(
            s / r for s, r in zip(wall["sampled"], wall["memray"]))
        kept = (events_recorded(tmp / f"{name}.sampled.bin"),
                events_recorded(tmp / f"{name}.memlens.bin"))
        rows.append((name, statistics.median(wall["plain"]), ratio, kept))
        print(f"sampling: {name} done", file=sys.stderr)
    return rows


def main():
    args = arguments(__doc__, "sampling")
    rate = os.environ.get("RATE", "512KiB")
    names = sorted(p.stem for p in WORKLOADS.glob("*.py"))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="memlens-sampling-"))
    for py in args.python:
        print(f"\n### {describe(py)} ({py}), --sample {rate}, {args.repeat} rounds\n", flush=True)
        rows = bench(py, names, args.repeat, rate, tmp)
        print("| workload | plain s | memlens / plain | sampled / plain | memray / plain | "
              "sampled / memray | CPU: memlens / plain | CPU: sampled / plain | "
              "CPU: memray / plain | events kept (sampled of all) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, plain, r, (kept, total) in rows:
            print(f"| {name} | {plain:.2f} | {r['memlens']:.2f} | {r['sampled']:.2f} | "
                  f"{r['memray']:.2f} | {r['sampled/memray']:.2f} | {r['cpu memlens']:.2f} | "
                  f"{r['cpu sampled']:.2f} | {r['cpu memray']:.2f} | {kept:,} of {total:,} |",
                  flush=True)


if __name__ == "__main__":
    main()
