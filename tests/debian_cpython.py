#!/usr/bin/env python3
"""Installs a CPython newer than this machine's Debian ships, from Debian's own packages.

    python3 tests/debian_cpython.py 3.14 VERSIONS

VERSIONS is a pyenv-style directory of versions (`~/.pyenv/versions`); the interpreter goes
to VERSIONS/3.14.N-debian, N being the release Debian has.

No registry this project's machines reach offers CPython 3.14's source or a build for
bookworm, but Debian unstable's binary packages of it are on deb.debian.org, the mirror apt
uses. They need unstable's C library, so they are unpacked into DEST together with it and
the libraries they link, and the interpreter is pointed at them (`patchelf`: its program
interpreter and run path), leaving the machine's own libraries alone. Everything downloaded
is checked: the suite's `InRelease` against Debian's archive keyring (`gpgv`), the package
index against `InRelease`, each package against the index.

The version directory has `bin/python3.X`, its standard library compiled, and pip (from
PyPI). Prints the interpreter's path. If VERSIONS already has a working 3.X, only compiles
what of its standard library is not.
"""
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "sid"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The interpreter, its standard library and headers, and the C++ library numpy's and scipy's
# wheels link; with everything they depend on (the C library they were built for, whose
# loader runs them, among it), found in the index as apt would.
ROOTS = [
    "python{v}-minimal", "libpython{v}-stdlib", "python{v}", "libpython{v}", "python{v}-dev",
    "libpython{v}-dev", "libstdc++6",
]
# More than a Python's dependencies ever were (about 30 for 3.14 and 3.15): a loop in the
# index.
MAX_PACKAGES = 100


def say(msg):
    print(f"debian_cpython: {msg}", file=sys.stderr, flush=True)


