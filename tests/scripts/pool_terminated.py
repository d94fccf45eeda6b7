"""Pool workers that write many records, then end as the pool is terminated: each worker's
exit (`os._exit`, once its queue says there is no more work) races the SIGTERM the pool's
`terminate` sends it, while the recorder is still behind on what the workers sent. Every
task's last allocation, a 4 MiB block at a known line, must be in the recording.

Usage: pool_terminated.py [METHOD] (default: fork)."""
import multiprocessing as mp
import sys

TASKS = 6


def work(_):
    # Some 150,000 allocations and as many frees: what a worker sends outruns the recorder.
    junk = [str(n) for n in range(150_000)]
    block = bytearray(4 * 1024 * 1024)  # POOL_END_LINE
    del junk
    return len(block)


if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else "fork"
    with mp.get_context(method).Pool(2) as pool:
        total = sum(pool.map(work, range(TASKS), chunksize=1))
    print("built", total)
