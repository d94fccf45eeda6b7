"""Object churn spread over a multiprocessing pool (bench/processes.py).

Usage: pool_churn.py METHOD WORKERS ROWS

- METHOD fork or spawn, WORKERS > 0: a pool of WORKERS processes (that start method) is
  handed WORKERS tasks of ROWS rows each, then closed and joined, so that every worker ends
  as it does in a program that finishes its pool (no terminate);
- WORKERS 0: the parent does the ROWS rows itself, no pool (METHOD is ignored).

A row is bench/workloads/churn.py's: short-lived dicts, lists, tuples and strings, and a
cache that keeps at most 5,000 of them. ROWS 0 makes a task that does nothing: what starting
and ending the workers costs."""
import multiprocessing as mp
import sys


def churn(rows):
    cache = {}
    total = 0
    for i in range(rows):
        row = {"id": i, "name": f"user{i}", "tags": [i % 7, i % 11, i % 13]}
        key = (row["id"] % 5000, row["name"][-3:])
        cache[key] = row
        total += sum(row["tags"]) + len(str(row))
    return total


if __name__ == "__main__":
    method, workers, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if workers == 0:
        print(churn(rows))
    else:
        pool = mp.get_context(method).Pool(workers)
        results = pool.map(churn, [rows] * workers, chunksize=1)
        pool.close()
        pool.join()
        print(sum(results))
