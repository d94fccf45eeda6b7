"""Virtualenvs for the benchmarks that run real programs: one per CPython on the machine,
with the PyPI packages those programs use, made on first use under target/bench-venvs/.

    python3 bench/bench_env.py            # make (or check) every venv and say where they are

Interpreters are looked for as ``python3.X`` on PATH, then under ``~/.pyenv/versions``.
Package versions are pinned so that two runs of a bench measure the same code; a venv whose
packages are not these is made again.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "target" / "bench-venvs"
# Every version has wheels for CPython 3.11 to 3.14 on Linux x86_64.
PACKAGES = [
    "numpy==2.4.6",
    "pandas==3.1.1",
    "scipy==1.17.1",
    "sympy==1.14.0",
    "black==26.10.1",
    "jinja2==3.1.6",
    "memray==1.20.0",
]
# Older CPythons get the last releases that support them (the same memray); 3.15 the first
# releases with wheels for it.
PACKAGES_FOR = {
    "3.15": ["numpy==2.5.5", "pandas==3.1.1", "scipy==1.18.1", "sympy==1.14.0",
             "black==26.10.1", "jinja2==3.1.6", "memray==1.20.0"],
    "3.10": ["numpy==2.2.6", "pandas==2.3.3", "scipy==1.15.3", "sympy==1.14.0",
             "black==25.12.0", "jinja2==3.1.6", "memray==1.20.0"],
    "3.9": ["numpy==2.0.2", "pandas==2.3.3", "scipy==1.13.1", "sympy==1.14.0",
            "black==25.11.0", "jinja2==3.1.6", "memray==1.20.0"],
}
# The versions the benches run by default; 3.9 and 3.10 on request (--python 3.10).
VERSIONS = ("3.11", "3.12", "3.13", "3.14", "3.15")


def interpreter(version):
    """Path of CPython `version` ("3.12"), or None."""
    name = f"python{version}"
    candidates = [shutil.which(name)] + sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/{name}")), reverse=True)
    for c in filter(None, candidates):
        if subprocess.run([c, "-c", "pass"], capture_output=True).returncode == 0:
            return Path(c)
    return None


def venv(version):
    """The Python of the bench venv for CPython `version`, made if needed; None without
    that CPython."""
    base = interpreter(version)
    if base is None:
        return None
    path = VENVS / version
    python = path / "bin" / "python"
    stamp = path / "bench-packages.txt"
    packages = PACKAGES_FOR.get(version, PACKAGES)
    want = "\n".join(packages) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    print(f"bench: making {path} with {base} ({len(packages)} packages from PyPI)", file=sys.stderr)
    shutil.rmtree(path, ignore_errors=True)
    if subprocess.run([str(base), "-c", "import ensurepip"], capture_output=True).returncode == 0:
        subprocess.run([str(base), "-m", "venv", str(path)], check=True)
    else:
        # Debian's CPython (3.14, tests/debian_cpython.py) has no ensurepip: pip comes from
        # the interpreter's own.
        subprocess.run([str(base), "-m", "venv", "--without-pip", str(path)], check=True)
        subprocess.run([str(base), "-m", "pip", "--python", str(python), "install", "-q", "pip"],
                       check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *packages], check=True)
    stamp.write_text(want)
    return python


def venvs(versions=VERSIONS):
    """{version: venv python} for every version this machine has."""
    found = {}
    for v in versions:
        p = venv(v)
        if p is None:
            print(f"bench: no CPython {v} here; skipped", file=sys.stderr)
        else:
            found[v] = p
    return found


def parser(doc, only):
    """The options of the benches that run these venvs: --python VERSIONS, --only (`only`
    says of what), --repeat (default $REPEAT, else 3)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", help="comma-separated CPython versions (default: 3.11,3.12,3.13,3.14,3.15)")
    ap.add_argument("--only", help=f"comma-separated {only}")
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 3)))
    return ap


def chosen(args):
    """{version: venv python} for the versions --python names (default: VERSIONS)."""
    return venvs(args.python.split(",") if args.python else VERSIONS)


def recording_files(out):
    """The files a run wrote to `out`: memlens's one, or memray's and one per child."""
    return [out] + sorted(out.parent.glob(out.name + ".*"))


def recording_bytes(out):
    """Bytes of what a run wrote, without trailing zero padding (memray grows its files in
    steps and leaves a child's last step unused when the child ends with os._exit)."""
    total = 0
    for f in recording_files(out):
        data = f.read_bytes()
        total += len(data.rstrip(b"\0"))
    return total


if __name__ == "__main__":
    for v, p in venvs().items():
        print(v, p)
