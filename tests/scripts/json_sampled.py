"""run_e2e: json round trips whose objects make pymalloc take new arenas now and then (under
frame walking and sampling, a walk inside pymalloc's own arena allocation once broke it)."""
import json

doc = {"items": [{"id": i, "price": i * 1.5, "name": "item %d" % i, "tags": ["a", str(i)]}
                 for i in range(20_000)]}
for _ in range(4):
    back = json.loads(json.dumps(doc))
    assert len(back["items"]) == 20_000
print("ok")
