#!/usr/bin/env python3
"""What an object census costs: per live object, and per run.

Runs a program holding N live objects (a mix of class instances, dicts, lists and tuples)
under `memlens run`, reads the censuses' own measured durations from the recording
(`memlens summary --json`: census.duration_ns of the exit census) and compares wall times
with `--no-census` and with `--census-interval`.

    python3 bench/census_cost.py               # uses target/release/memlens; builds nothing
    python3 bench/census_cost.py --objects 100000,1000000 --repeat 3
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

ROOT = Path(__file__).resolve().parent.parent
MEMLENS = Path(os.environ.get("MEMLENS", ROOT / "target" / "release" / "memlens"))

PROGRAM = """
import sys, time
class Item:
    def __init__(self, i):
        self.i = i
        self.tags = [i]
n = int(sys.argv[1]) // 3
items = [Item(i) for i in range(n)]   # n instances + n lists
table = {i: (i, str(i)) for i in range(n)}  # n tuples
time.sleep(float(sys.argv[2]))
"""


def run(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def summary(path):
    out = subprocess.run([str(MEMLENS), "summary", "--json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", default="30000,300000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.5, help="--census-interval for the last column")
    args = ap.parse_args()
    if not MEMLENS.exists():
        sys.exit(f"census_cost: {MEMLENS} not found; run `cargo build --release -p memlens` first")
    print("| live objects | census time | per object | run, --no-census | run, default | run, --census-interval %g (2 s sleep) |" % args.interval)
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        prog = Path(d) / "hold.py"
        prog.write_text(PROGRAM)
        out = Path(d) / "out.memlens"
        for n in [int(x) for x in args.objects.split(",")]:
            base = [str(MEMLENS), "run", "-q", "-o", str(out)]
            off = statistics.median(run(base + ["--no-census", str(prog), str(n), "0"]) for _ in range(args.repeat))
            on, census = [], []
            for _ in range(args.repeat):
                on.append(run(base + [str(prog), str(n), "0"]))
                c = summary(out)["census"]
                census.append((c["duration_ns"], c["objects"]))
            every = statistics.median(
                run(base + ["--census-interval", str(args.interval), str(prog), str(n), "2"]) - 2
                for _ in range(args.repeat))
            ns, objects = statistics.median(census)
            print(f"| {objects:,} | {ns / 1e6:.0f} ms | {ns / objects:.0f} ns | {off:.2f} s "
                  f"| {statistics.median(on):.2f} s | {every:.2f} s |")


if __name__ == "__main__":
    main()
