import numpy as np
import pytest


def load(n):
    return np.ones(n)  # the project's own line that calls numpy


@pytest.mark.limit_memory("1 MB")
def test_arrays_over_limit():
    assert load(1_000_000).sum() == 1_000_000
