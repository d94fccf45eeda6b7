"""pandas: a CSV of 300,000 rows read, grouped, joined and summarized."""
import io

import numpy as np
import pandas as pd

rng = np.random.default_rng(0)
n = 300_000
frame = pd.DataFrame({
    "store": rng.integers(0, 500, n),
    "product": [f"p{i % 2000}" for i in range(n)],
    "units": rng.integers(1, 20, n),
    "price": rng.random(n) * 100,
})
csv = frame.to_csv(index=False)
sales = pd.read_csv(io.StringIO(csv))
sales["revenue"] = sales["units"] * sales["price"]
by_store = sales.groupby("store").agg(revenue=("revenue", "sum"), units=("units", "sum"))
by_product = sales.groupby("product")["revenue"].agg(["mean", "max", "count"])
top = by_store.nlargest(10, "revenue").merge(by_store.rank(), left_index=True, right_index=True)
print(len(csv), round(float(by_store["revenue"].sum()), 2), len(by_product), len(top))
