"""scipy: dense linear algebra, a sparse system and an optimization."""
import numpy as np
from scipy import linalg, optimize, sparse
from scipy.sparse.linalg import spsolve

rng = np.random.default_rng(0)
a = rng.random((700, 700))
lu, piv = linalg.lu_factor(a)
x = linalg.lu_solve((lu, piv), rng.random(700))
u, s, vt = linalg.svd(a[:400, :400])
# A banded (tridiagonal) system: sparse LU without fill-in.
n = 200_000
m = sparse.diags([np.full(n - 1, -1.0), np.full(n, 4.0), np.full(n - 1, -1.0)], [-1, 0, 1], format="csc")
y = spsolve(m, np.ones(n))
res = optimize.minimize(lambda v: float(np.sum((v - 3) ** 2)), np.zeros(50), method="BFGS")
print(round(float(x.sum()), 3), round(float(s[0]), 3), round(float(y.sum()), 3), bool(res.success))
