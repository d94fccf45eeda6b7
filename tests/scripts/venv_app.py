"""Builds a sorted list with a package from PyPI (sortedcontainers), so that most of its
memory is allocated inside site-packages; recorded from two virtualenvs of different Python
versions by collector/tests/venv_diff_e2e.rs."""
from sortedcontainers import SortedList


def build():
    return SortedList(range(300_000))  # VENV_APP_LINE


KEPT = build()
