"""gevent: two fetchers and two parsers that yield to the hub between their allocations
(2,000 rounds each), then a 5 MB block 11 frames down from <module> once they are done."""
import gevent


def get(i):
    gevent.sleep(0)
    return bytearray(2000)  # GET_LINE


def fetcher(n):
    keep = []
    for i in range(n):
        keep.append(get(i))  # FETCH_CALL
        keep.append(bytearray(1000))  # FETCH_LINE
    return keep


def parse_one(i):
    gevent.sleep(0)
    return bytearray(3000)  # PARSE_LINE


def parser(n):
    out = []
    for i in range(n):
        out.append(parse_one(i))  # PARSER_CALL
        gevent.sleep(0)
        out.append(bytearray(500))  # PARSER_LINE
    return out


jobs = [gevent.spawn(fetcher, 2000) for _ in range(2)]
jobs += [gevent.spawn(parser, 2000) for _ in range(2)]
gevent.joinall(jobs)
results = [j.value for j in jobs]


def after(k):
    if k == 0:
        return bytearray(5 * 10**6)  # AFTER_LINE
    return after(k - 1)


y = after(10)  # AFTER_CALL
print("done")
