#!/usr/bin/env python3
"""What `memlens run --native-stacks` costs, against memlens without it and memray --native.

Runs each workload (default: the issue's numpy_work, churn and threads_work) plain, under
`memlens run`, `memlens run --native-stacks`, `memray run --native` and `memray run --native
--trace-python-allocators` (memray recording Python's allocators too, as memlens does),
REPEAT times, every mode once per round, and prints a Markdown table: the plain run's median
wall time; round by round, the median of each mode's wall time over the plain run's of the
same round, and of memlens --native-stacks's wall and CPU time (all the run's processes, the
recorder's included) over each memray mode's; and the recording sizes (memlens
--native-stacks over each memray mode's file). The targets (issue 22): at most memray
--native's overhead, and at most half its file.

    python3 bench/native_stacks.py                  # uses target/release/memlens
    REPEAT=5 python3 bench/native_stacks.py --only numpy_work
"""
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import MEMLENS, WORKLOADS, arguments, describe, timed_cpu

DEFAULT = "churn,numpy_work,threads_work"


def modes(py):
    memlens = [str(MEMLENS), "run", "-q", "--python", py]
    memray = [py, "-m", "memray", "run", "-f", "-q", "--native"]
    return {
        "plain": lambda w, o: [py, str(w)],
        "memlens": lambda w, o: memlens + ["-o", str(o), str(w)],
        "native": lambda w, o: memlens + ["--native-stacks", "-o", str(o), str(w)],
        "memray": lambda w, o: memray + ["-o", str(o), str(w)],
        "memray+py": lambda w, o: memray + ["--trace-python-allocators", "-o", str(o), str(w)],
    }


def rounds(py, workload, repeat, tmp):
    """Per mode: the wall and CPU times of each round, and the last recording's size."""
    wall, cpu, size = {}, {}, {}
    for _ in range(repeat):
        for mode, cmd in modes(py).items():
            out = tmp / f"{workload.stem}.{mode}.bin"
            out.unlink(missing_ok=True)
            t, c = timed_cpu(cmd(workload, out))
            wall.setdefault(mode, []).append(t)
            cpu.setdefault(mode, []).append(c)
            size[mode] = out.stat().st_size if out.exists() else 0
    return wall, cpu, size


def paired(a, b):
    """The median over rounds of a's time over b's."""
    return statistics.median(x / y for x, y in zip(a, b))


def main():
    args = arguments(__doc__, "native_stacks")
    names = (args.only or DEFAULT).split(",")
    tmp = Path(tempfile.mkdtemp(prefix="memlens-native-"))
    for py in args.python:
        if subprocess.run([py, "-c", "import memray"], capture_output=True).returncode != 0:
            sys.exit(f"native_stacks: memray is not installed in {py}")
        print(f"\n### {describe(py)} ({py}), {args.repeat} rounds\n", flush=True)
        print("| workload | plain s | memlens / plain | --native-stacks / plain | "
              "memray --native / plain | memray --native +py / plain | "
              "--native-stacks / memray --native (wall, CPU) | "
              "--native-stacks / memray --native +py (wall, CPU) | file MB: --native-stacks, "
              "memray --native, +py | file: --native-stacks / memray --native, +py |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name in names:
            wall, cpu, size = rounds(py, WORKLOADS / f"{name}.py", args.repeat, tmp)
            over = {m: paired(wall[m], wall["plain"]) for m in wall}
            vs = {m: (paired(wall["native"], wall[m]), paired(cpu["native"], cpu[m]))
                  for m in ("memray", "memray+py")}
            mb = [size[m] / 1e6 for m in ("native", "memray", "memray+py")]
            print(f"| {name} | {statistics.median(wall['plain']):.2f} | {over['memlens']:.2f} | "
                  f"{over['native']:.2f} | {over['memray']:.2f} | {over['memray+py']:.2f} | "
                  f"{vs['memray'][0]:.2f}, {vs['memray'][1]:.2f} | "
                  f"{vs['memray+py'][0]:.2f}, {vs['memray+py'][1]:.2f} | "
                  f"{mb[0]:.2f}, {mb[1]:.2f}, {mb[2]:.2f} | "
                  f"{mb[0] / mb[1]:.2f}, {mb[0] / mb[2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
