import multiprocessing as mp
import time

import pytest


def build(mib):
    block = bytearray(mib * 1024 * 1024)  # POOL_WORKER_LINE
    time.sleep(0.2)
    return len(block)


@pytest.mark.limit_memory("20 MB")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool(method):
    with mp.get_context(method).Pool(2) as pool:
        assert sum(pool.map(build, [30, 30], chunksize=1)) == 60 * 1024 * 1024
