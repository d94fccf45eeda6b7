"""multiprocessing: a pool of 2 workers (fork) scoring 60 chunks of work, results gathered."""
import multiprocessing as mp


def score(chunk):
    words = [f"w{(chunk * 7919 + i) % 5003}" for i in range(40_000)]
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return sum(v * v for v in counts.values())


if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:
        results = pool.map(score, range(60))
    print(len(results), sum(results))
