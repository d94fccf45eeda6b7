"""Fixtures for the wheel tests: run by collector/python/test_wheel.sh, which builds the wheel,
installs it with pytest, pytest-xdist and ipython into a fresh venv and runs this suite with
that venv's pytest (MEMLENS_TEST_VENV, MEMLENS_TEST_WHEEL)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def venv():
    path = os.environ.get("MEMLENS_TEST_VENV")
    if not path:
        pytest.fail("MEMLENS_TEST_VENV is not set: run collector/python/test_wheel.sh")
    return Path(path)


@pytest.fixture(scope="session")
def wheel():
    return Path(os.environ["MEMLENS_TEST_WHEEL"])


def clean_env():
    """The environment of a user who never activated the venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMLENS", "PYTEST", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


def run(args, cwd, check_status=0, **kwargs):
    """Runs a command; asserts its exit status; returns stdout + stderr."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=kwargs.pop("env", clean_env()),
        capture_output=True, text=True, **kwargs,
    )
    out = done.stdout + done.stderr
    assert done.returncode == check_status, f"{args}: exit {done.returncode}\n{out}"
    return out


@pytest.fixture
def small_disk(tmp_path):
    """A directory on a tmpfs of 16 KiB of its own, to fill up; unmounted afterwards. Skips
    (visibly) where this machine does not allow mounting one (not root), but fails under CI
    (CI set), where the tests run as root, so that the full-disk tests cannot silently not run."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=1777", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        why = f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI"):
            pytest.fail(f"{why} (the full-disk test must run under CI)")
        pytest.skip(why)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# The peak of test_limits.py's big table, 40,000 rows of bytearray(1000): each row is a
# bytearray object and its buffer, 1,106 bytes of heap on 3.15 against 1,066 before
# (`sys.getsizeof` says 1,097 against 1,057). These tests run in the venv's own interpreter.
BIG_TABLE_PEAK = "42.2 MiB" if sys.version_info >= (3, 15) else "40.7 MiB"


def listcomp(enclosing):
    """The function name a list comprehension's allocations are charged to: its own frame's
    before 3.12 (`<listcomp>`; on 3.11, which has qualified names, `ENCLOSING.<locals>.<listcomp>`
    in a function), the enclosing function's once comprehensions are inlined (PEP 709).
    These tests run in the venv's own interpreter."""
    if sys.version_info >= (3, 12):
        return enclosing
    if sys.version_info >= (3, 11) and enclosing != "<module>":
        return enclosing + ".<locals>.<listcomp>"
    return "<listcomp>"
