"""sympy: expansions, derivatives, factorizations and a series."""
import sympy as sp

x, y, z = sp.symbols("x y z")
exprs = [sp.expand((x + 2 * y - z + k) ** 5) for k in range(10)]
derivs = [sp.diff(e, x, y) for e in exprs]
factored = [sp.factor(d) for d in derivs[:4]]
series = sp.series(sp.sin(x) * sp.exp(x) / (1 - x), x, 0, 14)
solved = sp.solve([x + y - 3, x - y - 1], [x, y])
print(sum(len(e.args) for e in exprs), len(str(factored)), len(str(series)), solved)
