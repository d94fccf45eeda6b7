"""Pure-Python object churn: short-lived dicts, lists, tuples and strings, a growing cache."""
cache = {}
for i in range(400_000):
    row = {"id": i, "name": f"user{i}", "tags": [i % 7, i % 11, i % 13]}
    key = (row["id"] % 5000, row["name"][-3:])
    cache[key] = row
    total = sum(row["tags"]) + len(str(row))
print(len(cache), total)
