"""An uncaught exception: plain Python prints a traceback and exits with status 1."""


def fail():
    raise ValueError("boom")


fail()
