"""collector/tests/native_stacks_e2e.rs: allocations made by C code under known Python lines.

argv[1]: the directory holding the test's build of tests/scripts/native_ext.c. With `numpy`
as argv[2], also a numpy array (its data is malloc'ed by numpy's C code). $BLOCKS: how many
1 MiB blocks the extension allocates (default 3).
"""
import os
import sys

sys.path.insert(0, sys.argv[1])
import native_ext  # noqa: E402


def build():
    for _ in range(int(os.environ.get("BLOCKS", "3"))):
        native_ext.allocate(1 << 20)  # CALL


build()
if sys.argv[2:] == ["numpy"]:
    import numpy

    kept = numpy.ones(1 << 18)  # NUMPY
