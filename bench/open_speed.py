#!/usr/bin/env python3
"""How long reading a recording takes as recordings grow: `memlens summary`, `memlens diff` and
`memlens summary --replay` (every event, the cost before format 4's aggregates) on
bench/workloads/churn.py recordings from ~2.5 million to ~1 billion allocations, with
memray's `stats` on memray captures of the same workload at the sizes it can take, side by
side; and how an aggregate-only recording (`memlens run --aggregate`) grows with run time.

    python3 bench/open_speed.py                       # rows 90000,3600000,36000000
    python3 bench/open_speed.py --rows 90000,900000 --memray-rows 90000 --aggregate-rows 300000

Recordings are kept in target/bench-open/ and reused (--fresh to record them again); each
reading is timed --repeat times (median) with the peak RSS of the reading process.
Uses target/release/memlens; builds nothing.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMLENS = Path(os.environ.get("MEMLENS", ROOT / "target" / "release" / "memlens"))
CHURN = ROOT / "bench" / "workloads" / "churn.py"
OUT = ROOT / "target" / "bench-open"


def measured(cmd):
    """(seconds, peak RSS in MiB of the process) of one run of `cmd` (from a fork that waits
    for it alone, so the peak is this command's)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        t = time.perf_counter()
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        seconds = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        os.write(w, f"{code} {seconds} {peak}".encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 256).decode().split()
    os.close(r)
    os.waitpid(pid, 0)
    if data[0] != "0":
        sys.exit(f"open_speed: {cmd} failed (exit {data[0]})")
    return float(data[1]), int(data[2]) / 1024


def median_run(cmd, repeat):
    runs = [measured(cmd) for _ in range(repeat)]
    return statistics.median(s for s, _ in runs), max(m for _, m in runs)


def record(rows, suffix="", extra=(), fresh=False):
    path = OUT / f"churn-{rows}{suffix}.memlens"
    if fresh or not path.exists():
        print(f"open_speed: recording churn.py {rows}{suffix}", file=sys.stderr, flush=True)
        subprocess.run([str(MEMLENS), "run", "-q", *extra, "-o", str(path), str(CHURN), str(rows)],
                       check=True, stdout=subprocess.DEVNULL)
    return path


def summary(path):
    return json.loads(subprocess.run([str(MEMLENS), "summary", "--json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)


def aggregates_share(path):
    out = subprocess.run([str(MEMLENS), "check", str(path)], capture_output=True, text=True).stdout
    line = next((l for l in out.splitlines() if "aggregates:" in l), "")
    return line.split("(")[-1].split("%")[0] + "%" if line else "?"


def mib(n):
    return f"{n / (1 << 20):.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="90000,3600000,36000000")
    ap.add_argument("--memray-rows", default="90000,900000")
    ap.add_argument("--aggregate-rows", default="3000000", help="R: runs of R and 10*R rows")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--no-replay", action="store_true", help="skip summary --replay (slow on big files)")
    args = ap.parse_args()
    if not MEMLENS.exists():
        sys.exit(f"open_speed: {MEMLENS} not found; run `cargo build --release -p memlens -p memlens-tracer`")
    OUT.mkdir(parents=True, exist_ok=True)
    rows_list = [int(r) for r in args.rows.split(",") if r]

    print("| rows | allocations | file | aggregates | `summary` s (peak RSS) | `diff A B` s (peak RSS) | `summary --replay` s (peak RSS) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rows in rows_list:
        a = record(rows, fresh=args.fresh)
        b = record(rows, "-b", fresh=args.fresh)
        s = summary(a)
        sum_t, sum_m = median_run([str(MEMLENS), "summary", str(a)], args.repeat)
        diff_t, diff_m = median_run([str(MEMLENS), "diff", str(a), str(b)], args.repeat)
        if args.no_replay:
            replay = "-"
        else:
            rt, rm = measured([str(MEMLENS), "summary", "--replay", str(a)])
            replay = f"{rt:.2f} ({rm:.0f} MiB)"
        print(f"| {rows:,} | {s['alloc_count']:,} | {mib(a.stat().st_size)} | {aggregates_share(a)} "
              f"| {sum_t:.3f} ({sum_m:.0f} MiB) | {diff_t:.3f} ({diff_m:.0f} MiB) | {replay} |", flush=True)

    memray_rows = [int(r) for r in args.memray_rows.split(",") if r]
    if memray_rows:
        try:
            import memray  # noqa: F401
        except ImportError:
            sys.exit("open_speed: memray is not installed; `pip install memray` (or --memray-rows '')")
        print()
        print("| rows | memray+py capture | `memray stats` s (peak RSS) | memlens file | `memlens summary` s (peak RSS) | ratio memlens/memray |")
        print("|---:|---:|---:|---:|---:|---:|")
        for rows in memray_rows:
            cap = OUT / f"churn-{rows}.memray.bin"
            if args.fresh or not cap.exists():
                print(f"open_speed: memray run churn.py {rows}", file=sys.stderr, flush=True)
                subprocess.run([sys.executable, "-m", "memray", "run", "-f", "-q", "--trace-python-allocators",
                                "-o", str(cap), str(CHURN), str(rows)], check=True, stdout=subprocess.DEVNULL)
            mt, mm = median_run([sys.executable, "-m", "memray", "stats", "-f", "--json", "-o", str(cap) + ".json",
                                 str(cap)], args.repeat)
            a = record(rows, fresh=False)
            lt, lm = median_run([str(MEMLENS), "summary", str(a)], args.repeat)
            print(f"| {rows:,} | {mib(cap.stat().st_size)} | {mt:.2f} ({mm:.0f} MiB) | {mib(a.stat().st_size)} "
                  f"| {lt:.3f} ({lm:.0f} MiB) | {lt / mt:.3f} |", flush=True)

    if args.aggregate_rows:
        r = int(args.aggregate_rows)
        print()
        print("| `run --aggregate` rows | allocations | file | full recording of the same run |")
        print("|---:|---:|---:|---:|")
        sizes = []
        for rows in (r, 10 * r):
            agg = record(rows, "-aggregate", ["--aggregate"], fresh=args.fresh)
            full = OUT / f"churn-{rows}.memlens"
            full_size = mib(full.stat().st_size) if full.exists() else "-"
            sizes.append(agg.stat().st_size)
            print(f"| {rows:,} | {summary(agg)['alloc_count']:,} | {agg.stat().st_size:,} B | {full_size} |")
        print(f"\n10 times the rows: the aggregate-only file is {sizes[1] / sizes[0]:.2f} times larger.")


if __name__ == "__main__":
    main()
