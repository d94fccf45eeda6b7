"""One line of the program's own calls a library that makes objects at two of its lines:
`memlens census --growth` shows that line twice, each time with the library line beside
it (collector/tests/census_e2e.rs)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "census_library",
                                "site-packages"))
import shapes  # noqa: E402

kept = shapes.make(4000)  # MAKE
