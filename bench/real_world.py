#!/usr/bin/env python3
"""memlens against memray on real programs built from PyPI packages, on every CPython here.

Eight workloads (bench/real_world/*.py): pandas (CSV, groupby, join), sympy, black
formatting a large file, jinja2 rendering, sqlite3 + json, scipy (dense, sparse, optimize),
a multiprocessing pool and asyncio queues. Each runs plain, under `memlens run`, under
`memray run` (its default mode: native allocations only, it does not see pymalloc's
objects) and under `memray run --trace-python-allocators` (the events memlens records),
memray with `--follow-fork` as memlens follows children by default (sizes are the sums of
its files, one per child), REPEAT times, the four modes taking turns round by round so that a slow spell of this
shared machine falls on all of them alike. The packages are installed by bench_env.py into
a venv per CPython (3.11, 3.12 and 3.13 when the machine has them; made on first use).

Printed per workload: median wall times (and slowdown against plain), the median over
rounds of memlens's time over memray's default mode's (the *paired* ratio: below 1, memlens
is faster), recording sizes and their ratio to memray --trace-python-allocators', memlens's
peak heap over the sampled peak RSS (with the reserved address space beside it), and
whether memlens's runs printed exactly what the plain run printed, with the same exit code.

    python3 bench/real_world.py                      # target/release/memlens, every CPython
    REPEAT=5 python3 bench/real_world.py --python 3.12 --only pandas_csv,sympy_algebra
"""
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
WORKLOADS = ROOT / "bench" / "real_world"
MEMLENS = Path(os.environ.get("MEMLENS", ROOT / "target" / "release" / "memlens"))
RESULTS = ROOT / "target" / "bench-real-world.json"


def modes(py, out):
    return {
        "plain": [str(py)],
        "memlens": [str(MEMLENS), "run", "-q", "--python", str(py), "-o", str(out["memlens"])],
        # memlens follows every child by default; memray follows forked ones when asked.
        "memray": [str(py), "-m", "memray", "run", "-f", "-q", "--follow-fork",
                   "-o", str(out["memray"])],
        "memray+py": [str(py), "-m", "memray", "run", "-f", "-q", "--follow-fork",
                      "--trace-python-allocators", "-o", str(out["memray+py"])],
    }


def run(cmd, cwd):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t, p.returncode, p.stdout


def summary(path):
    out = subprocess.run([str(MEMLENS), "summary", "--json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def bench(version, py, names, repeat, tmp):
    rows = []
    for name in names:
        script = WORKLOADS / f"{name}.py"
        out = {m: tmp / f"{version}-{name}.{m}" for m in ("memlens", "memray", "memray+py")}
        cmds = modes(py, out)
        times = {m: [] for m in cmds}
        same = True
        expected = None
        for _ in range(repeat):
            for mode, cmd in cmds.items():
                if mode in out:
                    for f in bench_env.recording_files(out[mode]):
                        f.unlink(missing_ok=True)
                t, code, stdout = run(cmd + [str(script)], tmp)
                times[mode].append(t)
                if mode == "plain":
                    expected = (code, stdout) if expected is None else expected
                elif mode == "memlens":
                    same = same and (code, stdout) == expected
        s = summary(out["memlens"])
        rows.append({
            "python": version,
            "workload": name,
            "times": times,
            "paired": statistics.median(a / b for a, b in zip(times["memlens"], times["memray"])),
            "sizes": {m: bench_env.recording_bytes(f) for m, f in out.items()},
            "peak_heap": s["peak_heap_bytes"],
            "peak_rss": s["peak_rss_bytes"],
            "reserved": s.get("reserved_bytes_at_peak") or 0,
            "same_output": same,
            "exit_code": expected[0],
        })
        print(f"real_world: {version} {name} done", file=sys.stderr)
    return rows


def mb(n):
    return f"{n / 1e6:.1f} MB"


def table(rows):
    print("| CPython | workload | plain s | memlens | memray | memray --trace-python-allocators "
          "| memlens/memray (paired) | memlens size | memray+py size | size ratio "
          "| peak heap / peak RSS (reserved) | output and exit code = plain |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        med = {m: statistics.median(t) for m, t in r["times"].items()}

        def slow(m):
            return f"{med[m]:.2f} s ({med[m] / med['plain']:.2f}x)"
        sz = r["sizes"]
        heap = f"{mb(r['peak_heap'])} / {mb(r['peak_rss'])}"
        if r["reserved"]:
            heap += f" ({mb(r['reserved'])})"
        print(f"| {r['python']} | {r['workload']} | {med['plain']:.2f} | {slow('memlens')} | {slow('memray')} "
              f"| {slow('memray+py')} | {r['paired']:.2f} | {mb(sz['memlens'])} | {mb(sz['memray+py'])} "
              f"| {sz['memlens'] / sz['memray+py']:.2f} | {heap} "
              f"| {'yes' if r['same_output'] else 'NO'} (exit {r['exit_code']}) |")


def main():
    args = bench_env.parser(__doc__, "workload names").parse_args()
    if not MEMLENS.exists():
        sys.exit(f"real_world: {MEMLENS} not found; run `cargo build --release -p memlens -p memlens-tracer`")
    pythons = bench_env.chosen(args)
    names = sorted(p.stem for p in WORKLOADS.glob("*.py"))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="memlens-real-world-"))
    rows = []
    for version, py in pythons.items():
        rows += bench(version, py, names, args.repeat, tmp)
    RESULTS.write_text(json.dumps(rows, indent=1))
    print(f"{args.repeat} rounds; raw times in {RESULTS.relative_to(ROOT)}\n")
    table(rows)


if __name__ == "__main__":
    main()