def fetch(url):
    with urllib.request.urlopen(url, timeout=300) as r:
        return r.read()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def verified_index(tmp):
    """The suite's amd64 package index, each paragraph by package name."""
    release = fetch(f"{MIRROR}/dists/{SUITE}/InRelease")
    signed = Path(tmp) / "InRelease"
    signed.write_bytes(release)
    subprocess.run(["gpgv", "--keyring", KEYRING, str(signed)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    name = "main/binary-amd64/Packages.xz"
    sums = re.search(r"^SHA256:\n((?: .*\n)+)", release.decode(), re.M).group(1)
    want = next(line.split()[0] for line in sums.splitlines() if line.split()[2] == name)
    packages = fetch(f"{MIRROR}/dists/{SUITE}/{name}")
    if sha256(packages) != want:
        sys.exit(f"debian_cpython: {name} does not match {SUITE}'s signed InRelease")
    index = {}
    for para in lzma.decompress(packages).decode().split("\n\n"):
        m = re.search(r"^Package: (\S+)$", para, re.M)
        if m:
            index[m.group(1)] = para
    return index


def field(para, name):
    return re.search(rf"^{name}: (.*)$", para, re.M).group(1)


def with_dependencies(index, roots):
    """`roots` and every package they depend on (Pre-Depends and Depends, the first of
    alternatives, versions not checked: the index has one version of each), in the order
    found. The headers' packages (`-dev`) bring none of theirs: unpacked beside Python's
    headers, unstable's C library headers would shadow the machine's own for a compiler
    that includes their directory's parent (Debian's pyconfig.h needs that)."""
    found, todo = [], list(roots)
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        para = index.get(name) or sys.exit(f"debian_cpython: {SUITE} has no {name}")
        found.append(name)
        if len(found) > MAX_PACKAGES:
            sys.exit(f"debian_cpython: more than {MAX_PACKAGES} packages to unpack")
        if name.endswith("-dev"):
            continue
        for kind in ("Pre-Depends", "Depends"):
            m = re.search(rf"^{kind}: (.*)$", para, re.M)
            for dep in m.group(1).split(",") if m else []:
                # "libc6 (>= 2.38)", "media-types | mime-support", "python3:any".
                todo.append(dep.split("|")[0].split()[0].split(":")[0])
    return found


def works(python):
    return python.exists() and subprocess.run(
        [str(python), "-c", "import ssl, sqlite3, ctypes, lzma, bz2, zlib, pip"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def byte_compile(python, version):
    """Compiles the standard library as Debian's package does when it is installed
    (`py3compile`; `dpkg-deb -x` runs no install scripts). Without it every program started
    compiles each module it imports from source where PYTHONDONTWRITEBYTECODE is set (as on
    this project's machines): `import json, sqlite3` made 347,000 allocations instead of
    21,000, and the benchmarks measured the compiler. Quick when it is done already."""
    stdlib = python.resolve().parent.parent / "lib" / f"python{version}"
    done = subprocess.run([str(python), "-m", "compileall", "-q", "-j0", str(stdlib)],
                          stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        # (A module that does not compile is an error only where it is imported.)
        say(f"some of {stdlib} did not compile; those modules compile at each import")


def main():
    version, versions = sys.argv[1], Path(sys.argv[2]).resolve()
    for python in sorted(versions.glob(f"{version}.*/bin/python{version}")):
        if works(python):
            byte_compile(python, version)
            print(python)
            return
    with tempfile.TemporaryDirectory() as tmp:
        say(f"checking {SUITE}'s package index against Debian's archive keyring")
        index = verified_index(tmp)
        minimal = index.get(f"python{version}-minimal") or sys.exit(
            f"debian_cpython: {SUITE} has no CPython {version}")
        # "3.14.10-1": upstream release 3.14.10, Debian's first package of it.
        dest = versions / (field(minimal, "Version").split("-")[0] + "-debian")
        python = dest / "bin" / f"python{version}"
        shutil.rmtree(dest, ignore_errors=True)
        root = Path(tmp) / "root"
        unpacked = []
        for name in with_dependencies(index, [p.format(v=version) for p in ROOTS]):
            para = index[name]
            url = f"{MIRROR}/{field(para, 'Filename')}"
            deb = fetch(url)
            if sha256(deb) != field(para, "SHA256"):
                sys.exit(f"debian_cpython: {url} does not match {SUITE}'s index")
            path = Path(tmp) / "p.deb"
            path.write_bytes(deb)
            subprocess.run(["dpkg-deb", "-x", str(path), str(root)], check=True)
            unpacked.append(f"{name} {field(para, 'Version')}")
        say(f"unpacked {len(unpacked)} packages: {', '.join(unpacked)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(root), str(dest))
    libs = dest / "usr" / "lib" / "x86_64-linux-gnu"
    exe = dest / "usr" / "bin" / f"python{version}"
    # The interpreter runs on its own C library; DT_RPATH (not RUNPATH) also serves the
    # libraries it loads later: its extension modules and theirs.
    subprocess.run(["patchelf", "--set-interpreter", str(libs / "ld-linux-x86-64.so.2"),
                    "--force-rpath", "--set-rpath", str(libs), str(exe)], check=True)
    (dest / "bin").mkdir()
    # Where Debian's Python has pip install (its `posix_local` scheme); `site` adds it to
    # the path only if it exists.
    (dest / "usr" / "local" / "lib" / f"python{version}" / "dist-packages").mkdir(parents=True)
    for name in (f"python{version}", "python3"):
        (dest / "bin" / name).symlink_to(exe)
    # Debian leaves pip to its own package; the one from PyPI installs as in any Python.
    say("pip from PyPI")
    meta = fetch("https://pypi.org/simple/pip/")
    wheel_url = re.findall(rb'href="([^"]+/pip-[0-9.]+-py3-none-any\.whl)#sha256=([0-9a-f]+)"',
                           meta)[-1]
    wheel = fetch(wheel_url[0].decode())
    if sha256(wheel) != wheel_url[1].decode():
        sys.exit("debian_cpython: pip's wheel does not match PyPI's index")
    with tempfile.TemporaryDirectory() as tmp:
        whl = Path(tmp) / wheel_url[0].decode().rsplit("/", 1)[1]
        whl.write_bytes(wheel)
        zipfile.ZipFile(whl).extractall(Path(tmp) / "pip")
        env = dict(os.environ, PYTHONPATH=str(Path(tmp) / "pip"))
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--break-system-packages",
                        "--root-user-action=ignore", "--no-warn-script-location", "--ignore-installed",
                        str(whl)],
                       check=True, env=env)
    if not works(python):
        sys.exit(f"debian_cpython: {python} does not run")
    byte_compile(python, version)
    print(python)


if __name__ == "__main__":
    main()
