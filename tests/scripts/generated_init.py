"""Objects built through code that libraries generate with exec (a dataclass's __init__,
a namedtuple's __new__), at known lines of the program's own."""
from collections import namedtuple
from dataclasses import dataclass


@dataclass
class Point:
    x: int
    tags: list


Row = namedtuple("Row", "id name")

points = [Point(i, [i, i]) for i in range(50_000)]  # POINTS_LINE
rows = [Row(i, f"row {i}") for i in range(50_000)]  # ROWS_LINE
