"""Comprehensions, which CPython 3.12 inlines into the function around them (PEP 709), and
a generator expression, which it does not: `memlens diff` of a run before 3.12 and one of
3.12 must line them up (collector/tests/venv_diff_e2e.rs)."""


def build(n):
    rows = [bytearray(1000) for _ in range(n)]
    index = {i: bytes(1000) for i in range(n // 4)}
    return rows, index


def chunks(n):
    return list(bytearray(1000) for _ in range(n))


data = build(4000)
top = [bytearray(1000) for _ in range(1000)]
kept = chunks(500)
