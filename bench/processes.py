#!/usr/bin/env python3
"""Following processes: memlens against memray --follow-fork on a multiprocessing workload.

bench/processes/pool_churn.py's object churn (bench/workloads/churn.py's rows), run as:

- ``pool``: a fork pool of N workers (4 by default), each doing ROWS rows;
- ``one``: a fork pool of 1 worker doing ROWS rows (1/N of the work): issue 20's size target
  is that the pool's recording is at most N+1 times this one's;
- ``serial``: the parent doing the pool's N * ROWS rows itself: following should cost no
  more per allocation than tracing the same work in one process;
- ``spawn pool``, ``spawn one``: the same with spawned workers (memray follows forks only,
  so these run plain and under memlens alone);
- ``fork start``, ``spawn start``: a pool of 8 workers given nothing to do, also under
  ``memlens run --no-follow`` and ``--no-census``: what following costs per process at
  start and end, and how much of it is censuses.

Every configuration runs plain, under ``memlens run`` (which follows children by default),
under ``memray run --follow-fork`` and ``memray run --follow-fork --trace-python-allocators``
(the events memlens records): REPEAT rounds, in each of which every configuration runs once
in every mode, so that the ratios are taken between runs minutes apart at most. Printed:
median wall time; memlens's time over each memray mode's, paired round by round; the CPU
time of all the run's processes, memlens's recorder included (this process is their child
subreaper, so the recorder, which memlens detaches, is reaped and counted here); extra CPU
per recorded allocation over the plain run; file sizes (memray writes a file per child:
their sum, without the zero padding memray leaves at the end of a child's file); and the
processes memlens recorded.

    python3 bench/processes.py                       # target/release/memlens, CPython 3.11-3.13
    REPEAT=5 python3 bench/processes.py --python 3.12 --workers 4 --rows 100000

The interpreters are bench_env.py's venvs (memray 1.20.0 from PyPI), made on first use.
"""
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_env

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ROOT / "bench" / "processes" / "pool_churn.py"
MEMLENS = Path(os.environ.get("MEMLENS", ROOT / "target" / "release" / "memlens"))
RESULTS = ROOT / "target" / "bench-processes.json"
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
STARTED = 8  # workers of the start-up configurations


def configs(workers, rows):
    """{name: (pool_churn.py arguments, whether memray can follow its children)}."""
    return {
        "pool": (["fork", workers, rows], True),
        "one": (["fork", 1, rows], True),
        "serial": (["fork", 0, workers * rows], True),
        "spawn pool": (["spawn", workers, rows], False),
        "spawn one": (["spawn", 1, rows], False),
        "fork start": (["fork", STARTED, 0], True),
        "spawn start": (["spawn", STARTED, 0], False),
    }


def modes(py, out, name, memray_follows):
    """{mode: command before the script} for configuration `name`."""
    m = {
        "plain": [str(py)],
        "memlens": [str(MEMLENS), "run", "-q", "--python", str(py), "-o", str(out)],
    }
    if name.endswith("start"):
        m["memlens --no-follow"] = m["memlens"] + ["--no-follow"]
        m["memlens --no-census"] = m["memlens"] + ["--no-census"]
    if memray_follows:
        memray = [str(py), "-m", "memray", "run", "-q", "-f", "--follow-fork", "-o", str(out)]
        m["memray"] = memray
        m["memray+py"] = memray[:-2] + ["--trace-python-allocators", "-o", str(out)]
    return m


