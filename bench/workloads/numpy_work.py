"""Native allocations from numpy: many medium arrays, a few big ones, temporaries."""
import numpy as np

acc = np.zeros(1000)
for i in range(10_000):
    a = np.random.default_rng(i).random(2000)
    b = a * 2.0 + 1.0
    acc += b[:1000]
big = [np.ones((1000, 1000)) for _ in range(5)]
print(float(acc.sum()), sum(float(x.sum()) for x in big))
