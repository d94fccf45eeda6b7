"""collector/tests/native_stacks_e2e.rs: allocations made by Rust code under a known line.

argv[1]: the test's build of tests/scripts/rust_lib (a cdylib), loaded with ctypes.
"""
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1])
lib.memlens_rust_make_table.restype = ctypes.c_size_t
lib.memlens_rust_make_table.argtypes = [ctypes.c_size_t, ctypes.c_size_t]


def load():
    return lib.memlens_rust_make_table(64, 64 * 1024)  # RUST_CALL


print(load())