def timed(cmd):
    """Wall time of `cmd` (until it exits), and the CPU time (user + system) of all its
    processes: its children and the processes it left behind, which this process (their
    subreaper) waits for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def processes(out):
    """(processes, allocations) of a memlens recording."""
    s = json.loads(subprocess.run([str(MEMLENS), "summary", "--json", str(out)], check=True,
                                  capture_output=True, text=True).stdout)
    return len(s["processes"]), sum(p["alloc_count"] for p in s["processes"])


def bench(version, py, workers, rows, repeat, only, tmp):
    runs = {}
    for name, (argv, memray_follows) in configs(workers, rows).items():
        if only and name not in only:
            continue
        out = tmp / f"{version}-{name.replace(' ', '-')}.rec"
        cmds = modes(py, out, name, memray_follows)
        runs[name] = {"python": version, "config": name, "argv": argv, "out": out, "cmds": cmds,
                      "wall": {m: [] for m in cmds}, "cpu": {m: [] for m in cmds},
                      "sizes": {m: [] for m in cmds if m != "plain"}}
    # Round by round, every configuration in every mode once per round, so that a slow
    # spell of the machine falls on all of them alike: the ratios between modes and
    # between configurations (the pool's cost per allocation over the serial run's) are
    # taken within each round.
    for i in range(repeat):
        for r in runs.values():
            for mode, cmd in r["cmds"].items():
                for f in bench_env.recording_files(r["out"]):
                    f.unlink(missing_ok=True)
                w, c = timed(cmd + [str(WORKLOAD)] + [str(a) for a in r["argv"]])
                r["wall"][mode].append(w)
                r["cpu"][mode].append(c)
                if mode != "plain":
                    r["sizes"][mode].append(bench_env.recording_bytes(r["out"]))
                if mode == "memlens":
                    r["processes"], r["allocations"] = processes(r["out"])
        print(f"processes: {version} round {i + 1} of {repeat} done", file=sys.stderr)
    for r in runs.values():
        del r["out"], r["cmds"]
    return list(runs.values())


def extra_per_allocation(r, mode):
    """Per round: the CPU time `mode` added to the plain run, per allocation (memlens's
    count: the program's allocations, the same under every profiler), in ns."""
    return [(c - p) / r["allocations"] * 1e9 for c, p in zip(r["cpu"][mode], r["cpu"]["plain"])]


def paired(a, b):
    return statistics.median(x / y for x, y in zip(a, b))


def med(xs):
    return statistics.median(xs)


def table(rows):
    print("| CPython | configuration | plain s | memlens | memray --follow-fork | memray+py --follow-fork "
          "| memlens/memray (paired) | memlens/memray+py (paired) | CPU: plain, memlens, memray, memray+py "
          "| memlens extra CPU per alloc | memlens size | memray size | memray+py size | processes | allocations |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        w, c, s = r["wall"], r["cpu"], r["sizes"]

        def slow(m):
            return f"{med(w[m]):.2f} s ({med(w[m]) / med(w['plain']):.2f}x)" if m in w else "-"

        def ratio(m):
            return f"{paired(w['memlens'], w[m]):.2f}" if m in w else "-"

        def mb(m):
            return f"{med(s[m]) / 1e6:.2f} MB" if m in s else "-"
        cpus = ", ".join(f"{med(c[m]):.2f}" for m in ("plain", "memlens", "memray", "memray+py") if m in c)
        extra = med(extra_per_allocation(r, "memlens"))
        print(f"| {r['python']} | {r['config']} | {med(w['plain']):.2f} | {slow('memlens')} | {slow('memray')} "
              f"| {slow('memray+py')} | {ratio('memray')} | {ratio('memray+py')} | {cpus} s "
              f"| {extra:.0f} ns | {mb('memlens')} | {mb('memray')} | {mb('memray+py')} "
              f"| {r['processes']} | {r['allocations']:,} |")


def targets(rows, workers):
    """The issue's two targets and the start-up cost, per CPython."""
    by = {(r["python"], r["config"]): r for r in rows}
    for version in sorted({r["python"] for r in rows}):
        def get(name):
            return by[(version, name)]
        print(f"\nCPython {version}:")
        for prefix in ("", "spawn "):
            pool, one = get(prefix + "pool"), get(prefix + "one")
            line = (f"- {prefix or 'fork '}pool of {workers} over one worker doing 1/{workers} of the work, "
                    f"recording size: memlens {med(pool['sizes']['memlens']) / med(one['sizes']['memlens']):.2f}")
            if "memray+py" in pool["sizes"]:
                line += (f", memray+py {med(pool['sizes']['memray+py']) / med(one['sizes']['memray+py']):.2f}"
                         f", memray {med(pool['sizes']['memray']) / med(one['sizes']['memray']):.2f}")
            print(line + f" (target: at most {workers + 1})")
        pool, serial = get("pool"), get("serial")
        for mode in ("memlens", "memray+py"):
            a, b = extra_per_allocation(pool, mode), extra_per_allocation(serial, mode)
            ratios = sorted(x / y for x, y in zip(a, b))
            print(f"- {mode}: extra CPU per allocation, fork pool {med(a):.0f} ns, the same work in one "
                  f"process {med(b):.0f} ns; pool over one process, paired: median {med(ratios):.2f} "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
        for method in ("fork", "spawn"):
            r = get(f"{method} start")
            w, c = r["wall"], r["cpu"]

            def per_worker(x, mode):
                return (med(x[mode]) - med(x["memlens --no-follow"])) / STARTED * 1e3
            print(f"- {method} pool of {STARTED} doing nothing: following costs "
                  f"{per_worker(w, 'memlens'):.0f} ms of wall time and {per_worker(c, 'memlens'):.0f} ms "
                  f"of CPU per worker, {per_worker(w, 'memlens --no-census'):.0f} ms and "
                  f"{per_worker(c, 'memlens --no-census'):.0f} ms with --no-census (memlens "
                  f"{med(w['memlens']):.2f} s, --no-census {med(w['memlens --no-census']):.2f} s, "
                  f"--no-follow {med(w['memlens --no-follow']):.2f} s, plain {med(w['plain']):.2f} s)")


def main():
    ap = bench_env.parser(__doc__, "configurations (the targets need them all)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rows", type=int, default=100_000, help="rows of churn per worker")
    args = ap.parse_args()
    if not MEMLENS.exists():
        sys.exit(f"processes: {MEMLENS} not found; run `cargo build --release -p memlens -p memlens-tracer`")
    # memlens detaches its recorder (a double fork): as their subreaper, this process
    # adopts such processes, waits for them and counts their CPU time.
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"processes: prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")
    pythons = bench_env.chosen(args)
    tmp = Path(tempfile.mkdtemp(prefix="memlens-processes-"))
    rows = []
    for version, py in pythons.items():
        rows += bench(version, py, args.workers, args.rows, args.repeat,
                      args.only and args.only.split(","), tmp)
    RESULTS.write_text(json.dumps(rows, indent=1))
    print(f"{args.repeat} rounds, {args.workers} workers, {args.rows:,} rows per worker; "
          f"raw times in {RESULTS.relative_to(ROOT)}\n")
    table(rows)
    if not args.only:
        targets(rows, args.workers)


if __name__ == "__main__":
    main()
