"""Pure-Python object churn: short-lived dicts, lists, tuples and strings, a growing cache.
An optional argument sets the number of rows (400,000 by default: ~22 million events;
90,000 gives ~5 million, the viewer benchmark's size)."""
import sys

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 400_000
cache = {}
for i in range(ROWS):
    row = {"id": i, "name": f"user{i}", "tags": [i % 7, i % 11, i % 13]}
    key = (row["id"] % 5000, row["name"][-3:])
    cache[key] = row
    total = sum(row["tags"]) + len(str(row))
print(len(cache), total)
