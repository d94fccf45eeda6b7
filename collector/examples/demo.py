"""memlens demo: a small log-analytics job with a clear memory peak and a small leak.

It generates synthetic web-server access logs, parses them into dicts, builds a per-user
index and a memoised geo-lookup cache, aggregates a report, then drops the working set.
A module-level "recent errors" list and the lookup cache survive to the end: that is the
leak memlens should show as "live at exit".

Run it under the profiler:  ./dev demo   (or: memlens run -o demo.memlens collector/examples/demo.py)
An optional argument sets the log lines per batch (default 35000; the site's example uses fewer).
"""

import random
import sys
import time
from collections import defaultdict

PATHS = ["/", "/login", "/search", "/api/items", "/api/cart", "/static/app.js", "/checkout"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Mozilla/5.0 (Macintosh)", "python-requests/2.32"]

# Survives until exit on purpose (the "leak").
_RECENT_ERRORS = []
_GEO_CACHE = {}


def make_log_lines(n, rng):
    """Render n access-log lines, like reading a big file into memory at once."""
    lines = []
    for i in range(n):
        ip = f"10.{rng.randrange(64)}.{rng.randrange(256)}.{rng.randrange(256)}"
        status = rng.choices([200, 200, 200, 304, 404, 500], k=1)[0]
        lines.append(
            f'{ip} - user{rng.randrange(5000)} [{i}] "GET {rng.choice(PATHS)}?q={rng.random():.6f} HTTP/1.1" '
            f'{status} {rng.randrange(200, 90000)} "{rng.choice(AGENTS)}"'
        )
    return lines


def parse(line):
    ip, _, user, ts, rest = line.split(" ", 4)
    request, _, tail = rest.partition('" ')
    status, size, agent = tail.split(" ", 2)
    method, path, _proto = request.strip('"').split(" ")
    return {
        "ip": ip,
        "user": user,
        "ts": int(ts.strip("[]")),
        "method": method,
        "path": path.split("?")[0],
        "query": path.partition("?")[2],
        "status": int(status),
        "bytes": int(size),
        "agent": agent.strip('"'),
    }


def geo_lookup(ip):
    """Pretend-expensive lookup, memoised forever in a module-level cache."""
    key = ip.rsplit(".", 2)[0]
    hit = _GEO_CACHE.get(key)
    if hit is None:
        hit = _GEO_CACHE[key] = {"prefix": key, "region": f"region-{hash(key) % 17}", "tags": [key] * 4}
    return hit


def build_index(records):
    by_user = defaultdict(list)
    for r in records:
        r["geo"] = geo_lookup(r["ip"])
        by_user[r["user"]].append(r)
        if r["status"] >= 500:
            _RECENT_ERRORS.append(dict(r))
            del _RECENT_ERRORS[:-500]  # keep the most recent 500
    return by_user


def report(by_user):
    top = sorted(by_user.items(), key=lambda kv: sum(r["bytes"] for r in kv[1]), reverse=True)[:5]
    return [(user, len(rs), sum(r["bytes"] for r in rs)) for user, rs in top]


def main():
    rng = random.Random(42)
    started = time.time()
    # Load phase: every batch is kept, so memory climbs to a peak at the end of it.
    records = []
    per_batch = int(sys.argv[1]) if len(sys.argv) > 1 else 35_000
    for batch in range(3):
        lines = make_log_lines(per_batch, rng)
        records.extend(parse(line) for line in lines)
        del lines
        print(f"loaded batch {batch}: {len(records)} records")
    by_user = build_index(records)
    time.sleep(0.3)  # hold the peak for a moment so it is easy to see on the timeline
    for user, count, total in report(by_user):
        print(f"  {user}: {count} requests, {total} bytes")
    # Done with the working set: most memory is released here.
    del records, by_user
    time.sleep(0.2)
    print(f"done in {time.time() - started:.1f}s; {len(_GEO_CACHE)} cached prefixes, "
          f"{len(_RECENT_ERRORS)} errors kept")


if __name__ == "__main__":
    main()
