#!/usr/bin/env python3
"""memlens vs memray, measured in the same run on the same machine.

Runs each workload in bench/workloads plain, under `memlens run`, under `memray run` (its
default mode) and under `memray run --trace-python-allocators` (which records the same kinds
of events memlens records by default), REPEAT times each, and prints a Markdown table:
median wall time, slowdown against the plain run, the median over rounds of memlens's time
over each memray mode's (wall time, and CPU time of all the run's processes), recording
size, and bytes per allocation. With `--python PATH`
(repeatable) it does so for each interpreter in turn, memray being that interpreter's
(`PATH -m pip install memray numpy`), and says which stack mode memlens used there; a
version instead of a path (`--python 3.12`) is that CPython's bench venv (bench_env.py,
made on first use, memray included).

    python3 bench/bench.py            # uses target/release/memlens; builds nothing
    REPEAT=5 python3 bench/bench.py --only churn,json_work
    python3 bench/bench.py --python ~/.pyenv/versions/3.12.1/bin/python3 --python python3.13
    python3 bench/bench.py --python 3.10 --python 3.13
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "bench" / "workloads"
MEMLENS = Path(os.environ.get("MEMLENS", ROOT / "target" / "release" / "memlens"))


def timed(cmd, env=None):
    return timed_cpu(cmd, env)[0]


def timed_cpu(cmd, env=None):
    """Wall time, and CPU time (user + system) of the command and all its processes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def memray_allocations(py, path):
    """Number of allocations memray recorded (its `stats --json` report)."""
    out = Path(str(path) + ".json")
    subprocess.run([py, "-m", "memray", "stats", "--json", "-f", "-o", str(out), str(path)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())["total_num_allocations"]


def memlens_allocations(path):
    s = json.loads(subprocess.run([str(MEMLENS), "summary", "--json", str(path)], check=True,
                                  capture_output=True, text=True).stdout)
    return s["alloc_count"]


def arguments(doc, name, memray=True):
    """The options every bench script takes (--only, --repeat or $REPEAT, --python PATH...);
    exits when the release build of memlens is missing, or (`memray`: the script measures it
    too) when an interpreter has no memray."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 3)))
    ap.add_argument("--python", action="append", metavar="PATH|VERSION",
                    help="interpreter to measure on, or a CPython version such as 3.12 (its bench "
                    "venv, bench_env.py) (repeatable; default: the one running this)")
    args = ap.parse_args()
    if not MEMLENS.exists():
        sys.exit(f"{name}: {MEMLENS} not found; run `cargo build --release -p memlens -p memlens-tracer`")
    args.python = [interpreter(p, name) for p in args.python or [sys.executable]]
    for py in args.python if memray else []:
        if subprocess.run([py, "-c", "import memray"], capture_output=True).returncode != 0:
            sys.exit(f"{name}: {py} has no memray to compare with: give --python 3.11 (a bench "
                     "venv with it, made by bench_env.py) or install memray there")
    return args


def interpreter(value, name):
    """A --python value as an interpreter's path: a path as given, a version (3.12) as its
    bench venv's Python (made if needed)."""
    if os.path.exists(value) or not value.replace(".", "").isdigit():
        return value
    import bench_env

    python = bench_env.venv(value)
    if python is None:
        sys.exit(f"{name}: no CPython {value} on this machine")
    return str(python)


def describe(py):
    """"CPython 3.12.1, stacks: eval-hook": the interpreter and how memlens keeps its stacks."""
    code = ("import memlens, platform; "
            "print(platform.python_implementation(), platform.python_version(), memlens._stack_mode())")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([str(MEMLENS), "run", "-q", "--no-census", "--python", py, "-o", f"{tmp}/d.memlens",
                              "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return f"{out[0]} {out[1]}, stacks: {out[2]}"


def bench(py, names, repeat, tmp):
    """One interpreter's table rows: (workload, times, sizes, allocation counts)."""
    modes = {
        "plain": lambda w, o: [py, str(w)],
        "memlens": lambda w, o: [str(MEMLENS), "run", "--python", py, "-o", str(o), str(w)],
        "memray": lambda w, o: [py, "-m", "memray", "run", "-f", "-q", "-o", str(o), str(w)],
        "memray+py": lambda w, o: [py, "-m", "memray", "run", "-f", "-q", "--trace-python-allocators",
                                   "-o", str(o), str(w)],
    }
    rows = []
    for name in names:
        w = WORKLOADS / f"{name}.py"
        times, sizes, allocs = {}, {}, {}
        runs = {mode: [] for mode in modes}
        cpu = {mode: [] for mode in modes}
        # Round by round, every mode once per round, so a slow spell of the machine
        # falls on all modes alike.
        for _ in range(repeat):
            for mode, cmd in modes.items():
                out = tmp / f"{name}.{mode}.bin"
                if out.exists():
                    out.unlink()
                wall, used = timed_cpu(cmd(w, out))
                runs[mode].append(wall)
                cpu[mode].append(used)
        # memlens's time over each memray mode's, round by round: a slow spell of the
        # machine longer than a round cancels out of each pair. And the same for the CPU
        # time of all their processes, which a busy machine (other work taking cores from
        # memlens's recorder process) disturbs less than wall time.
        for memray in ("memray", "memray+py"):
            times[f"paired {memray}"] = statistics.median(m / r for m, r in zip(runs["memlens"], runs[memray]))
            times[f"cpu {memray}"] = statistics.median(m / r for m, r in zip(cpu["memlens"], cpu[memray]))
        for mode in modes:
            out = tmp / f"{name}.{mode}.bin"
            times[mode] = statistics.median(runs[mode])
            if mode != "plain":
                sizes[mode] = out.stat().st_size
                allocs[mode] = memlens_allocations(out) if mode == "memlens" else memray_allocations(py, out)
        rows.append((name, times, sizes, allocs))
        print(f"bench: {name} done", file=sys.stderr)
    return rows


def main():
    args = arguments(__doc__, "bench")
    names = sorted(p.stem for p in WORKLOADS.glob("*.py"))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="memlens-bench-"))
    for py in args.python:
        if subprocess.run([py, "-c", "import memray"], capture_output=True).returncode != 0:
            sys.exit(f"bench: memray is not installed in {py}; `{py} -m pip install memray numpy`")
        print(f"\n### {describe(py)} ({py})\n", flush=True)
        rows = bench(py, names, args.repeat, tmp)
        print("| workload | plain s | memlens | memray | memray --trace-python-allocators | "
              "memlens/memray time (paired) | memlens/memray+py time (paired) | "
              "memlens/memray CPU (paired) | memlens/memray+py CPU (paired) | "
              "memlens size (B/alloc) | memray+py size (B/alloc) | size ratio memlens/memray+py |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, t, s, a in rows:
            def slow(m):
                return f"{t[m]:.2f} s ({t[m] / t['plain']:.2f}x)"

            def size(m):
                return f"{s[m] / 1e6:.2f} MB ({s[m] / max(a[m], 1):.2f})"
            print(f"| {name} | {t['plain']:.2f} | {slow('memlens')} | {slow('memray')} | {slow('memray+py')} | "
                  f"{t['paired memray']:.2f} | {t['paired memray+py']:.2f} | "
                  f"{t['cpu memray']:.2f} | {t['cpu memray+py']:.2f} | {size('memlens')} | "
                  f"{size('memray+py')} | {s['memlens'] / s['memray+py']:.2f} |")
        print("\nallocations recorded: " + ", ".join(
            f"{name}: memlens {a['memlens']:,}, memray {a['memray']:,}, memray+py {a['memray+py']:,}"
            for name, _, _, a in rows), flush=True)


if __name__ == "__main__":
    main()
