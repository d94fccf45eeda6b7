import os

import pytest

_cache = []


def make_table(n):
    return [bytearray(1000) for _ in range(n)]


def test_small():
    assert len(make_table(10)) == 10


@pytest.mark.limit_memory("24 MB")
def test_big_table_over_limit():
    rows = make_table(40_000)  # about 40 MB
    assert len(rows) == 40_000


@pytest.mark.limit_memory("24 MB")
def test_within_limit():
    assert make_table(1_000)


@pytest.mark.limit_leaks("1 MB")
def test_leaky_cache():
    _cache.append(bytearray(3_000_000))


def test_grows():
    assert bytearray(int(os.environ.get("GROWS_BYTES", "1000000")))
