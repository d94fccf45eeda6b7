"""A numpy array's buffer comes from native malloc; it must be attributed to this line."""
import numpy as np


def make():
    return np.ones(10_000_000, dtype=np.float64)  # NUMPY_LINE


ARR = make()
