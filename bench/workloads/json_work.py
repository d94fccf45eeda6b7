"""Serialize and parse a nested document repeatedly with the json module."""
import json

doc = {"items": [{"id": i, "price": i * 1.5, "name": "item %d" % i, "tags": ["a", "b", str(i)]}
                 for i in range(20_000)]}
for _ in range(8):
    text = json.dumps(doc)
    back = json.loads(text)
    assert len(back["items"]) == 20_000
print(len(text))
