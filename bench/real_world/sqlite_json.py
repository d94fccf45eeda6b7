"""sqlite3 + json: 150,000 JSON documents stored in SQLite, queried and decoded."""
import json
import sqlite3

db = sqlite3.connect(":memory:")
db.execute("create table docs (id integer primary key, kind text, body text)")
db.executemany(
    "insert into docs (kind, body) values (?, ?)",
    ((f"k{i % 10}", json.dumps({"id": i, "tags": [i % 3, i % 5], "name": f"doc {i}", "score": i / 7}))
     for i in range(150_000)),
)
db.execute("create index by_kind on docs (kind)")
total = 0.0
for kind in ("k1", "k4", "k7"):
    for (body,) in db.execute("select body from docs where kind = ?", (kind,)):
        total += json.loads(body)["score"]
counts = db.execute("select kind, count(*) from docs group by kind").fetchall()
print(round(total, 3), len(counts))
